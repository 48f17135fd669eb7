"""Trainer: outputs, resume after an interruption equals an uninterrupted run, checks on inputs, zero-shot."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from stages.common.errors import StageError
from stages.evaluate.__main__ import evaluate_fold
from stages.train.config import TrainConfig
from stages.train.trainer import fit, zero_shot_predict
from tests.unit.synthetic_features import clip_row, write_captions, write_rows
from tests.unit.test_models import TINY


def image_for(label):
    def image(frame_number):
        rgb = np.zeros((48, 48, 3), np.uint8)
        rgb[..., label] = 120 + 10 * (frame_number % 5)
        return rgb

    return image


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    rows = []
    for i in range(12):
        label = i % 3
        split = "test" if i >= 9 else "train"
        rows.append(clip_row(f"demo-{i:02d}", 20 + i, [("fold1", split)], label=label, image=image_for(label)))
    for row in rows:
        row["class_name"] = ["happiness", "sadness", "neutral"][row["label"]]
    return [write_rows(folder / "000-of-001.parquet", rows)]


@pytest.fixture(scope="module")
def captions(features, tmp_path_factory):
    return write_captions(tmp_path_factory.mktemp("captions") / "approved.parquet", [f"demo-{i:02d}" for i in range(12)])


def config(**overrides) -> TrainConfig:
    tiny = {"arch": "tiny", "arch_config": TINY, "random_init": True}
    raw = {"model": "star-dagger", "epochs": 2, "batch_size": 4, "optimizer": "adamw", "lr": 1e-3, "num_workers": 0,
           "data": {"image_size": 32}, "towers": {"clip": tiny, "long_clip": {**tiny, "context_length": 248},
                                                   "dfer_clip": tiny}}
    return TrainConfig.from_dict({**raw, **overrides})


def trained_tensors(out_dir):
    return torch.load(out_dir / "model.pt", weights_only=True)["trainable"]


def test_fit_writes_outputs_and_records_the_run(features, captions, tmp_path):
    fit(features, "fold1", config(), tmp_path, "demo", captions=captions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "predictions.parquet", "run_info.json",
                                                          "train_log.csv"]  # a finished run keeps no checkpoints
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["random_init"] is True and info["selection"] == "best_on_test" and info["label_hint"] == "none"
    assert set(info["weight_fingerprints"]) == {"clip", "long_clip", "trained"}
    predictions = pq.read_table(tmp_path / "predictions.parquet")
    assert predictions.num_rows == 3 and len(predictions["logits"][0]) == 3


def test_resume_after_interruption_equals_an_uninterrupted_run(features, captions, tmp_path, capsys):
    fit(features, "fold1", config(), tmp_path / "whole", "demo", captions=captions)
    cut = fit(features, "fold1", config(), tmp_path / "cut", "demo", stop_after_epoch=1, captions=captions)
    assert cut == {"stopped_after_epoch": 1} and not (tmp_path / "cut" / "model.pt").exists()
    capsys.readouterr()
    fit(features, "fold1", config(), tmp_path / "cut", "demo", captions=captions)
    assert f"resuming {tmp_path / 'cut'} after epoch 1 of 2" in capsys.readouterr().err
    whole, resumed = trained_tensors(tmp_path / "whole"), trained_tensors(tmp_path / "cut")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # drop the timing column
    assert strip((tmp_path / "whole/train_log.csv").read_text()) == strip((tmp_path / "cut/train_log.csv").read_text())


def test_checkpoints_hold_only_tensors_and_plain_values(features, captions, tmp_path):
    fit(features, "fold1", config(), tmp_path, "demo", stop_after_epoch=1, captions=captions)
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "checkpoints" / name, weights_only=True)  # no object unpickled
        assert state["epoch"] in (0, 1) and all(isinstance(t, torch.Tensor) for t in state["trainable"].values())
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["state"]


class Marker:
    """Unpickling this would create a file: the trainer must never do it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_checkpoint_holding_objects_is_not_unpickled(features, captions, tmp_path, capsys):
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)
    torch.save({"fingerprint": Marker(tmp_path / "ran")}, tmp_path / "out" / "checkpoints" / "last.pt")
    fit(features, "fold1", config(model="dagger", objective="contrastive", epochs=1), tmp_path / "out", "demo",
        captions=captions)
    assert not (tmp_path / "ran").exists()
    assert "last.pt: not a checkpoint written by this trainer" in capsys.readouterr().err
    torch.save({"trainable": Marker(tmp_path / "ran")}, tmp_path / "out" / "model.pt")
    with pytest.raises(StageError, match="model.pt: not a checkpoint written by this trainer.*Rerun its train rule"):
        zero_shot_predict(tmp_path / "out", features, "fold1", tmp_path / "zs", "demo")
    assert not (tmp_path / "ran").exists()


