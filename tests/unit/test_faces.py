"""Faces stage: dlib backend on a real photo, landmark-rasterised parsing, neighbour filling, rendering, CLI."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pyarrow as pa
import pytest
from skimage import data

from stages.common.face_detect import detect_faces, expand_box
from stages.common.io import read_parquet, write_parquet
from stages.common.schemas import FACES_SCHEMA, FRAMES_SCHEMA
from stages.faces import parsing as P
from stages.faces.backends import FacesConfig, FrameFaces
from stages.faces.cli import analyse_clip, main
from stages.faces.dlib_backend import DlibBackend
from stages.faces.parsing import decode_parsing, encode_parsing, parsing_from_landmarks
from stages.faces.render import PALETTE, render_landmarks, render_parsing


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def backend():
    return DlibBackend()


@pytest.fixture(scope="module")
def astro_faces(astronaut, backend) -> FrameFaces:
    return backend.analyse([astronaut])[0]


@pytest.fixture(scope="module")
def face_crops(astronaut):
    """Two 160 px face crops of the astronaut, the second shifted a little, as a frames stage would store them."""
    x0, y0, x1, y1 = detect_faces(astronaut)[0].box
    crops = []
    for shift in (0, 12):
        box = expand_box((x0 + shift, y0, x1 + shift, y1), 0.3, astronaut.shape[1], astronaut.shape[0])
        c = astronaut[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
        crops.append(cv2.resize(c, (160, 160), interpolation=cv2.INTER_AREA))
    return crops


def test_dlib_landmarks_are_anatomically_sane(astronaut, astro_faces):
    lm = astro_faces.landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float32 and astro_faces.score > 0.5
    right_eye, left_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    nose_tip, mouth = lm[30], lm[48:68].mean(0)
    assert right_eye[0] < left_eye[0]  # subject's right eye is on the image left
    assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1]
    assert lm[17:27, 1].max() < min(right_eye[1], left_eye[1])  # brows above eyes
    assert (lm[4:13, 1] > max(right_eye[1], left_eye[1])).all()  # lower jaw below the eyes
    assert lm[8, 1] > mouth[1]  # chin below mouth
    x0, y0, x1, y1 = expand_box(detect_faces(astronaut)[0].box, 0.2, 512, 512)
    assert ((lm[:, 0] >= x0) & (lm[:, 0] <= x1) & (lm[:, 1] >= y0) & (lm[:, 1] <= y1)).all()


def test_parsing_of_astronaut_has_the_face_parts_in_place(astro_faces):
    parsing = astro_faces.parsing
    assert parsing.shape == (512, 512) and parsing.dtype == np.uint8
    present = set(np.unique(parsing).tolist())
    assert {P.SKIN, P.R_BROW, P.L_BROW, P.R_EYE, P.L_EYE, P.NOSE, P.UPPER_LIP, P.LOWER_LIP} <= present
    assert present <= set(range(P.NUM_CLASSES))

    def centre(*labels):
        ys, xs = np.nonzero(np.isin(parsing, labels))
        return xs.mean(), ys.mean()

    eyes, nose, mouth = centre(P.R_EYE, P.L_EYE), centre(P.NOSE), centre(P.UPPER_LIP, P.INNER_MOUTH, P.LOWER_LIP)
    assert centre(P.R_BROW, P.L_BROW)[1] < eyes[1] < nose[1] < mouth[1]
    assert centre(P.R_EYE)[0] < nose[0] < centre(P.L_EYE)[0]
    assert centre(P.R_BROW)[0] < centre(P.L_BROW)[0]
    assert centre(P.UPPER_LIP)[1] < centre(P.LOWER_LIP)[1]
    assert centre(P.HAIR)[1] < centre(P.R_BROW, P.L_BROW)[1]
    assert (parsing == P.SKIN).sum() > 5 * (parsing == P.NOSE).sum()


def test_parsing_edge_cases(astro_faces):
    lm = astro_faces.landmarks
    # Face partly outside the frame: clipped, no error.
    shifted = parsing_from_landmarks(lm - np.array([200, 0], np.float32), 512, 512)
    assert shifted[:, :50].any() and (shifted == P.SKIN).sum() < (astro_faces.parsing == P.SKIN).sum()
    assert not parsing_from_landmarks(np.zeros((68, 2)), 64, 48).any()  # degenerate → background
    with pytest.raises(ValueError):
        parsing_from_landmarks(np.full((68, 2), np.nan), 64, 64)
    # Closed mouth: no inner-mouth pixels.
    closed = lm.copy()
    closed[65:68] = closed[[63, 62, 61]]
    assert P.INNER_MOUTH not in parsing_from_landmarks(closed, 512, 512)
    assert np.array_equal(decode_parsing(encode_parsing(astro_faces.parsing)), astro_faces.parsing)


def test_small_frames_are_found(face_crops, backend):
    small = cv2.resize(face_crops[0], (96, 96), interpolation=cv2.INTER_AREA)
    faces = backend.analyse([small, face_crops[0]])
    assert all(f.found for f in faces)
    assert faces[0].parsing.shape == (96, 96) and faces[1].parsing.shape == (160, 160)


def test_blank_middle_frame_is_filled_from_nearest_neighbour(face_crops, backend):
    grey = np.full_like(face_crops[0], 128)
    row = analyse_clip("c1", [0, 5, 7], [jpeg(face_crops[0]), jpeg(grey), jpeg(face_crops[1])], backend)
    assert row["face_status"] == ["detected", "filled", "detected"]
    assert row["clip_flag"] == "" and row["backend"] == "dlib"
    assert row["det_score"][1] == 0.0 and row["det_score"][0] > 0
    assert row["landmarks"][1] == row["landmarks"][2]  # frame 5 is nearer to frame 7 than to frame 0
    assert row["landmarks"][1] != row["landmarks"][0]
    assert row["parsing_png"][1] == row["parsing_png"][2]


class _Scripted:
    """Backend stub: a face wherever the frame's mean brightness is above 100; landmarks encode that mean."""

    name = "scripted"

    def analyse(self, frames):
        out = []
        for f in frames:
            m = float(f.mean())
            found = m > 100
            lm = np.full((68, 2), m, np.float32) if found else None
            out.append(FrameFaces(lm, np.ones(f.shape[:2], np.uint8) if found else None, 1.0 if found else 0.0))
        return out


