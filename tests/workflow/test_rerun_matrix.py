"""Rerun precision: after each edit of the finished demo, a dry run plans exactly the rules that read what changed.

One row per edit a user makes; each row edits a private copy of the finished demo (results and Snakemake's records
included), optionally after a real run that sets the row up (e.g. a human review sheet, local weights), and asserts
the exact set of rules (with job counts) a dry run plans.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.workflow.conftest import planned_jobs, snakemake

TRAIN_ON = {"train": 1, "evaluate": 1, "fold_metrics": 1}
REFINE_ON = {"refine": 1, "review_sheet": 1, "apply_review": 1, **TRAIN_ON}
CAPTIONS_ON = {"captions": 2, **REFINE_ON}
FACES_ON = {"faces": 2, "features": 2, **CAPTIONS_ON}
FRAMES_ON = {"frames": 2, **FACES_ON}
NOTHING: dict[str, int] = {}
BASE_METRICS = "results/demo/fold1/base/metrics.json"
TINY_WEIGHTS = "weights/tiny-clip.pt"


def replace_text(path: str, old: str, new: str) -> Callable[[Path], None]:
    def change(run: Path) -> None:
        file = run / path
        text = file.read_text(encoding="utf-8")
        assert old in text, f"{path} no longer contains {old!r}: update this row"
        file.write_text(text.replace(old, new, 1), encoding="utf-8")

    return change


def append_text(path: str, extra: str) -> Callable[[Path], None]:
    def change(run: Path) -> None:
        file = run / path
        file.write_text(file.read_text(encoding="utf-8") + extra, encoding="utf-8")

    return change


def set_yaml(path: str, keys: str, value) -> Callable[[Path], None]:
    """Set a dotted key of a YAML file (anchors are expanded, comments dropped: neither is what is tested)."""
    def change(run: Path) -> None:
        file = run / path
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        *parents, last = keys.split(".")
        node = data
        for key in parents:
            node = node[key]
        assert last in node, f"{path} has no {keys}: update this row"
        node[last] = value
        file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    return change


def reordered(mapping):
    if isinstance(mapping, dict):
        return {key: reordered(mapping[key]) for key in reversed(list(mapping))}
    return mapping


def reorder_config_keys(run: Path) -> None:
    for path in ("config/config.yaml", "tests/config/test.yaml"):
        file = run / path
        file.write_text(yaml.safe_dump(reordered(yaml.safe_load(file.read_text())), sort_keys=False))


def save_unchanged(path: str) -> Callable[[Path], None]:
    def change(run: Path) -> None:
        file = run / path
        stat = file.stat()
        file.write_bytes(file.read_bytes())
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    return change


def with_human_review_sheet(run: Path) -> None:
    """The human copy of the generated sheet, picked up by one real run."""
    (run / "config/review/demo.csv").write_bytes((run / "results/demo/review/sheet.csv").read_bytes())
    snakemake(run)


def write_tiny_tower(run: Path, seed: int) -> None:
    """open_clip weights of the test overlay's tiny CLIP tower (random values from ``seed``)."""
    import torch

    from stages.train.models.towers import CLIP, TowerConfig, model_config

    overlay = yaml.safe_load((run / "tests/config/test.yaml").read_text())
    tower = TowerConfig.from_dict({"arch": "tiny-32", "arch_config": overlay["datasets"]["demo"]["train"]["towers"]
                                   ["clip"]["arch_config"]})
    torch.manual_seed(seed)
    path = run / TINY_WEIGHTS
    path.parent.mkdir(exist_ok=True)
    torch.save(CLIP(**model_config(tower), quick_gelu=tower.quick_gelu).state_dict(), path)


def with_local_weights(run: Path) -> None:
    """The demo's CLIP tower loaded from a local weights file (as real towers are), trained once."""
    write_tiny_tower(run, seed=1)
    overlay_path = run / "tests/config/test.yaml"
    overlay = yaml.safe_load(overlay_path.read_text())
    clip = overlay["datasets"]["demo"]["train"]["towers"]["clip"]
    clip["random_init"] = False  # overrides config.yaml's demo tower, which is random
    clip["weights"] = TINY_WEIGHTS
    overlay_path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    snakemake(run)


def with_pretrained_towers(run: Path) -> None:
    """The demo's towers loaded from the file that rule pretrain_demo_towers writes, trained once."""
    overlay_path = run / "tests/config/test.yaml"
    overlay = yaml.safe_load(overlay_path.read_text())
    for tower in overlay["datasets"]["demo"]["train"]["towers"].values():
        tower.update(random_init=False, weights="results/demo/pretrained/clip.pt")
    overlay_path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    snakemake(run)


def replace_weights(run: Path) -> None:
    size = (run / TINY_WEIGHTS).stat().st_size
    write_tiny_tower(run, seed=2)
    assert (run / TINY_WEIGHTS).stat().st_size == size  # same size, new content


def with_base_model(run: Path) -> None:
    snakemake(run, BASE_METRICS)


def all_caption_edits(run: Path) -> None:
    replace_text("config/prompts/landmark_motion.yaml", "the eyebrows lift", "the eyebrows go up")(run)
    append_text("config/lexicons/emotion_words.txt", "\nwistful\n")(run)


@dataclass(frozen=True)
class Edit:
    name: str
    change: Callable[[Path], None]
    planned: dict[str, int]
    prepare: Callable[[Path], None] | None = None
    target: tuple[str, ...] = ()


