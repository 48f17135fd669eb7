"""UAR / WAR against scikit-learn, and the evaluation CLI end to end on a trainer-like run."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score

from stages.common.errors import StageError
from stages.common.io import write_json, write_parquet
from stages.common.schemas import PREDICTIONS_SCHEMA
from stages.evaluate.__main__ import main as evaluate_main
from stages.evaluate.metrics import classification_metrics


@pytest.mark.parametrize("seed", range(5))
def test_uar_war_equal_scikit_learn_with_a_class_never_predicted(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 200)
    predictions = rng.integers(0, 6, 200)  # class 6 is never predicted
    got = classification_metrics(labels, predictions, 7)
    assert got["war"] == pytest.approx(accuracy_score(labels, predictions))
    assert got["uar"] == pytest.approx(balanced_accuracy_score(labels, predictions))
    assert got["uar"] == pytest.approx(recall_score(labels, predictions, average="macro", labels=range(7), zero_division=0))
    assert got["per_class_recall"][6] == 0.0
    assert got["confusion"] == confusion_matrix(labels, predictions, labels=range(7)).tolist()


def test_a_class_absent_from_the_labels_is_left_out_of_uar():
    got = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], 3)
    assert got["per_class_recall"] == [0.5, 1.0, None]
    assert got["uar"] == pytest.approx(0.75) and len(got["confusion"]) == 3


def run_folder(tmp_path, predictions):
    rows = [{"clip_id": f"c{i}", "label": label, "prediction": pred, "logits": [0.1, 0.2, 0.3],
             "modality_weights": []} for i, (label, pred) in enumerate(predictions)]
    write_parquet(pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA), tmp_path / "p.parquet")
    write_json(tmp_path / "run_info.json", {"dataset": "demo", "fold": "fold1", "model": "star-dagger",
                                            "class_names": ["a", "b", "c"], "selection": "best_on_test",
                                            "selected_epoch": 2, "epochs": 2, "label_hint": "none", "random_init": True,
                                            "weight_fingerprints": {"clip": "random-init:1"}})
    (tmp_path / "log.csv").write_text("epoch,train_loss,train_acc,test_uar,test_war,val_uar,val_war,lr,seconds\n"
                                      "1,1.0,0.3,0.3,0.3,,,0.001,1\n2,0.8,0.5,0.5,0.5,,,0.001,1\n")
    return ["fold", "--predictions", str(tmp_path / "p.parquet"), "--run-info", str(tmp_path / "run_info.json"),
            "--train-log", str(tmp_path / "log.csv"), "--out-metrics", str(tmp_path / "m.json"),
            "--out-confusion", str(tmp_path / "c.png"), "--out-curves", str(tmp_path / "t.png")]


def test_fold_cli_writes_metrics_and_plots(tmp_path):
    evaluate_main(run_folder(tmp_path, [(0, 0), (1, 1), (2, 0), (2, 2)]))
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["war"] == 0.75 and metrics["uar"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["selection"] == "best_on_test" and metrics["random_init"] is True and metrics["n"] == 4
    for png in ("c.png", "t.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predictions_out_of_range_name_the_file(tmp_path):
    with pytest.raises(StageError, match="p.parquet"):
        evaluate_main(run_folder(tmp_path, [(0, 0), (1, 5)]))