def test_fill_uses_source_frame_distance_and_rescales():
    bright, dark = np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 10, np.uint8)
    big_dark = np.full((16, 16, 3), 10, np.uint8)
    row = analyse_clip("c", [0, 3, 4, 10], [jpeg(bright), jpeg(dark), jpeg(big_dark), jpeg(bright * 0 + 150)], _Scripted())
    assert row["face_status"] == ["detected", "filled", "filled", "detected"]
    assert row["landmarks"][1][0] == pytest.approx(200, abs=2)  # 3 is nearer to 0 than to 10
    assert row["landmarks"][2][0] == pytest.approx(400, abs=4)  # copied and scaled to the 16 px frame
    assert decode_parsing(row["parsing_png"][2]).shape == (16, 16)


def test_clip_without_any_face_is_flagged(backend):
    frames = [np.full((120, 120, 3), v, np.uint8) for v in (0, 128, 255)]
    row = analyse_clip("blank", [1, 2, 3], [jpeg(f) for f in frames], backend)
    assert row["face_status"] == ["missing"] * 3 and row["clip_flag"] == "no_face"
    assert row["landmarks"] == [[0.0] * 136] * 3 and row["det_score"] == [0.0] * 3
    assert all(not decode_parsing(p).any() and decode_parsing(p).shape == (120, 120) for p in row["parsing_png"])