EDITS = [
    Edit("prompt wording", replace_text("config/prompts/landmark_motion.yaml", "the eyebrows lift", "the eyebrows go up"),
         CAPTIONS_ON),
    Edit("prompt comment", append_text("config/prompts/landmark_motion.yaml", "\n# a note for translators\n"), NOTHING),
    Edit("prompt saved unchanged", save_unchanged("config/prompts/landmark_motion.yaml"), NOTHING),
    Edit("lexicon word", append_text("config/lexicons/emotion_words.txt", "\nwistful\n"), REFINE_ON),
    Edit("review decision", replace_text("config/review/demo.csv", '"pending"', '"approved"'),
         {"apply_review": 1, **TRAIN_ON}, prepare=with_human_review_sheet),
    Edit("config key reorder", reorder_config_keys, NOTHING),
    Edit("epochs", set_yaml("tests/config/test.yaml", "datasets.demo.train.epochs", 2), TRAIN_ON),
    Edit("num_workers", set_yaml("tests/config/test.yaml", "datasets.demo.train.num_workers", 1), NOTHING),
    Edit("frames setting", set_yaml("config/config.yaml", "frames.jpeg_quality", 80), FRAMES_ON),
    Edit("faces setting", set_yaml("config/config.yaml", "faces.upsample", 2), FACES_ON),
    Edit("unused-backend setting", set_yaml("config/config.yaml", "captions.video_llava.batch_size", 8), NOTHING),
    Edit("docstring in a stage", replace_text("stages/frames/stage.py", '"""Frames stage:', '"""The frames stage:'),
         NOTHING),
    Edit("code change in a stage", append_text("stages/refine/__main__.py", "\nREPORT_EXAMPLES = 5\n"), REFINE_ON),
    Edit("comment in schemas.py", append_text("stages/common/schemas.py", "\n# every schema is checked on read\n"),
         NOTHING),
    Edit("comment in a dataset YAML", append_text("config/datasets/demo.yaml", "\n# synthetic clips\n"), NOTHING),
    Edit("shard count", replace_text("config/datasets/demo.yaml", "shards: 2", "shards: 3"),
         {"frames": 3, "faces": 3, "captions": 3, "features": 3, **REFINE_ON}),
    Edit("weight file replaced", replace_weights, TRAIN_ON, prepare=with_local_weights),
    Edit("weight file touched", save_unchanged(TINY_WEIGHTS), NOTHING, prepare=with_local_weights),
    Edit("pre-training setting", set_yaml("tests/config/test.yaml", "pretrain.steps", 3),
         {"pretrain_demo_towers": 1, **TRAIN_ON}, prepare=with_pretrained_towers),
    Edit("code change in the pre-training stage", append_text("stages/pretrain/corpus.py", "\nMAX_SAMPLES = 10**6\n"),
         {"pretrain_demo_towers": 1, **TRAIN_ON}, prepare=with_pretrained_towers),
    Edit("code change in the training loader, pre-trained towers",
         append_text("stages/train/data.py", "\nMAX_CLIPS = 10**6\n"), TRAIN_ON, prepare=with_pretrained_towers),
    Edit("pre-training setting, random towers", set_yaml("tests/config/test.yaml", "pretrain.steps", 3), NOTHING),
    Edit("caption edits, model without captions", all_caption_edits, NOTHING, prepare=with_base_model,
         target=(BASE_METRICS,)),
]


@pytest.mark.parametrize("edit", EDITS, ids=[edit.name for edit in EDITS])
def test_a_dry_run_plans_exactly_the_stale_rules(edited_run, edit):
    if edit.prepare:
        edit.prepare(edited_run)
        assert planned_jobs(edited_run, *edit.target) == {}, "the row's starting point is not up to date"
    edit.change(edited_run)
    assert planned_jobs(edited_run, *edit.target) == edit.planned


def test_the_plan_names_the_changed_setting(edited_run):
    set_yaml("tests/config/test.yaml", "datasets.demo.train.epochs", 2)(edited_run)
    set_yaml("config/config.yaml", "train.threads", 1)(edited_run)
    proc = subprocess.run([sys.executable, "-m", "stages.plan", "--configfile", "tests/config/test.yaml"],
                          cwd=edited_run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "train (ds=demo, fold=fold1, model=star-dagger): Params have changed since last execution",
        "    train.epochs: 1 -> 2",
        "    train.threads: 2 -> 1",
        "evaluate (ds=demo, fold=fold1, model=star-dagger): Input files updated by another job",
        "fold_metrics (ds=demo, fold=fold1): Input files updated by another job",
    ]


def test_shard_files_of_the_old_count_are_removed_and_named(edited_run):
    replace_text("config/datasets/demo.yaml", "shards: 2", "shards: 3")(edited_run)
    out = snakemake(edited_run)
    names = {folder: sorted(p.name for p in (edited_run / "results/demo" / folder).glob("*.parquet"))
             for folder in ("frames", "faces", "captions/raw", "features")}
    assert all(found == ["000-of-003.parquet", "001-of-003.parquet", "002-of-003.parquet"] for found in names.values())
    assert "Removed 8 shard files of an earlier shard count" in out.stdout + out.stderr
    assert "results/demo/frames/000-of-002.parquet" in out.stdout + out.stderr
