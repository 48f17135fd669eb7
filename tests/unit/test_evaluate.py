"""Evaluation stage: UAR/WAR against scikit-learn, the fold CLI round trip, summaries, tables and bad inputs."""
import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score

from stages.common.errors import StageError, run_cli
from stages.common.schemas import PREDICTIONS_SCHEMA
from stages.evaluate.__main__ import main as evaluate_main
from stages.evaluate.metrics import classification_metrics
from stages.evaluate.plots import plot_confusion

CLASSES = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
MAFW_CLASSES = CLASSES + ["contempt", "anxiety", "helplessness", "disappointment"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def random_run(seed, n=300, n_classes=7, absent=5, never_predicted=2):
    """Labels without class ``absent``; predictions without class ``never_predicted`` (but with ``absent``)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([c for c in range(n_classes) if c != absent], size=n)
    predictions = np.where(rng.random(n) < 0.5, labels, rng.integers(0, n_classes, n))
    predictions[predictions == never_predicted] = absent
    return labels, predictions


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed):
    labels, predictions = random_run(seed)
    assert 2 in labels and 2 not in predictions and 5 not in labels and 5 in predictions
    m = classification_metrics(labels, predictions, 7)
    present = sorted(set(labels.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred holds a class absent from y_true
        assert m["uar"] == pytest.approx(balanced_accuracy_score(labels, predictions))
    assert m["war"] == pytest.approx(accuracy_score(labels, predictions))
    recall = recall_score(labels, predictions, labels=present, average=None, zero_division=0)
    assert [m["per_class_recall"][c] for c in present] == pytest.approx(recall.tolist())
    # Convention: the absent class has no recall and is left out of the mean; the never-predicted class counts as 0.
    assert m["per_class_recall"][5] is None and m["per_class_recall"][2] == 0.0
    assert m["uar"] == pytest.approx(np.mean(recall))
    assert m["confusion"] == confusion_matrix(labels, predictions, labels=range(7)).tolist()
    assert len(m["confusion"]) == 7 and all(len(row) == 7 for row in m["confusion"])
    assert m["n"] == len(labels) and sum(map(sum, m["confusion"])) == len(labels)


def test_metrics_keep_classes_nobody_uses():
    m = classification_metrics([0, 0, 1], [0, 1, 1], 4)
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m["per_class_recall"] == [0.5, 1.0, None, None]
    assert m["uar"] == 0.75 and m["war"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("labels, predictions", [([], []), ([0, 7], [0, 1]), ([0, 1], [0, -1]), ([0], [0, 1])])
def test_metrics_reject_bad_input(labels, predictions):
    with pytest.raises(ValueError):
        classification_metrics(labels, predictions, 7)


# ------------------------------------------------------------------------------------------- fold CLI


def write_run(tmp_path, labels, predictions, n_logits=7, **info):
    rows = [{"clip_id": f"demo-{i:03d}", "label": int(l), "prediction": int(p),
             "logits": [float(c == p) for c in range(n_logits)], "modality_weights": [0.5, 0.5]}
            for i, (l, p) in enumerate(zip(labels, predictions))]
    pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA), tmp_path / "predictions.parquet")
    run_info = {"dataset": "demo", "fold": "fold1", "model": "star-dagger", "class_names": CLASSES,
                "selection": "best_on_test", "selected_epoch": 3, "epochs": 4, "label_hint": "none",
                "random_init": True, "weight_fingerprints": {"clip": "0123abcd"}, "seed": 1, "lr": 0.01, **info}
    (tmp_path / "run_info.json").write_text(json.dumps(run_info))
    (tmp_path / "train_log.csv").write_text(
        "epoch,train_loss,train_acc,test_uar,test_war,val_uar,val_war,lr,seconds\n"
        + "".join(f"{e},{2 / e},{0.2 * e},{0.15 * e},{0.18 * e},,,0.01,1.5\n" for e in range(1, 5)))
    return tmp_path


def fold_args(run, out):
    return ["fold", "--predictions", str(run / "predictions.parquet"), "--run-info", str(run / "run_info.json"),
            "--train-log", str(run / "train_log.csv"), "--out-metrics", str(out / "metrics.json"),
            "--out-confusion", str(out / "confusion.png"), "--out-curves", str(out / "training_curves.png")]


def test_fold_round_trip(tmp_path):
    labels, predictions = random_run(0, n=120)
    run = write_run(tmp_path, labels, predictions)
    out = tmp_path / "out"
    evaluate_main(fold_args(run, out))

    metrics = json.loads((out / "metrics.json").read_text())
    expected = classification_metrics(labels, predictions, 7)
    assert metrics["uar"] == pytest.approx(expected["uar"]) and metrics["war"] == pytest.approx(expected["war"])
    assert metrics["per_class_recall"] == dict(zip(CLASSES, expected["per_class_recall"]))
    assert metrics["per_class_recall"]["disgust"] is None
    assert metrics["confusion"] == expected["confusion"] and metrics["n"] == 120
    assert metrics["chance_uar"] == pytest.approx(1 / 6)  # six classes occur in the labels
    for key, value in {"dataset": "demo", "fold": "fold1", "model": "star-dagger", "class_names": CLASSES,
                       "selection": "best_on_test", "selected_epoch": 3, "label_hint": "none", "random_init": True,
                       "weight_fingerprints": {"clip": "0123abcd"}, "seed": 1, "lr": 0.01}.items():
        assert metrics[key] == value
    for name in ("confusion.png", "training_curves.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not list(out.glob(".*.tmp"))

    again = tmp_path / "again"
    evaluate_main(fold_args(run, again))
    for name in ("metrics.json", "confusion.png", "training_curves.png"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), f"{name} is not deterministic"


def test_confusion_plot_eleven_classes(tmp_path):
    labels, predictions = random_run(1, n_classes=11, absent=10, never_predicted=3)
    confusion = classification_metrics(labels, predictions, 11)["confusion"]
    plot_confusion(confusion, MAFW_CLASSES, tmp_path / "c.png", "mafw")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        plot_confusion(confusion, CLASSES, tmp_path / "bad.png", "wrong class list")


@pytest.mark.parametrize("labels, predictions, n_logits, message", [
    ([0, 7, 1], [0, 1, 1], 7, "label outside 0..6"),
    ([0, 1, 1], [0, 1, 9], 7, "prediction outside 0..6"),
    ([0, 1, 1], [0, 1, 1], 11, "logits length differs"),
    ([], [], 7, "no predictions"),
])
def test_fold_rejects_bad_predictions(tmp_path, labels, predictions, n_logits, message):
    run = write_run(tmp_path, labels, predictions, n_logits=n_logits)
    with pytest.raises(StageError, match=message) as err:
        evaluate_main(fold_args(run, tmp_path / "out"))
    assert str(run / "predictions.parquet") in str(err.value)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_fold_rejects_bad_run_info_and_log(tmp_path, capsys):
    run = write_run(tmp_path, [0, 1], [0, 1])
    (run / "train_log.csv").write_text("epoch,lr\n1,0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(evaluate_main, fold_args(run, tmp_path / "out"))
    assert exit_info.value.code == 2 and "train_log.csv: missing columns ['train_loss']" in capsys.readouterr().err

    (run / "run_info.json").write_text(json.dumps({"dataset": "demo", "fold": "fold1", "model": "x"}))
    with pytest.raises(StageError, match=r"run_info.json: missing keys \['class_names'\]"):
        evaluate_main(fold_args(run, tmp_path / "out"))


# ------------------------------------------------------------------------------------- summary, table


def fake_metrics(tmp_path, model, dataset, uars, wars, **extra):
    paths = []
    for i, (uar, war) in enumerate(zip(uars, wars), start=1):
        path = tmp_path / f"{dataset}-{model}-fold{i}.json"
        path.write_text(json.dumps({"dataset": dataset, "fold": f"fold{i}", "model": model, "uar": uar, "war": war,
                                    "n": 100, "selection": "best_on_test", "selected_epoch": 10,
                                    "label_hint": "none", "random_init": False, **extra}))
        paths.append(str(path))
    return paths


def test_summary_mean_std(tmp_path):
    uars, wars = [0.61, 0.64, 0.595], [0.72, 0.755, 0.70]
    paths = fake_metrics(tmp_path, "star-dagger", "dfew", uars, wars)
    paths += fake_metrics(tmp_path, "dfer-clip", "dfew", [0.59], [0.71])
    evaluate_main(["summary", "--metrics", *reversed(paths), "--out-json", str(tmp_path / "s.json"),
                   "--out-md", str(tmp_path / "s.md")])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [g["model"] for g in summary["groups"]] == ["dfer-clip", "star-dagger"]  # first-seen order
    groups = {g["model"]: g for g in summary["groups"]}
    star = groups["star-dagger"]
    assert [f["fold"] for f in star["folds"]] == ["fold1", "fold2", "fold3"]
    assert star["uar_pct_mean"] == pytest.approx(np.mean(uars) * 100)
    assert star["uar_pct_std"] == pytest.approx(np.std(uars, ddof=1) * 100)
    assert star["war_pct_mean"] == pytest.approx(np.mean(wars) * 100)
    assert star["war_pct_std"] == pytest.approx(np.std(wars, ddof=1) * 100)
    assert groups["dfer-clip"]["uar_pct_std"] == 0.0 and groups["dfer-clip"]["uar_pct_mean"] == pytest.approx(59)
    assert summary["warnings"] == []
    md = (tmp_path / "s.md").read_text()
    assert f"**{np.mean(uars) * 100:.2f} ± {np.std(uars, ddof=1) * 100:.2f}**" in md
    assert "| dfew | star-dagger | fold2 | best_on_test | 10 | 100 | 64.00 | 75.50 |" in md
    assert "Warning" not in md


def test_summary_warnings(tmp_path):
    paths = fake_metrics(tmp_path, "star", "demo", [0.3], [0.4], random_init=True)
    paths += fake_metrics(tmp_path, "dagger", "demo", [0.3], [0.4], label_hint="paper")
    evaluate_main(["summary", "--metrics", *paths, "--out-json", str(tmp_path / "s.json"),
                   "--out-md", str(tmp_path / "s.md")])
    md = (tmp_path / "s.md").read_text()
    assert "random-initialised towers: not comparable to published numbers (star demo/fold1)" in md
    assert 'captions saw the labels (label_hint "paper": dagger demo/fold1)' in md


def test_summary_rejects_duplicate_fold(tmp_path):
    path = fake_metrics(tmp_path, "star", "demo", [0.3], [0.4])[0]
    with pytest.raises(StageError, match="pass each fold once"):
        evaluate_main(["summary", "--metrics", path, path, "--out-json", str(tmp_path / "s.json"),
                       "--out-md", str(tmp_path / "s.md")])


def test_table_with_paper_numbers(tmp_path):
    paths = fake_metrics(tmp_path, "star-dagger", "dfew", [0.6, 0.62], [0.7, 0.72])
    paths += fake_metrics(tmp_path, "dfer-clip", "ferv39k", [0.41], [0.51])
    paths += fake_metrics(tmp_path, "star-dagger", "demo", [0.5], [0.5])
    evaluate_main(["table", "--metrics", *paths, "--out-md", str(tmp_path / "t.md")])
    lines = (tmp_path / "t.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert rows[1:] == [
        "| dfew | star-dagger | 2 of 5 | best_on_test | 61.00 ± 1.41 | 71.00 ± 1.41 | 65.98 / 76.21 |",
        "| ferv39k | dfer-clip | 1 | best_on_test | 41.00 ± 0.00 | 51.00 ± 0.00 | 41.27 / 51.65 |",
        "| demo | star-dagger | 1 | best_on_test | 50.00 ± 0.00 | 50.00 ± 0.00 | – |",
    ]