def test_a_model_file_that_does_not_fit_its_run_is_refused(features, captions, tmp_path):
    fit(features, "fold1", config(model="dagger", objective="contrastive", epochs=1), tmp_path / "out", "demo",
        captions=captions)
    zero_shot_predict(tmp_path / "out", features, "fold1", tmp_path / "zs", "demo")  # fits: loads
    state = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    dropped = sorted(state["trainable"])[0]
    del state["trainable"][dropped]
    torch.save(state, tmp_path / "out" / "model.pt")
    with pytest.raises(StageError, match=f"does not fit the model.*missing trained weights: .'{dropped}'"):
        zero_shot_predict(tmp_path / "out", features, "fold1", tmp_path / "zs", "demo")


def test_dfer_clip_baseline_trains_with_its_own_recipe_and_records_it(features, tmp_path):
    recipe = {"epochs": 2, "optimizer": "sgd", "weight_decay": 1e-4, "schedule": "multistep", "milestones": [1]}
    fit(features, "fold1", config(model="dfer-clip", recipes={"dfer-clip": recipe}), tmp_path, "demo",
        descriptors_path="config/prompts/dfer_clip_descriptors.yaml")
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["model"] == "dfer-clip" and info["trainable_parameters"] > 0
    with (tmp_path / "train_log.csv").open() as handle:
        rates = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert rates == pytest.approx([1e-5, 1e-6])  # the image encoder's rate, x0.1 from the milestone on
    evaluate_fold(str(tmp_path / "predictions.parquet"), str(tmp_path / "run_info.json"), str(tmp_path / "train_log.csv"),
                  str(tmp_path / "metrics.json"), str(tmp_path / "confusion.png"), str(tmp_path / "curves.png"))
    recorded = json.loads((tmp_path / "metrics.json").read_text())["recipe"]
    assert recorded == {"source": "dfer-clip", "epochs": 2, "batch_size": 4, "grad_accum": 1, "optimizer": "sgd",
                        "momentum": 0.9, "weight_decay": 1e-4, "schedule": "multistep", "milestones": [1], "gamma": 0.1,
                        "learning_rates": {"image_encoder": 1e-5, "temporal_net": 1e-2, "prompt_learner": 1e-3},
                        "input_normalization": "none"}


def test_a_variant_whose_inputs_are_missing_stops_clearly(features, tmp_path):
    with pytest.raises(StageError, match="needs fine-grained captions: pass --captions"):
        fit(features, "fold1", config(model="dagger"), tmp_path / "out", "demo")
    others = write_captions(tmp_path / "approved.parquet", ["not-a-demo-clip"])
    with pytest.raises(StageError, match="needs fine-grained captions, but .*approved.parquet has no approved caption"):
        fit(features, "fold1", config(model="dagger"), tmp_path / "out", "demo", captions=others)


