"""Frames stage: sampling formulas (SPEC §1.3), frame ordering, seek decoding, bad inputs, shards, face crop."""
from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pyarrow as pa
import pytest

from stages.common.errors import StageError
from stages.common.io import read_parquet, write_parquet
from stages.common.schemas import FRAMES_SCHEMA, INDEX_SCHEMA
from stages.common.shards import shard_of
from stages.frames import decode, sampling
from stages.frames.decode import list_frame_files, read_frames, read_frames_all
from stages.frames.face_track import scene_cuts, track_face
from stages.common.face_detect import square_box
from stages.frames.stage import DEFAULTS, face_crop, main

S = 16


# ---------------------------------------------------------------- helpers

def frame_value(i: int) -> int:
    """Grey level that identifies synthetic frame i."""
    return (i * 4) % 256


def synthetic_frame(i: int, size: int = 64) -> np.ndarray:
    """Top quarter flat at frame_value(i); below it a texture that moves with i."""
    yy, xx = np.mgrid[:size, :size]
    img = np.stack([(xx * 4 + i * 7) % 256, (yy * 4 + i * 13) % 256, (xx * yy + i * 5) % 256], -1)
    img[: size // 4] = frame_value(i)
    return img.astype(np.uint8)


def frame_number(rgb: np.ndarray) -> int:
    level = np.median(rgb[: rgb.shape[0] // 4])
    return int(np.argmin([abs(level - frame_value(i)) for i in range(64)]))


def write_video(path, n: int, size: int = 64, gop: int = 12) -> None:
    """H.264 with B-frames and a keyframe every ``gop`` frames, so that seeking matters."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(synthetic_frame(i, size), format="rgb24")))
        container.mux(stream.encode())


def write_folder(folder, n: int, pattern: str = "{}.jpg", size: int = 48) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / pattern.format(i + 1)), np.full((size, size, 3), frame_value(i), np.uint8))


def write_index(path, clips) -> None:
    """clips: (clip_id, source, kind, n_frames)."""
    rows = [
        dict(clip_id=c, source=str(s), source_kind=k, n_frames=n, label=0, class_name="happiness",
             splits=[{"fold": "fold1", "split": "test"}])
        for c, s, k, n in clips
    ]
    write_parquet(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), path, INDEX_SCHEMA)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, 60)
    return path


# ---------------------------------------------------------------- sampling (SPEC §1.3)

def spec_test(n):
    if n > S:
        tick = n / S
        return [int(tick / 2.0 + tick * i) for i in range(S)]
    return [i if i < n else n - 1 for i in range(S)]


@pytest.mark.parametrize("n", [1, 5, 11, 15, 16, 17, 28, 70, 144, 847])
def test_test_indices_follow_spec(n):
    assert sampling.test_indices(n, S).tolist() == spec_test(n)


def test_test_indices_known_values():
    assert sampling.test_indices(70).tolist() == [2, 6, 10, 15, 19, 24, 28, 32, 37, 41, 45, 50, 54, 59, 63, 67]
    assert sampling.test_indices(5).tolist() == [0, 1, 2, 3, 4] + [4] * 11
    assert sampling.test_indices(16).tolist() == list(range(16))


@pytest.mark.parametrize("n", [5, 11, 16, 17, 32, 47, 70, 144, 847])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_train_candidates_lie_in_their_segments(n, k):
    cand = sampling.train_candidates(n, S, k)
    assert cand.shape == (S, k)
    if n < S:
        assert (cand == np.array(spec_test(n))[:, None]).all()
        return
    avg = n // S
    for i, row in enumerate(cand):
        assert ((i * avg <= row) & (row <= i * avg + avg - 1)).all()
        distinct = set(row.tolist())
        assert len(distinct) == min(k, avg)  # distinct when the segment allows, and then covering it
    draw = sampling.draw_train_indices(cand, np.random.default_rng(0))
    assert draw.shape == (S,) and all(d in row for d, row in zip(draw, cand))


def test_draw_equals_tsn_when_k_covers_the_segment():
    n, k = 40, 3  # avg = 2 <= k: every frame of each segment is a candidate, drawn uniformly
    cand = sampling.train_candidates(n, S, k)
    rng = np.random.default_rng(0)
    offsets = np.array([sampling.draw_train_indices(cand, rng) - np.arange(S) * 2 for _ in range(2000)])
    assert set(np.unique(offsets)) == {0, 1}
    assert abs(offsets.mean() - 0.5) < 0.03


def test_needed_frames_is_sorted_union():
    for n in (5, 16, 70, 847):
        need = sampling.needed_frames(n, S, 3)
        expected = set(sampling.test_indices(n, S)) | set(sampling.train_candidates(n, S, 3).ravel())
        assert need.tolist() == sorted(expected)


@pytest.mark.parametrize("n", [5, 16, 17, 63, 64, 70, 144, 847])
def test_all_candidates_are_every_frame_of_each_segment(n):
    cand = sampling.train_candidates(n, S, sampling.ALL)
    if n < S:
        assert cand[:, 0].tolist() == spec_test(n) and cand.shape == (S, 1)
        return
    avg = n // S
    assert cand.tolist() == np.arange(S * avg).reshape(S, avg).tolist()
    assert sampling.is_exact(n, S, sampling.ALL) and sampling.is_exact(n, S, 3) == (n < 64)


def test_training_draw_is_dfer_clips_uniform_draw_over_the_whole_segment():
    """n = 144 (avg 9 > K = 3): under ALL each segment's offset is U{0..8} as in DFER-CLIP; K = 3 never reaches
    most offsets."""
    n, draws = 144, 4000
    rng = np.random.default_rng(0)
    exact = sampling.train_candidates(n, S, sampling.ALL)
    offsets = np.array([sampling.draw_train_indices(exact, rng) - np.arange(S) * 9 for _ in range(draws)])
    counts = np.bincount(offsets.ravel(), minlength=9)
    assert counts.size == 9 and abs(counts / counts.sum() - 1 / 9).max() < 0.01
    cheap = sampling.train_candidates(n, S, 3)
    assert len(np.unique(sampling.draw_train_indices(cheap, rng) - np.arange(S) * 9)) <= 3


def test_default_config_stores_every_frame_of_each_segment(tmp_path):
    write_folder(tmp_path / "long", 70)  # avg 4 > 3: K = 3 would skip a frame of every segment
    (row,) = run_stage(tmp_path, [("t-long", tmp_path / "long", "frames", 70)])
    assert np.array(row["train_candidates"]).reshape(S, 4).tolist() == np.arange(64).reshape(S, 4).tolist()
    assert row["frame_indices"] == list(range(64)) + [67]  # 67: the last segment's centre


def test_real_datasets_use_exact_sampling_and_the_demo_says_why_not():
    import yaml

    config = yaml.safe_load(open("config/config.yaml"))
    assert config["frames"]["candidates_per_segment"] == sampling.ALL
    for ds in ("dfew", "ferv39k", "mafw"):
        assert "candidates_per_segment" not in str(config["datasets"][ds])
        assert "candidates_per_segment" not in open(config["datasets"][ds]["settings"]).read()
    demo = config["datasets"]["demo"]
    assert demo["frames"]["candidates_per_segment"] == 3 and config["demo"]["max_frames"] < 64


def test_config_rejects_a_bad_candidate_count(tmp_path):
    for bad in (0, "some", True):
        with pytest.raises(StageError, match="candidates_per_segment must be 'all'"):
            run_stage(tmp_path, [], candidates_per_segment=bad)


# ---------------------------------------------------------------- frame folders

@pytest.mark.parametrize("pattern", ["{}.jpg", "frame_{:05d}.JPG"])
def test_folder_numeric_order_ignores_non_images(tmp_path, pattern):
    write_folder(tmp_path, 12, pattern)
    (tmp_path / "notes.txt").write_text("not a frame")
    with pytest.warns(UserWarning, match="notes.txt"):
        files = list_frame_files(tmp_path)
    assert files == [str(tmp_path / pattern.format(i)) for i in range(1, 13)]
    with pytest.warns(UserWarning):
        frames = read_frames(tmp_path, "frames", [11, 1, 9, 1], n_frames=12)
    assert [frame_number(f) for f in frames] == [11, 1, 9, 1]


def test_folder_listing_skips_other_files_and_subfolders(tmp_path):
    write_folder(tmp_path, 11, "img_{}.png")
    for name in ("notes.txt", "Thumbs.db", "scan.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    with pytest.warns(UserWarning, match="ignoring 4 non-image"):
        files = list_frame_files(tmp_path)
    assert files == [str(tmp_path / f"img_{i}.png") for i in range(1, 12)]


def test_folder_count_must_match_index(tmp_path):
    write_folder(tmp_path, 5)
    with pytest.raises(StageError, match="index says 6"):
        read_frames(tmp_path, "frames", [0], n_frames=6)


# ---------------------------------------------------------------- video

def test_video_frames_are_numbered_in_order(video):
    frames = read_frames_all(video, "video", range(60))
    assert [frame_number(f) for f in frames] == list(range(60))


def test_seek_decoding_matches_decode_all(video, monkeypatch):
    rng = np.random.default_rng(0)
    index_sets = [[0], [59], [11, 12, 13], [59, 0, 30, 30]] + [
        rng.choice(60, size=rng.integers(1, 30), replace=False).tolist() for _ in range(12)
    ]
    full = [read_frames_all(video, "video", indices) for indices in index_sets]
    monkeypatch.setattr(decode, "_read_video_all", None)  # the seek path must not fall back here
    for indices, expected in zip(index_sets, full):
        seek = read_frames(video, "video", indices, n_frames=60)
        assert all(np.array_equal(a, b) for a, b in zip(seek, expected)), indices


def test_seek_falls_back_to_decoding_from_the_start(video, monkeypatch):
    def lost(container, stream, key, wanted):  # a seek that loses track of the timestamps
        stream.codec_context.skip_frame = "NONREF"
        yield from ()

    monkeypatch.setattr(decode, "_decode_from", lost)
    indices = [3, 40, 41, 59]
    assert [frame_number(f) for f in read_frames(video, "video", indices, n_frames=60)] == indices


def test_video_count_must_match_index(video):
    with pytest.raises(StageError, match="index says 61"):
        read_frames(video, "video", [0], n_frames=61)


# ---------------------------------------------------------------- bad input

@pytest.mark.filterwarnings("ignore:.*non-image entries")
def test_bad_inputs_name_the_path(tmp_path, video):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[:300])
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "Thumbs.db").write_bytes(b"\0")
    (junk / "notes.txt").write_text("x")
    corrupt = tmp_path / "corrupt"
    write_folder(corrupt, 3)
    (corrupt / "2.jpg").write_bytes(b"not a jpeg")
    cases = [(truncated, "video"), (text, "video"), (tmp_path / "missing.mp4", "video"), (empty, "frames"),
             (junk, "frames"), (tmp_path / "missing", "frames"), (corrupt, "frames")]
    for path, kind in cases:
        with pytest.raises(StageError, match=str(path)):
            read_frames(path, kind, [0, 1])


# ---------------------------------------------------------------- stage

def run_stage(tmp_path, clips, shard="000-of-001", **cfg):
    index = tmp_path / "index.parquet"
    write_index(index, clips)
    out = tmp_path / f"frames-{shard}.parquet"
    main(["--index", str(index), "--shard", shard, "--config-json", json.dumps({"size": 32, **cfg}), "--out", str(out)])
    return read_parquet(out, FRAMES_SCHEMA).to_pylist()


def test_stage_writes_frames_shard(tmp_path, video):
    write_folder(tmp_path / "long", 40)
    write_folder(tmp_path / "short", 5)
    clips = [("t-long", tmp_path / "long", "frames", 40), ("t-short", tmp_path / "short", "frames", 5),
             ("t-video", video, "video", 60)]
    rows = {r["clip_id"]: r for r in run_stage(tmp_path, clips, candidates_per_segment=2)}
    assert set(rows) == {"t-long", "t-short", "t-video"}
    for clip_id, _, _, n in clips:
        row = rows[clip_id]
        assert row["test_indices"] == spec_test(n)
        assert row["train_candidates"] == sampling.train_candidates(n, S, 2).ravel().tolist()
        assert row["frame_indices"] == sampling.needed_frames(n, S, 2).tolist()
        assert len(row["jpeg"]) == len(row["frame_indices"])
        assert row["crop_boxes"] is None and row["crop_flag"] == "" and row["crop_filled_fraction"] is None
        assert (row["width"], row["height"]) == (32, 32)
        for i, data in zip(row["frame_indices"], row["jpeg"]):
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (32, 32, 3)
            assert frame_number(img) == i
    assert len(rows["t-short"]["frame_indices"]) == 5


def test_stage_failures(tmp_path, capsys):
    write_folder(tmp_path / "ok", 20)
    clips = [("t-ok", tmp_path / "ok", "frames", 20), ("t-gone", tmp_path / "gone", "frames", 20)]
    with pytest.raises(StageError, match=r"(?s)1 failed.*t-gone.*gone: frame folder not found"):
        run_stage(tmp_path, clips)
    rows = run_stage(tmp_path, clips, max_failed_fraction=0.5)
    assert [r["clip_id"] for r in rows] == ["t-ok"]
    assert "t-gone" in capsys.readouterr().err


def test_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(StageError, match="unknown keys.*num_segment"):
        run_stage(tmp_path, [], num_segment=8)


def test_shards_partition_clips_by_shard_of(tmp_path):
    write_folder(tmp_path / "clip", 16)
    ids = [f"t-{i:05d}" for i in range(12)]
    clips = [(c, tmp_path / "clip", "frames", 16) for c in ids]
    got = {s: [r["clip_id"] for r in run_stage(tmp_path, clips, shard=f"{s:03d}-of-003")] for s in range(3)}
    assert sorted(sum(got.values(), [])) == ids
    for s, members in got.items():
        assert all(shard_of(c, 3) == s for c in members)


# ---------------------------------------------------------------- face crop

# eyes to chin of the astronaut (by hand in the original photo: x 190..255, y 95..165), in canvas pixels
FACE_CORE = (400 + 190 // 2, 40 + 95 // 2, 400 + 255 // 2, 40 + 165 // 2)
FACE = {**DEFAULTS["face_crop"], "enabled": True}


def contains_face(box, core=FACE_CORE) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= core[0] and y0 <= core[1] and x1 >= core[2] and y1 >= core[3]


def shifted(core, dx, dy):
    return (core[0] - dx, core[1] - dy, core[2] - dx, core[3] - dy)


def astronaut_canvas(width: int = 720, flipped_at: int | None = None, background: int = 90) -> np.ndarray:
    """The astronaut (face ~45 px wide: needs upsampling) at x = 400 on a flat background; ``flipped_at``: a second
    person, the mirrored photo, at that x."""
    from skimage.data import astronaut

    canvas = np.full((480, width, 3), background, np.uint8)
    canvas[40:296, 400:656] = astronaut()[::2, ::2]
    if flipped_at is not None:
        canvas[40:296, flipped_at:flipped_at + 256] = astronaut()[::2, ::-2]
    return canvas


def write_pngs(folder, frames) -> None:
    folder.mkdir()
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_face_crop_boxes_contain_the_face():
    shot = astronaut_canvas()[20:290, 300:660]
    blank = np.full_like(shot, 90)
    boxes, columns = face_crop([blank, blank, shot, blank], range(4), FACE, "clip")
    assert columns["crop_status"] == ["filled", "filled", "detected", "filled"] and columns["crop_flag"] == "face_filled"
    for x0, y0, x1, y1 in boxes:
        assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= 360 and y1 <= 270
        assert contains_face((x0, y0, x1, y1), shifted(FACE_CORE, 300, 20)) and x1 - x0 < 150  # not the whole frame
    with pytest.warns(UserWarning, match="no face found"):
        assert face_crop([blank] * 3, range(3), FACE, "clip") == (None, {
            "crop_status": ["filled"] * 3, "scene_cuts": [], "crop_filled_fraction": 1.0, "crop_flag": "no_face"})


def test_square_box_stays_inside_the_image():
    assert square_box((0, 10, 20, 50), 0.25, 100, 100) == (0, 0, 60, 60)
    assert square_box((10, 10, 90, 190), 0.25, 100, 200) == (0, 50, 100, 150)


def test_stage_face_crop(tmp_path):
    write_pngs(tmp_path / "face", [astronaut_canvas()[20:290, 300:660]] * 16)
    (row,) = run_stage(tmp_path, [("t-face", tmp_path / "face", "frames", 16)], face_crop={"enabled": True})
    assert len(row["crop_boxes"]) == len(row["jpeg"]) == 16 and (row["width"], row["height"]) == (32, 32)
    for x0, y0, x1, y1 in row["crop_boxes"]:
        assert x1 - x0 == y1 - y0 and contains_face((x0, y0, x1, y1), shifted(FACE_CORE, 300, 20))
    assert set(row["crop_status"]) == {"detected", "interpolated"} and row["scene_cuts"] == []
    assert row["crop_filled_fraction"] == 0 and row["crop_flag"] == ""


def test_the_crop_follows_a_panning_camera(tmp_path):
    """A camera panning right at 8 px per frame: the face crosses 184 px of a 360 x 270 frame."""
    canvas = astronaut_canvas(960)
    lefts = [300 + 8 * i for i in range(24)]
    write_pngs(tmp_path / "pan", [canvas[20:290, x:x + 360] for x in lefts])
    (row,) = run_stage(tmp_path, [("t-pan", tmp_path / "pan", "frames", 24)], face_crop={"enabled": True})
    assert row["scene_cuts"] == [] and len(row["crop_boxes"]) == len(row["frame_indices"])
    for i, box in zip(row["frame_indices"], row["crop_boxes"]):
        assert contains_face(box, shifted(FACE_CORE, lefts[i], 20)), (i, box)
    assert row["crop_filled_fraction"] == 0 and row["crop_flag"] == ""


def test_a_pan_to_another_person_keeps_the_first_and_is_flagged():
    """The camera pans from the astronaut to a second person: the crop never jumps to them; the frames after the
    astronaut left are filled with the last tracked box and counted, and the clip is flagged."""
    canvas = astronaut_canvas(1000, flipped_at=700)
    other_core = (700 + 256 - 255 // 2, FACE_CORE[1], 700 + 256 - 190 // 2, FACE_CORE[3])
    lefts = [240 + 14 * i for i in range(24)]
    frames = [canvas[20:290, x:x + 360] for x in lefts]
    face = {**FACE, "detections": 12, "max_filled_fraction": 0.2}
    with pytest.warns(UserWarning, match="the face was not found in [0-9]+ of 24 frames"):
        boxes, columns = face_crop(frames, range(24), face, "clip")
    status = columns["crop_status"]
    assert any(contains_face((0, 0, 360, 270), shifted(other_core, x, 20)) for x in lefts)  # they come into view
    for x, box, state in zip(lefts, boxes, status):
        assert not contains_face(box, shifted(other_core, x, 20))
        if state != "filled":
            assert contains_face(box, shifted(FACE_CORE, x, 20))
    gone = next(i for i, x in enumerate(lefts) if FACE_CORE[2] - x > 360 or FACE_CORE[0] < x)
    assert status[gone:] == ["filled"] * (24 - gone) and "filled" not in status[:gone - 3]
    assert columns["crop_flag"] == "face_filled" and columns["crop_filled_fraction"] > 0.2


def test_a_cut_to_a_shot_without_a_face_is_flagged(tmp_path):
    from skimage.data import coffee

    shot = astronaut_canvas()[20:290, 300:660]
    write_pngs(tmp_path / "cut", [shot] * 8 + [coffee()[:270, :360]] * 16)
    (row,) = run_stage(tmp_path, [("t-cut", tmp_path / "cut", "frames", 24)], face_crop={"enabled": True})
    after = [i >= 8 for i in row["frame_indices"]]
    assert row["scene_cuts"] == [8] and [s == "filled" for s in row["crop_status"]] == after
    assert all(contains_face(box, shifted(FACE_CORE, 300, 20)) for box in row["crop_boxes"])  # the last face seen
    assert row["crop_filled_fraction"] == pytest.approx(sum(after) / len(after)) and row["crop_flag"] == "face_filled"


def test_after_a_cut_the_face_is_found_again():
    before = astronaut_canvas()[20:290, 300:660]
    after = astronaut_canvas(background=30)[60:330, 220:580]  # the other camera: darker, closer to the left
    boxes, columns = face_crop([before] * 10 + [after] * 14, range(100, 124), FACE, "clip")
    assert columns["scene_cuts"] == [110] and columns["crop_filled_fraction"] == 0 and columns["crop_flag"] == ""
    assert all(contains_face(box, shifted(FACE_CORE, 300, 20)) for box in boxes[:10])
    assert all(contains_face(box, shifted(FACE_CORE, 220, 60)) for box in boxes[10:])


# ---------------------------------------------------------------- face track, with a stand-in detector

def numbered_frames(n: int, cut_at: int | None = None) -> list[np.ndarray]:
    """Flat frames whose first pixel is their number; from ``cut_at`` on in other colours."""
    frames = [np.full((40, 40, 3), 100, np.uint8) for _ in range(n)]
    for i, frame in enumerate(frames):
        if cut_at is not None and i >= cut_at:
            frame[...] = (20, 200, 60)
        frame[0, 0] = i
    return frames


def test_track_links_moving_boxes_and_ignores_others():
    boxes = {i: [(10.0 + i, 5.0, 30.0 + i, 25.0), (60.0, 5.0, 80.0, 25.0)] for i in range(20)}  # mover + bystander
    boxes[5] = [(60.0, 5.0, 80.0, 25.0)]  # the mover missed: the bystander is not taken instead
    track = track_face(numbered_frames(20), lambda rgb: boxes[int(rgb[0, 0, 0])], detections=4, cut_threshold=0.4)
    assert [i for i, s in enumerate(track.status) if s == "detected"] == [0, 10, 15, 19]
    assert track.status[1:10] == ["filled"] * 9 and track.filled_fraction == 9 / 20
    for i in range(20):
        if track.status[i] != "filled":
            assert track.boxes[i] == pytest.approx((10 + i, 5, 30 + i, 25))  # smoothing keeps a steady motion exact
    assert track.boxes[3] == pytest.approx((10, 5, 30, 25)) and track.boxes[7] == pytest.approx((20, 5, 40, 25))


def test_a_still_face_whose_detections_jump_between_two_scales_stays_tracked():
    # dlib on a demo clip: the same still face alternately as a 107 px and an 89 px box
    big, small = (32.0, 44.0, 139.0, 152.0), (46.0, 46.0, 135.0, 136.0)
    track = track_face(numbered_frames(34), lambda rgb: [big if int(rgb[0, 0, 0]) % 10 == 0 else small],
                       detections=8, cut_threshold=0.4)
    assert track.filled_fraction == 0 and "filled" not in track.status


def test_track_re_detects_after_a_cut_preferring_the_same_look():
    before = [(10.0, 10.0, 20.0, 20.0)]
    after = [(2.0, 2.0, 38.0, 38.0), (22.0, 12.0, 32.0, 22.0)]  # a big face, and one like the track's
    frames = numbered_frames(12, cut_at=6)
    assert scene_cuts(frames, 0.4) == [6]
    track = track_face(frames, lambda rgb: before if int(rgb[0, 0, 0]) < 6 else after, detections=12, cut_threshold=0.4)
    assert track.cuts == [6] and track.filled_fraction == 0
    assert track.boxes[:6] == [before[0]] * 6 and track.boxes[6:] == [after[1]] * 6
