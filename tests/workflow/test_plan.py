"""The demo runs end to end; zero-shot transfer, the review gate and config validation on it.

Which rules an edit reruns: tests/workflow/test_rerun_matrix.py."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import yaml

from stages.common.schemas import APPROVED_SCHEMA, FACES_SCHEMA
from tests.workflow.conftest import copy_workflow, planned_jobs, snakemake


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
    occluded = json.loads((demo_run / "results/demo/source/manifest.json").read_text())["occluded"]
    faces = pq.read_table(shards[0]).cast(FACES_SCHEMA).to_pylist()
    visible = [c for c in faces if c["clip_id"].removeprefix("demo-").removesuffix(".mp4") not in occluded]
    statuses = [s for clip in visible for s in clip["face_status"]]
    assert len(visible) >= 5 and statuses.count("detected") / len(statuses) > 0.9
    approved = pq.read_table(demo_run / "results/demo/captions/approved.parquet").cast(APPROVED_SCHEMA)
    # The two occluded clips are flagged (face_filled) and left out until a person decides; the rest pass unflagged
    kept = {c.removeprefix("demo-").removesuffix(".mp4") for c in approved["clip_id"].to_pylist()}
    assert len(occluded) == 2 and not set(occluded) & kept
    assert approved.num_rows == 12 and set(approved["decision"].to_pylist()) == {"auto_approved"}
    assert all("brow" in c or "lip" in c or "eye" in c or "mouth" in c or "jaw" in c or "head" in c or "face" in c
               for c in approved["caption"].to_pylist())
    # Review is exercised for real: the captioner's interpretive asides ("which looks like a smile") are removed
    refinement = json.loads((demo_run / "results/demo/captions/refinement_report.json").read_text())
    assert refinement["removed_spans"]["total"] > 0
    sheet = (demo_run / "results/demo/review/sheet.csv").read_text(encoding="utf-8-sig")
    assert "emotion word" in sheet  # the sheet shows the reviewer what refinement removed and why
    flagged_first = sheet.splitlines()[1:3]
    assert all("face_filled" in line for line in flagged_first), flagged_first
    metrics = json.loads((demo_run / "results/demo/fold1/metrics.json").read_text())
    assert metrics["model"] == "star-dagger" and metrics["random_init"] is True and metrics["n"] == 7
    assert 0 <= metrics["uar"] <= 1 and len(metrics["confusion"]) == 7
    assert (demo_run / "results/demo/fold1/confusion.png").stat().st_size > 1000
    assert planned_jobs(demo_run) == {}


def test_zero_shot_transfer_runs_on_the_demo(edited_run):
    snakemake(edited_run, "results/zeroshot/demo_to_demo/metrics.json")
    metrics = json.loads((edited_run / "results/zeroshot/demo_to_demo/metrics.json").read_text())
    assert metrics["zero_shot_source"] == "demo" and metrics["objective"] == "contrastive"


def test_a_transfer_to_the_shifted_demo_is_planned_with_its_class_mapping(tmp_path):
    workdir = copy_workflow(tmp_path)
    target = "results/zeroshot/demo_to_demo_shift/metrics.json"
    jobs = planned_jobs(workdir, target)
    # Both datasets are generated; the target needs frames and faces (2 shards each), not captions: only the
    # source's captions train the model.
    assert jobs["demo_clips"] == 2 and jobs["features"] == 4 and jobs["captions"] == 2
    assert jobs["zeroshot_train"] == jobs["zeroshot_predict"] == jobs["zeroshot_evaluate"] == 1
    plan = snakemake(workdir, "-n", "-p", target).stdout
    assert '--class-mapping-json \'{"calm":"neutral","fear":"fear","joy":"happiness","sadness":"sadness",' \
           '"shock":"surprise"}\'' in plan

    description = workdir / "config/datasets/demo_shift.yaml"
    description.write_text(description.read_text().replace("calm: neutral", "calm: serene"))
    proc = snakemake(workdir, "-n", target, check=False)
    assert proc.returncode != 0
    assert "config/datasets/demo_shift.yaml: same_as maps to ['serene'], which are not classes of the source" in \
        proc.stdout + proc.stderr


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