def test_corrupt_jpeg_is_missing_with_a_warning(face_crops, backend, caplog):
    good = jpeg(face_crops[0])
    with caplog.at_level(logging.WARNING, logger="stages.faces"):
        row = analyse_clip("clipX", [10, 11, 12], [good, b"\xff\xd8 not a jpeg", good[: len(good) // 8]], backend)
    assert row["face_status"][0] == "detected" and row["face_status"][1] == "missing"
    assert row["face_status"][2] in {"detected", "filled", "missing"}
    assert "clipX" in caplog.text and "frame 11" in caplog.text
    assert decode_parsing(row["parsing_png"][1]).shape == (160, 160)
    assert not decode_parsing(row["parsing_png"][1]).any()
    # A clip where nothing decodes uses the fallback size.
    row = analyse_clip("junk", [0], [b""], backend, fallback_size=(20, 30))
    assert row["clip_flag"] == "no_face" and decode_parsing(row["parsing_png"][0]).shape == (20, 30)


def test_render_parsing_palette_and_overlay():
    parsing = np.arange(11, dtype=np.uint8).reshape(1, 11).repeat(3, axis=0)
    colour = render_parsing(parsing)
    assert colour.shape == (3, 11, 3) and colour.dtype == np.uint8
    assert np.array_equal(colour[0], PALETTE)
    assert tuple(colour[0, 1]) == (0, 153, 255) and tuple(colour[0, 10]) == (255, 0, 102)
    image = np.full((3, 11, 3), 100, np.uint8)
    overlay = render_parsing(parsing, image)
    assert np.array_equal(overlay, np.rint(0.5 * 100 + 0.5 * PALETTE.astype(float))[None].repeat(3, 0).astype(np.uint8))
    assert np.array_equal(overlay, render_parsing(parsing, image))  # deterministic
    with pytest.raises(ValueError):
        render_parsing(np.full((2, 2), 11, np.uint8))


def test_render_landmarks_dots(astro_faces, astronaut):
    lm = astro_faces.landmarks
    dots = render_landmarks(lm, 512, 512)
    assert dots.shape == (512, 512, 3) and dots.dtype == np.uint8
    for x, y in np.round(lm).astype(int):
        assert dots[y, x].tolist() == [255, 255, 255]
    assert (dots.any(axis=2)).sum() < 68 * 150  # dots, not blobs
    small = render_landmarks(lm / 4, 128, 128, radius=1)
    assert (small.any(axis=2)).sum() <= 68 * 5
    on_image = render_landmarks(lm, 512, 512, image=astronaut)
    assert np.array_equal(on_image[0, 0], astronaut[0, 0]) and not np.array_equal(on_image, astronaut)
    assert np.array_equal(render_landmarks(lm, 512, 512), dots)


def _frames_row(clip_id, frames, indices):
    return {
        "clip_id": clip_id, "source": f"videos/{clip_id}.mp4", "source_kind": "video", "n_frames": 20, "label": 0,
        "test_indices": indices, "train_candidates": indices, "frame_indices": indices,
        "jpeg": [jpeg(f) for f in frames], "crop_boxes": [[0.0, 0.0, 160.0, 160.0]] * len(frames),
        "width": 160, "height": 160,
    }


def test_cli_round_trip(tmp_path, face_crops):
    grey = np.full_like(face_crops[0], 90)
    rows = [
        _frames_row("demo-0001", [face_crops[0], grey, face_crops[1]], [0, 4, 9]),
        _frames_row("demo-0002", [grey, grey], [2, 3]),
    ]
    frames_path, out = tmp_path / "frames.parquet", tmp_path / "faces" / "000-of-001.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=FRAMES_SCHEMA), frames_path, FRAMES_SCHEMA)
    proc = subprocess.run(
        [sys.executable, "-m", "stages.faces", "--frames", str(frames_path), "--out", str(out),
         "--config-json", json.dumps({"backend": "dlib", "upsample": 1})],
        capture_output=True, text=True, check=True,
    )
    assert "2 clips, 5 frames: 2 detected, 1 filled, 2 missing; 1 clips no_face" in proc.stdout
    table = read_parquet(out, FACES_SCHEMA)
    assert table.schema.equals(FACES_SCHEMA)
    faces = table.to_pylist()
    assert [r["clip_id"] for r in faces] == ["demo-0001", "demo-0002"]
    for row, src in zip(faces, rows):
        assert row["frame_indices"] == src["frame_indices"]
        n = len(src["frame_indices"])
        assert all(len(row[k]) == n for k in ("landmarks", "parsing_png", "det_score", "face_status"))
    assert faces[0]["face_status"] == ["detected", "filled", "detected"] and faces[0]["clip_flag"] == ""
    assert faces[1]["clip_flag"] == "no_face"


def test_config_is_checked(tmp_path):
    assert FacesConfig.from_dict({}) == FacesConfig()
    for bad in ({"backend": "mediapipe"}, {"upsample": -1}, {"upsampel": 1}):
        with pytest.raises(Exception, match="faces config"):
            FacesConfig.from_dict(bad)
    with pytest.raises(SystemExit) as exit_info:
        from stages.common.errors import run_cli

        run_cli(main, ["--frames", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "o.parquet")])
    assert exit_info.value.code == 2
