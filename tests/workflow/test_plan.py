"""The demo runs end to end, and dry runs rerun exactly the stale stages after an edit."""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import yaml

from stages.common.schemas import APPROVED_SCHEMA, FACES_SCHEMA
from tests.workflow.conftest import planned_jobs, snakemake

# The per-dataset chain of rules with their job counts on the tiny demo (2 shards).
CHAIN = [("demo_clips", 1), ("index", 1), ("frames", 2), ("faces", 2), ("captions", 2), ("refine", 1),
         ("review_sheet", 1), ("apply_review", 1), ("features", 2), ("train", 1), ("evaluate", 1), ("fold_metrics", 1)]


def from_rule(first: str, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """``first`` and every rule after it in the chain (minus ``skip``)."""
    names = [name for name, _ in CHAIN]
    return {name: count for name, count in CHAIN[names.index(first):] if name not in skip}


def reordered(mapping):
    """Same content, keys in reverse order at every level."""
    if isinstance(mapping, dict):
        return {key: reordered(mapping[key]) for key in reversed(list(mapping))}
    return mapping


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(change(data), sort_keys=False))


def set_key(section, key, value):
    def change(cfg):
        cfg[section][key] = value
        return cfg

    return change


def test_demo_reaches_metrics_and_a_second_run_does_nothing(demo_run):
    shards = sorted((demo_run / "results/demo/faces").glob("*.parquet"))
    assert [p.name for p in shards] == ["000-of-002.parquet", "001-of-002.parquet"]
    faces = pq.read_table(shards[0]).cast(FACES_SCHEMA).to_pylist()
    statuses = [s for clip in faces for s in clip["face_status"]]
    assert faces and statuses.count("detected") / len(statuses) > 0.9
    approved = pq.read_table(demo_run / "results/demo/captions/approved.parquet").cast(APPROVED_SCHEMA)
    assert approved.num_rows == 14 and set(approved["decision"].to_pylist()) == {"auto_approved"}
    assert all("brow" in c or "lip" in c or "eye" in c or "mouth" in c or "jaw" in c or "head" in c or "face" in c
               for c in approved["caption"].to_pylist())
    metrics = json.loads((demo_run / "results/demo/fold1/metrics.json").read_text())
    assert metrics["model"] == "star-dagger" and metrics["random_init"] is True and metrics["n"] == 7
    assert 0 <= metrics["uar"] <= 1 and len(metrics["confusion"]) == 7
    assert (demo_run / "results/demo/fold1/confusion.png").stat().st_size > 1000
    assert planned_jobs(demo_run) == {}


def test_reordering_config_keys_reruns_nothing(edited_run):
    edit_yaml(edited_run / "config/config.yaml", reordered)
    edit_yaml(edited_run / "tests/config/test.yaml", reordered)
    assert planned_jobs(edited_run) == {}


def test_changing_frames_settings_reruns_frames_and_what_follows(edited_run):
    edit_yaml(edited_run / "config/config.yaml", set_key("frames", "jpeg_quality", 80))
    assert planned_jobs(edited_run) == from_rule("frames")


def test_changing_faces_settings_reruns_faces_and_what_follows(edited_run):
    edit_yaml(edited_run / "config/config.yaml", set_key("faces", "upsample", 2))
    assert planned_jobs(edited_run) == from_rule("faces")


def test_editing_stage_code_reruns_that_stage_and_downstream(edited_run):
    frames_code = edited_run / "stages/frames/sampling.py"
    frames_code.write_text(frames_code.read_text() + "\n# a comment is a code change too\n")
    assert planned_jobs(edited_run) == from_rule("frames")


def test_editing_the_caption_prompt_reruns_captions_not_frames_or_faces(edited_run):
    prompt = edited_run / "config/prompts/landmark_motion.yaml"
    prompt.write_text(prompt.read_text().replace("the eyebrows lift", "the eyebrows go up"))
    assert planned_jobs(edited_run) == from_rule("captions")


def test_saving_an_unchanged_prompt_reruns_nothing(edited_run):
    prompt = edited_run / "config/prompts/landmark_motion.yaml"
    prompt.write_text(prompt.read_text())
    assert planned_jobs(edited_run) == {}


def test_editing_a_lexicon_reruns_refinement_and_downstream_only(edited_run):
    lexicon = edited_run / "config/lexicons/emotion_words.txt"
    lexicon.write_text(lexicon.read_text() + "\nwistful\n")
    assert planned_jobs(edited_run) == from_rule("refine")


def test_editing_the_review_sheet_reruns_only_apply_review_and_downstream(edited_run):
    sheet = edited_run / "config/review/demo.csv"
    shutil.copy(edited_run / "results/demo/review/sheet.csv", sheet)
    snakemake(edited_run)  # the new human sheet is picked up once
    assert planned_jobs(edited_run) == {}
    sheet.write_text(sheet.read_text(encoding="utf-8-sig").replace('"pending"', '"approved"', 1), encoding="utf-8")
    assert planned_jobs(edited_run) == from_rule("apply_review")


def test_zero_shot_transfer_runs_on_the_demo(edited_run):
    snakemake(edited_run, "results/zeroshot/demo_to_demo/metrics.json")
    metrics = json.loads((edited_run / "results/zeroshot/demo_to_demo/metrics.json").read_text())
    assert metrics["zero_shot_source"] == "demo" and metrics["objective"] == "contrastive"


def test_required_review_stops_with_next_step_then_continues_after_review(edited_run):
    edit_yaml(edited_run / "tests/config/test.yaml",
              lambda cfg: {**cfg, "review": {"mode": "required", "sheets": "config/review"}})
    stopped = snakemake(edited_run, check=False)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0
    assert "copy results/demo/review/sheet.csv to config/review/demo.csv" in output

    generated = (edited_run / "results/demo/review/sheet.csv").read_text(encoding="utf-8-sig")
    (edited_run / "config/review/demo.csv").write_text(generated.replace('"pending"', '"approved"'), encoding="utf-8")
    snakemake(edited_run)
    approved = pq.read_table(edited_run / "results/demo/captions/approved.parquet")
    assert approved.num_rows == 14 and set(approved["decision"].to_pylist()) == {"approved"}
    assert (edited_run / "results/demo/fold1/metrics.json").exists()


def test_a_bad_config_value_is_rejected_before_anything_runs(edited_run):
    edit_yaml(edited_run / "config/config.yaml", set_key("frames", "num_segmnets", 8))
    proc = snakemake(edited_run, "-n", check=False)
    assert proc.returncode != 0 and "num_segmnets" in proc.stdout + proc.stderr
