"""Features stage: the per-clip join of frames, faces and index (no captions), and its failure messages."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from stages.common.errors import StageError
from stages.common.io import read_made_with, read_parquet, write_parquet
from stages.common.schemas import FACES_SCHEMA, FEATURES_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA
from stages.faces.parsing import encode_parsing
from stages.faces.render import CLASS_BITS, DOT, decode_face_map, render_landmarks
from stages.features.stage import build, main

FRAMES = [0, 2, 5]


def frames_row(clip_id: str, label: int) -> dict:
    return dict(clip_id=clip_id, source=f"{clip_id}.mp4", source_kind="video", n_frames=6, label=label,
                test_indices=[0, 5], train_candidates=[0, 2, 2, 5], frame_indices=FRAMES,
                jpeg=[f"{clip_id}-{i}".encode() for i in FRAMES], crop_boxes=None, width=32, height=32)


def faces_row(clip_id: str, frame_indices=FRAMES, flag: str = "") -> dict:
    n = len(frame_indices)
    status = ["missing"] * n if flag else ["detected"] * n
    return dict(clip_id=clip_id, frame_indices=frame_indices, landmarks=[[float(i)] * 136 for i in range(n)],
                parsing_png=[encode_parsing(np.full((32, 32), i, np.uint8)) for i in range(n)], det_score=[1.0] * n,
                face_status=status, backend="test", clip_flag=flag)


def index_row(clip_id: str, label: int, splits) -> dict:
    return dict(clip_id=clip_id, source=f"{clip_id}.mp4", source_kind="video", n_frames=6, label=label,
                class_name=["happiness", "sadness"][label], splits=[{"fold": f, "split": s} for f, s in splits])


@pytest.fixture
def inputs(tmp_path):
    """Three clips: c has no face; the faces shard lists them in another order."""
    paths = {name: tmp_path / f"{name}.parquet" for name in ("frames", "faces", "index")}
    write_parquet(pa.Table.from_pylist([frames_row("a", 0), frames_row("b", 1), frames_row("c", 0)],
                                       schema=FRAMES_SCHEMA), paths["frames"])
    write_parquet(pa.Table.from_pylist([faces_row("c", flag="no_face"), faces_row("a"), faces_row("b")],
                                       schema=FACES_SCHEMA), paths["faces"])
    write_parquet(pa.Table.from_pylist(
        [index_row("b", 1, [("fold1", "test"), ("fold2", "train")]), index_row("z", 1, [("fold1", "train")]),
         index_row("a", 0, [("fold1", "train"), ("fold2", "test")]), index_row("c", 0, [("fold1", "train")])],
        schema=INDEX_SCHEMA), paths["index"])
    return paths


def run_build(paths):
    return build(*(str(paths[k]) for k in ("frames", "faces", "index")))


def test_join(inputs):
    table, summary = run_build(inputs)
    assert table.schema == FEATURES_SCHEMA
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert list(rows) == ["a", "b", "c"]  # frames order
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["label"], a["class_name"], b["label"], b["class_name"]) == (0, "happiness", 1, "sadness")
    assert b["splits"] == [{"fold": "fold1", "split": "test"}, {"fold": "fold2", "split": "train"}]
    assert a["jpeg"] == [b"a-0", b"a-2", b"a-5"] and (decode_face_map(a["face_maps"][1], 32, 32) & CLASS_BITS == 1).all()
    assert a["landmarks"][2] == [2.0] * 136 and a["frame_indices"] == FRAMES
    assert (a["test_indices"], a["train_candidates"], a["width"]) == ([0, 5], [0, 2, 2, 5], 32)
    assert "caption" not in table.schema.names  # captions are a separate input of the models that read them
    assert c["face_status"] == ["missing"] * 3  # no_face clips are kept
    assert summary == "3 clips, 1 no_face; fold1 test 1, fold1 train 2, fold2 test 1, fold2 train 1"


def test_cli_writes_features(inputs, tmp_path, capsys):
    out = tmp_path / "features" / "000-of-001.parquet"
    main(["--frames", str(inputs["frames"]), "--faces", str(inputs["faces"]), "--index", str(inputs["index"]), "--out", str(out)])
    assert read_parquet(out, FEATURES_SCHEMA).num_rows == 3
    assert capsys.readouterr().out.startswith("features 000-of-001: 3 clips, 1 no_face")


def test_the_features_shard_carries_the_frames_and_faces_settings_and_refuses_mixed_ones(inputs, tmp_path):
    """Each stage records its settings in its output (write_parquet's made_with) and carries its inputs' records:
    what a trained run's run_info.json records as made_with, for predict to check."""
    frames, faces = (read_parquet(inputs[k]) for k in ("frames", "faces"))
    write_parquet(frames, inputs["frames"], FRAMES_SCHEMA, {"frames": {"size": 112}})
    write_parquet(faces, inputs["faces"], FACES_SCHEMA, {"frames": {"size": 112}, "faces": {"backend": "dlib"}})
    out = tmp_path / "features.parquet"
    args = ["--frames", str(inputs["frames"]), "--faces", str(inputs["faces"]), "--index", str(inputs["index"])]
    main([*args, "--out", str(out)])
    assert read_made_with(out) == {"frames": {"size": 112}, "faces": {"backend": "dlib"}}
    assert read_made_with(inputs["index"]) == {}  # written without a record
    write_parquet(faces, inputs["faces"], FACES_SCHEMA, {"frames": {"size": 224}, "faces": {"backend": "dlib"}})
    with pytest.raises(StageError, match="different frames settings"):  # faces made from other frames
        main([*args, "--out", str(tmp_path / "mixed.parquet")])
    assert not (tmp_path / "mixed.parquet").exists()


def rewrite_faces(paths, rows):
    write_parquet(pa.Table.from_pylist(rows, schema=FACES_SCHEMA), paths["faces"])


def test_misaligned_faces_fail(inputs):
    rewrite_faces(inputs, [faces_row("a"), faces_row("b", [0, 2, 4]), faces_row("c")])
    with pytest.raises(StageError, match=r"frame_indices differ .* clips b;.*rerun"):
        run_build(inputs)


def test_faces_with_wrong_list_length_fail(inputs):
    bad = faces_row("b")
    bad["parsing_png"] = bad["parsing_png"][:2]
    rewrite_faces(inputs, [faces_row("a"), bad, faces_row("c")])
    with pytest.raises(StageError, match="parsing_png does not have one entry per frame for clips b"):
        run_build(inputs)


def test_missing_faces_row_fails(inputs):
    rewrite_faces(inputs, [faces_row("a"), faces_row("c")])
    with pytest.raises(StageError, match=r"faces\.parquet: no faces row for clips b .*faces stage"):
        run_build(inputs)


def test_clip_missing_from_index_fails(inputs):
    table = read_parquet(inputs["index"], INDEX_SCHEMA)
    write_parquet(table.filter(pa.array([c != "a" for c in table.column("clip_id").to_pylist()])), inputs["index"])
    with pytest.raises(StageError, match="clips a are not in .*index.parquet"):
        run_build(inputs)


def test_face_maps_hold_the_parsing_classes_and_the_landmark_dots(inputs):
    """Each frame's face map holds its parsing classes and the dots the trainer's loader used to draw every epoch
    (render_landmarks at the stored size), no dots for frames whose face is missing."""
    rows = {r["clip_id"]: r for r in run_build(inputs)[0].to_pylist()}
    for i, (points, buffer) in enumerate(zip(rows["a"]["landmarks"], rows["a"]["face_maps"])):
        expected = render_landmarks(np.array(points, np.float32).reshape(68, 2), 32, 32)
        face_map = decode_face_map(buffer, 32, 32)
        dots = np.where(face_map & DOT, 255, 0).astype(np.uint8)
        assert np.array_equal(np.repeat(dots[..., None], 3, 2), expected) and (face_map & CLASS_BITS == i).all()
    assert (decode_face_map(rows["a"]["face_maps"][2], 32, 32) & DOT).any()
    assert not any((decode_face_map(m, 32, 32) & DOT).any() for m in rows["c"]["face_maps"])  # no_face: all missing
    with pytest.raises(ValueError, match="is not 16x16"):
        decode_face_map(rows["a"]["face_maps"][0], 16, 16)


def test_a_parsing_map_of_another_size_fails(inputs):
    faces = read_parquet(inputs["faces"], FACES_SCHEMA).to_pylist()
    faces[1]["parsing_png"][0] = encode_parsing(np.zeros((16, 32), np.uint8))
    write_parquet(pa.Table.from_pylist(faces, schema=FACES_SCHEMA), inputs["faces"])
    with pytest.raises(StageError, match="a parsing map is 32x16, its frame 32x32"):
        run_build(inputs)


def test_an_old_features_shard_fails_clearly(tmp_path):
    """A shard written before the face maps (parsing_png + landmarks_png columns) asks for a rerun."""
    old = pa.table({name: pa.array([], FEATURES_SCHEMA.field(name).type) for name in FEATURES_SCHEMA.names
                    if name != "face_maps"}).append_column("landmarks_png", pa.array([], pa.list_(pa.binary())))
    write_parquet(old, tmp_path / "old.parquet")
    with pytest.raises(StageError, match=r"missing columns \['face_maps'\]; it was written by an older version"):
        read_parquet(tmp_path / "old.parquet", FEATURES_SCHEMA, columns=["clip_id", "face_maps"])
