"""The closing message of a run names the targets it built, with what lies beside them."""
from __future__ import annotations

from stages.common.outputs import MAX_LISTED, final_outputs_message


def test_names_only_existing_targets_with_their_neighbours(tmp_path):
    model = tmp_path / "results/mine/fold1/dagger"
    model.mkdir(parents=True)
    (model / "metrics.json").write_text("{}")
    (model / "training_curves.png").write_bytes(b"png")
    fold = model.parent / "metrics.json"
    fold.write_text("{}")
    sheet = tmp_path / "results/mine/review/sheet.csv"
    sheet.parent.mkdir(parents=True)
    sheet.write_text("clip_id\n")
    message = final_outputs_message([str(model / "metrics.json"), str(fold), str(sheet), str(tmp_path / "absent.md")])
    lines = message.strip().splitlines()
    assert lines[0] == "Done. Main results:" and len(lines) == 4
    assert f"{model / 'metrics.json'}  (confusion.png and training_curves.png beside it)" in message
    assert f"{fold}  (confusion.png beside it; training_curves.png in the model's folder)" in message
    assert "absent.md" not in message and "config/review/<dataset>.csv" in message


def test_nothing_existing_means_no_message_and_long_lists_are_cut(tmp_path):
    assert final_outputs_message([str(tmp_path / "results/demo/fold1/metrics.json")]) == ""
    files = [tmp_path / f"{i:03d}.parquet" for i in range(MAX_LISTED + 3)]
    for path in files:
        path.write_bytes(b"")
    message = final_outputs_message(map(str, files))
    assert message.count(".parquet") == MAX_LISTED and message.endswith("... and 3 more")
