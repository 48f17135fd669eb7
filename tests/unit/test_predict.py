"""stages.predict's pure parts: which inputs are clips, top classes, the JSON records and the CSV columns."""
from __future__ import annotations

import csv

import pytest

from stages.predict.cli import records, write_csv
from stages.predict.pipeline import Clip, expand_inputs, top_classes

NAMES = ["happiness", "sadness", "anger"]


def test_a_frame_folder_is_one_clip_and_a_folder_of_videos_stands_for_them(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "000001.jpg").write_bytes(b"x")
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.mp4", "a.avi", ".hidden.mp4", "notes.txt"):
        (videos / name).write_bytes(b"x")
    (videos / "c_frames").mkdir()
    missing = tmp_path / "missing.mp4"
    got = expand_inputs([str(frames), str(videos), str(missing)])
    assert got == [str(frames), str(videos / "a.avi"), str(videos / "b.mp4"), str(videos / "c_frames"), str(missing)]


def test_an_empty_folder_stays_a_clip_to_be_reported(tmp_path):
    assert expand_inputs([str(tmp_path)]) == [str(tmp_path)]


def test_top_classes_are_ordered_by_probability_ties_in_class_order():
    assert top_classes([0.2, 0.5, 0.2, 0.1], NAMES + ["fear"], 3) == [("sadness", 0.5), ("happiness", 0.2), ("anger", 0.2)]


def test_records_and_csv_carry_predictions_and_errors(tmp_path):
    clips = [Clip("a.mp4", "p0", probabilities=[0.1, 0.7, 0.2], caption="The brows lower."),
             Clip("b.mp4", "p1", error="b.mp4: no such file or folder.")]
    rows = records(clips, NAMES, 2)
    assert rows[0]["prediction"] == "sadness" and [t["class"] for t in rows[0]["top"]] == ["sadness", "anger"]
    assert rows[0]["probabilities"] == {"happiness": 0.1, "sadness": 0.7, "anger": 0.2}
    assert rows[0]["caption"] == "The brows lower." and rows[1] == {"source": "b.mp4", "error": clips[1].error}
    write_csv(tmp_path / "out.csv", rows, NAMES)
    with (tmp_path / "out.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["prediction"] == "sadness" and float(table[0]["sadness"]) == pytest.approx(0.7)
    assert table[1]["error"] == clips[1].error and table[1]["prediction"] == ""