def test_contrastive_training_then_zero_shot_on_another_split(features, captions, tmp_path):
    fit(features, "fold1", config(model="dagger", objective="contrastive", epochs=1), tmp_path / "src", "demo",
        captions=captions)
    mapping = {"happiness": "happiness", "sadness": None, "neutral": "neutral"}
    zero_shot_predict(tmp_path / "src", features, "fold1", tmp_path / "zs", "demo", mapping)
    info = json.loads((tmp_path / "zs" / "run_info.json").read_text())
    assert info["zero_shot_source"] == "demo" and info["class_names"] == ["happiness", "sadness", "neutral"]
    assert info["class_mapping"] == mapping
    assert pq.read_table(tmp_path / "zs" / "predictions.parquet").num_rows == 3
    for wrong, named in (({"joy": "happiness"}, r"\['joy'\] unknown target"),
                         ({"neutral": "calm"}, r"\['calm'\] unknown source")):
        with pytest.raises(StageError, match=named):
            zero_shot_predict(tmp_path / "src", features, "fold1", tmp_path / "zs2", "demo", wrong)


def test_two_processes_under_torchrun_train_and_rank_zero_writes(features, tmp_path):
    """torchrun on CPU (gloo): the same code path a multi-GPU job takes."""
    cfg = {"model": "base", "epochs": 1, "batch_size": 2, "optimizer": "adamw", "lr": 1e-3, "num_workers": 0, "threads": 1,
           "data": {"image_size": 32}, "towers": {"clip": {"arch": "tiny", "arch_config": TINY, "random_init": True}}}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "stages.train",
         "fit", "--features", *features, "--fold", "fold1", "--dataset", "demo", "--config-json", json.dumps(cfg),
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained base on demo/fold1") == 1  # only rank 0 reports and writes
    assert json.loads((tmp_path / "run_info.json").read_text())["selected_epoch"] == 1


def test_best_on_val_holds_out_train_clips_and_accumulates_gradients(features, tmp_path):
    fit(features, "fold1", config(model="base", selection="best_on_val", val_fraction=0.3, grad_accum=2), tmp_path, "demo")
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["selection"] == "best_on_val" and 1 <= info["selected_epoch"] <= 2
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert all(row.split(",")[5] != "" for row in log[1:])  # val_uar logged every epoch


def test_a_checkpoint_of_other_features_is_not_resumed(features, captions, tmp_path, capsys):
    fit(features, "fold1", config(), tmp_path, "demo", stop_after_epoch=1, captions=captions)
    stat = os.stat(features[0])
    os.utime(features[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the cache was regenerated since
    fit(features, "fold1", config(), tmp_path, "demo", captions=captions)
    err = capsys.readouterr().err
    assert "written for another configuration, features cache or training code; starting afresh" in err and "resuming" not in err


def test_a_finished_run_forced_again_trains_afresh(features, captions, tmp_path, capsys):
    fit(features, "fold1", config(epochs=1), tmp_path, "demo", captions=captions)
    first = (tmp_path / "train_log.csv").read_text()
    capsys.readouterr()
    fit(features, "fold1", config(epochs=1), tmp_path, "demo", captions=captions)  # snakemake -R train
    assert "resuming" not in capsys.readouterr().err
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # drop the timing column
    assert strip((tmp_path / "train_log.csv").read_text()) == strip(first)


def fit_in_subprocess(features, captions, out_dir, omp_threads: int) -> dict:
    """A training run as Snakemake starts it: OMP_NUM_THREADS set to the cores the job was granted."""
    cfg = {"model": "dagger", "epochs": 1, "batch_size": 4, "optimizer": "adamw", "lr": 1e-3, "num_workers": 0,
           "threads": 2, "data": {"image_size": 32}, "towers": config().towers}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train", "fit", "--features", *features, "--captions", captions, "--fold",
         "fold1", "--dataset", "demo", "--config-json", json.dumps(cfg), "--out-dir", str(out_dir)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": str(omp_threads)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out_dir / "run_info.json").read_text())


def test_results_do_not_depend_on_the_cores_snakemake_grants(features, captions, tmp_path):
    one = fit_in_subprocess(features, captions, tmp_path / "j1", omp_threads=1)
    two = fit_in_subprocess(features, captions, tmp_path / "j2", omp_threads=2)
    assert one["threads"] == two["threads"] == 2  # from the config, recorded
    assert one["weight_fingerprints"]["trained"] == two["weight_fingerprints"]["trained"]
