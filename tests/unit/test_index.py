"""Index stage: list parsing, prefix rewrite, recounting, stable ids, and every kind of unusable clip."""
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from stages.common.datasets import class_mapping, dataset_config_from_dict
from stages.common.errors import StageError
from stages.index.__main__ import main as index_main
from stages.index.annotations import ListEntry, Problem, parse_line, read_list, rewrite_prefix
import stages.index.stage as index_stage
from stages.index.stage import build_index, check_drop_fraction, clip_id_for

CLASSES = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
PREFIX = "/data/EECS-IoannisLab/datasets/DFEW"


def write_frames(folder: Path, count: int, names=None) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names or [f"{k:05d}.jpg" for k in range(1, count + 1)]):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), i * 10 % 255, np.uint8))


def write_video(path: Path, count: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 7 % 255, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def dataset(root: Path, lines_train: str, lines_test: str, **extra):
    (root / "annotation").mkdir(parents=True, exist_ok=True)
    (root / "annotation" / "train.txt").write_text(lines_train)
    (root / "annotation" / "test.txt").write_text(lines_test)
    raw = {
        "name": "dfew", "root": str(root), "classes": CLASSES, "path_prefix": {"from": PREFIX},
        "id_root": "DFEW_Frame_Face", "folds": {"fold1": {"train": "annotation/train.txt", "test": "annotation/test.txt"}},
        **extra,
    }
    return dataset_config_from_dict(raw)


def test_parse_line_accepts_three_fields_and_reports_the_rest():
    assert parse_line(f"{PREFIX}/DFEW_Frame_Face/00001 144 1", "a.txt", 3) == ListEntry("a.txt", 3, f"{PREFIX}/DFEW_Frame_Face/00001", 144, 1)
    assert parse_line("   ", "a.txt", 4) is None
    two = parse_line("/x/00002 70", "a.txt", 5)
    assert isinstance(two, Problem) and "3 fields" in two.reason and two.line == 5
    text = parse_line("/x/00002 seventy 2", "a.txt", 6)
    assert isinstance(text, Problem) and "integers" in text.reason


def test_read_list_tolerates_crlf_bom_and_missing_final_newline(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes("\ufeff/a/1 10 0\r\n/a/2 11 1\r\n\r\n/a/3 12 2".encode("utf-8"))
    entries, problems = read_list(path)
    assert [e.path for e in entries] == ["/a/1", "/a/2", "/a/3"] and problems == []
    assert entries[2].line == 4


def test_rewrite_prefix_only_touches_whole_prefix():
    assert rewrite_prefix(f"{PREFIX}/DFEW_Frame_Face/00001", PREFIX, "data/DFEW") == "data/DFEW/DFEW_Frame_Face/00001"
    assert rewrite_prefix(f"{PREFIX}X/00001", PREFIX, "data/DFEW") == f"{PREFIX}X/00001"
    assert rewrite_prefix("/other/1", "", "data") == "/other/1"


def test_clip_ids_are_stable_text_not_numbers(tmp_path):
    ds = dataset(tmp_path, "", "")
    assert clip_id_for(ds, f"{tmp_path}/DFEW_Frame_Face/00001") == "dfew-00001"
    ferv = dataset_config_from_dict({"name": "ferv39k", "root": "r", "classes": CLASSES, "id_root": "2_ClipsforFaceCrop",
                                     "folds": {"fold1": {"train": "t", "test": "u"}}})
    assert clip_id_for(ferv, "r/2_ClipsforFaceCrop/Action/Happy/0267") == "ferv39k-Action-Happy-0267"


def test_build_index_recounts_merges_folds_and_drops_bad_clips(tmp_path):
    faces = tmp_path / "DFEW_Frame_Face"
    write_frames(faces / "00001", 20)
    write_frames(faces / "00002", 12, names=[f"{k}.jpg" for k in range(1, 13)] )
    (faces / "00002" / "notes.txt").write_text("not a frame")
    (faces / "00003").mkdir(parents=True)  # empty folder
    write_video(faces / "00004.mp4", 18)
    (faces / "00005.mp4").write_text("this is not a video")
    train = (f"{PREFIX}/DFEW_Frame_Face/00001 144 1\n"      # listed count is wrong: recounted to 20
             f"{PREFIX}/DFEW_Frame_Face/00002 12 0\n"
             f"{PREFIX}/DFEW_Frame_Face/00003 5 2\n"        # empty folder
             f"{PREFIX}/DFEW_Frame_Face/00009 5 2\n"        # missing
             f"{PREFIX}/DFEW_Frame_Face/00002 12 0\n"       # duplicate in the same list
             f"{PREFIX}/DFEW_Frame_Face/00006 12\n")        # two fields
    test = (f"{PREFIX}/DFEW_Frame_Face/00004.mp4 18 4\n"
            f"{PREFIX}/DFEW_Frame_Face/00005.mp4 18 4\n"    # not a video
            f"{PREFIX}/DFEW_Frame_Face/00001 20 9")          # conflicting label, no final newline
    result = build_index(dataset(tmp_path, train, test), progress=False)
    rows = {r["clip_id"]: r for r in result.table.to_pylist()}
    assert set(rows) == {"dfew-00001", "dfew-00002", "dfew-00004.mp4"}
    assert rows["dfew-00001"]["n_frames"] == 20 and [r.clip_id for r in result.recounts] == ["dfew-00001"]
    assert rows["dfew-00001"]["splits"] == [{"fold": "fold1", "split": "train"}]
    assert rows["dfew-00002"]["n_frames"] == 12 and rows["dfew-00002"]["source_kind"] == "frames"
    assert rows["dfew-00004.mp4"]["n_frames"] == 18 and rows["dfew-00004.mp4"]["source_kind"] == "video"
    assert rows["dfew-00004.mp4"]["splits"] == [{"fold": "fold1", "split": "test"}]
    reasons = {(Path(p.file).name, p.line): p.reason for p in result.problems}
    assert "no image files" in reasons[("train.txt", 3)]
    assert "no such file" in reasons[("train.txt", 4)]
    assert "duplicate" in reasons[("train.txt", 5)]
    assert "3 fields" in reasons[("train.txt", 6)]
    assert "unreadable video" in reasons[("test.txt", 2)]
    assert "disagrees" in reasons[("test.txt", 3)]


def test_label_out_of_range_is_dropped(tmp_path):
    write_frames(tmp_path / "DFEW_Frame_Face" / "00001", 16)
    result = build_index(dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/00001 16 7\n", ""), progress=False)
    assert result.table.num_rows == 0
    assert "out of range 0..6" in result.problems[0].reason


def test_drop_fraction_failure_names_file_line_and_remedy(tmp_path):
    write_frames(tmp_path / "DFEW_Frame_Face" / "00001", 16)
    ds = dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/00001 16 0\n/x 1\n", "", max_drop_fraction=0.1)
    result = build_index(ds, progress=False)
    with pytest.raises(StageError) as err:
        check_drop_fraction(result, ds)
    assert "train.txt:2" in str(err.value) and "max_drop_fraction" in str(err.value)


def test_cli_writes_index_and_dropped_report_atomically(tmp_path):
    write_frames(tmp_path / "DFEW_Frame_Face" / "00001", 16)
    yaml_path = tmp_path / "ds.yaml"
    yaml_path.write_text(
        f"name: dfew\nroot: /nonexistent\nclasses: {CLASSES}\npath_prefix: {{from: {PREFIX}}}\nid_root: DFEW_Frame_Face\n"
        "folds: {fold1: {train: annotation/train.txt, test: annotation/test.txt}}\n")
    dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/00001 16 0\n", "")
    out = tmp_path / "out" / "index.parquet"
    index_main(["--dataset-config", str(yaml_path), "--overrides-json", f'{{"root": "{tmp_path}"}}',
                "--out", str(out), "--dropped", str(tmp_path / "out" / "dropped.csv")])
    table = pq.read_table(out)
    assert table.column("clip_id").to_pylist() == ["dfew-00001"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["dropped.csv", "index.parquet"]


def test_a_root_with_another_layout_names_the_expected_folder(tmp_path):
    (tmp_path / "Clip" / "clip_224x224" / "00001").mkdir(parents=True)  # DFEW's other folder, not the face frames
    with pytest.raises(StageError, match="DFEW_Frame_Face/.*does not exist"):
        build_index(dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/00001 16 0\n", ""), progress=False)


# ---------------------------------------------------------------- ids, counting and reporting (issue 8, items 5-6)

def test_clip_ids_are_injective_and_readable_where_possible(tmp_path):
    ds = dataset(tmp_path, "", "")
    base = f"{tmp_path}/DFEW_Frame_Face"
    names = ["表情.mp4", "笑顔.mp4", "a b", "a-b", "a/b", "a_b", "x.mp4", "x", "x.avi", "Ünïcode", "Unicode"]
    ids = {name: clip_id_for(ds, f"{base}/{name}") for name in names}
    assert len(set(ids.values())) == len(names), ids
    assert ids["a/b"] == "dfew-a-b" and ids["a_b"] == "dfew-a_b" and ids["x.mp4"] == "dfew-x.mp4"
    assert ids["a b"].startswith("dfew-a-b--") and ids["a-b"].startswith("dfew-a-b--")
    assert ids["表情.mp4"].startswith("dfew-mp4--")
    assert clip_id_for(ds, f"{base}/a/../a/b/") == ids["a/b"]  # one folder, one id


def test_an_id_collision_stops_the_index_naming_both_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(index_stage, "ID_HASH_CHARS", 0)  # 'a+b' and 'a-b' now share the id 'dfew-a-b--'
    write_frames(tmp_path / "DFEW_Frame_Face" / "a+b", 16)
    write_frames(tmp_path / "DFEW_Frame_Face" / "a-b", 16)
    ds = dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/a-b 16 0\n", f"\n{PREFIX}/DFEW_Frame_Face/a+b 16 0\n")
    with pytest.raises(StageError, match=r"dfew-a-b-- names two different clips: .*a-b \(.*train.txt:1\) and .*a\+b \(.*test.txt:2\)"):
        build_index(ds, progress=False)


def test_a_path_with_spaces_is_reported_as_such():
    problem = parse_line("/data/DFEW/my clips/00001 144 1", "a.txt", 7)
    assert isinstance(problem, Problem) and problem.path == "/data/DFEW/my clips/00001"
    assert "contains spaces" in problem.reason and "fields" not in problem.reason


def lists_over_folds(root: Path, folds: int, lines: dict[str, str]) -> dict:
    """The same list text as train and test of every fold."""
    (root / "annotation").mkdir(parents=True, exist_ok=True)
    spec = {}
    for k in range(1, folds + 1):
        for split in ("train", "test"):
            (root / "annotation" / f"{split}{k}.txt").write_text(lines[split])
        spec[f"fold{k}"] = {"train": f"annotation/train{k}.txt", "test": f"annotation/test{k}.txt"}
    return spec


def test_dropped_counts_clips_not_list_lines(tmp_path):
    """One bad clip named by 6 lists is one unusable clip of 21, under a 10 % threshold; a clip whose label
    disagrees in one list is kept, so it is not dropped either."""
    good = [f"{k:05d}" for k in range(1, 21)]
    for name in good:
        write_frames(tmp_path / "DFEW_Frame_Face" / name, 16)
    train = "".join(f"{PREFIX}/DFEW_Frame_Face/{name} 16 0\n" for name in good[:10]) + f"{PREFIX}/DFEW_Frame_Face/bad clip 16 1\n"
    test = "".join(f"{PREFIX}/DFEW_Frame_Face/{name} 16 0\n" for name in good[10:]) + f"{PREFIX}/DFEW_Frame_Face/bad clip 16 1\n"
    folds = lists_over_folds(tmp_path, 3, {"train": train, "test": test})
    (tmp_path / "annotation" / "test3.txt").write_text(test.replace("00011 16 0", "00011 16 2"))
    ds = dataset_config_from_dict({"name": "dfew", "root": str(tmp_path), "classes": CLASSES, "id_root": "DFEW_Frame_Face",
                                   "path_prefix": {"from": PREFIX}, "folds": folds, "max_drop_fraction": 0.1})
    result = build_index(ds, progress=False)
    assert result.kept == 20 and len(result.problems) == 7
    assert result.dropped_clips == [clip_id_for(ds, f"{tmp_path}/DFEW_Frame_Face/bad clip")]
    assert result.referenced == 21
    check_drop_fraction(result, ds)  # 1 of 21 clips, not 7 of 27 lines


def write_yaml(tmp_path: Path, **extra) -> Path:
    yaml_path = tmp_path / "ds.yaml"
    yaml_path.write_text(
        f"name: dfew\nroot: /nonexistent\nclasses: {CLASSES}\npath_prefix: {{from: {PREFIX}}}\nid_root: DFEW_Frame_Face\n"
        "folds: {fold1: {train: annotation/train.txt, test: annotation/test.txt}}\n"
        + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return yaml_path


def test_dropped_report_is_written_also_when_the_threshold_fails(tmp_path):
    write_frames(tmp_path / "DFEW_Frame_Face" / "00001", 16)
    dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/00001 16 0\n{PREFIX}/DFEW_Frame_Face/00002 16 0\n", "")
    out, log_copy = tmp_path / "out", tmp_path / "logs" / "index_dropped.csv"
    with pytest.raises(StageError, match=r"1 of 2 clips are unusable.*index_dropped.csv"):
        index_main(["--dataset-config", str(write_yaml(tmp_path, max_drop_fraction=0.1)),
                    "--overrides-json", f'{{"root": "{tmp_path}"}}', "--out", str(out / "index.parquet"),
                    "--dropped", str(out / "dropped.csv"), str(log_copy)])
    for path in (out / "dropped.csv", log_copy):
        assert "DFEW_Frame_Face/00002" in path.read_text() and "dfew-00002" in path.read_text()
    assert not (out / "index.parquet").exists()


def test_hidden_files_are_not_frames_and_empty_frames_drop_the_clip(tmp_path, capsys):
    faces = tmp_path / "DFEW_Frame_Face"
    write_frames(faces / "00001", 20)
    (faces / "00001" / "._00001.jpg").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS resource fork
    (faces / "00001" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_frames(faces / "00002", 20)
    (faces / "00002" / "00007.jpg").write_bytes(b"")  # truncated copy
    from stages.frames.decode import list_frame_files
    assert [Path(f).name for f in list_frame_files(faces / "00001")] == [f"{k:05d}.jpg" for k in range(1, 21)]
    lines = f"{PREFIX}/DFEW_Frame_Face/00001 20 0\n{PREFIX}/DFEW_Frame_Face/00002 20 0\n"
    dataset(tmp_path, lines, "")
    out = tmp_path / "out"
    index_main(["--dataset-config", str(write_yaml(tmp_path, max_drop_fraction=0.6)),
                "--overrides-json", f'{{"root": "{tmp_path}"}}', "--out", str(out / "index.parquet"),
                "--dropped", str(out / "dropped.csv")])
    table = pq.read_table(out / "index.parquet").to_pylist()
    assert [(r["clip_id"], r["n_frames"]) for r in table] == [("dfew-00001", 20)]
    assert "00007.jpg" in (out / "dropped.csv").read_text() and "0 bytes" in (out / "dropped.csv").read_text()
    log = capsys.readouterr().err
    assert "ignored hidden files of dfew-00001" in log and "._00001.jpg" in log


def test_corrected_frame_counts_are_named(tmp_path, capsys):
    write_frames(tmp_path / "DFEW_Frame_Face" / "00001", 20)
    write_frames(tmp_path / "DFEW_Frame_Face" / "00002", 16)
    dataset(tmp_path, f"{PREFIX}/DFEW_Frame_Face/00001 144 0\n{PREFIX}/DFEW_Frame_Face/00002 16 0\n", "")
    out = tmp_path / "out"
    index_main(["--dataset-config", str(write_yaml(tmp_path)), "--overrides-json", f'{{"root": "{tmp_path}"}}',
                "--out", str(out / "index.parquet"), "--dropped", str(out / "dropped.csv")])
    log = capsys.readouterr().err
    assert "recounted dfew-00001: " in log and "lists 144 frames, the folder has 20" in log
    assert "recounted dfew-00002" not in log


def test_same_as_maps_renamed_classes_and_names_the_file_when_wrong(tmp_path):
    raw = {"name": "shift", "root": str(tmp_path), "classes": ["joy", "calm", "fear", "awe"],
           "folds": {"fold1": {"train": "a.txt", "test": "b.txt"}}}
    target = dataset_config_from_dict({**raw, "same_as": {"joy": "happiness", "calm": "neutral"}}, "shift.yaml")
    assert class_mapping(target, tuple(CLASSES), "shift.yaml") == {
        "joy": "happiness", "calm": "neutral", "fear": "fear", "awe": None}  # same name, then no counterpart
    with pytest.raises(StageError, match=r"shift.yaml: same_as names \['glee'\], which are not classes"):
        dataset_config_from_dict({**raw, "same_as": {"glee": "happiness"}}, "shift.yaml")
    with pytest.raises(StageError, match="shift.yaml: same_as must map class names to class names"):
        dataset_config_from_dict({**raw, "same_as": ["joy"]}, "shift.yaml")
    odd = dataset_config_from_dict({**raw, "same_as": {"joy": "elation"}}, "shift.yaml")
    with pytest.raises(StageError, match=r"shift.yaml: same_as maps to \['elation'\], which are not classes of the"):
        class_mapping(odd, tuple(CLASSES), "shift.yaml")
