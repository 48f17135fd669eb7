"""The demo runs end to end, and dry runs rerun exactly the stale stages after an edit."""
from __future__ import annotations

import pyarrow.parquet as pq
import yaml

from stages.common.schemas import FACES_SCHEMA
from tests.workflow.conftest import planned_jobs, snakemake


def reordered(mapping):
    """Same content, keys in reverse order at every level."""
    if isinstance(mapping, dict):
        return {key: reordered(mapping[key]) for key in reversed(list(mapping))}
    return mapping


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(change(data), sort_keys=False))


def test_demo_reaches_faces_shards_and_a_second_run_does_nothing(demo_run):
    shards = sorted((demo_run / "results/demo/faces").glob("*.parquet"))
    assert [p.name for p in shards] == ["000-of-002.parquet", "001-of-002.parquet"]
    faces = pq.read_table(shards[0]).cast(FACES_SCHEMA).to_pylist()
    assert faces, "a shard of the demo holds clips"
    statuses = [s for clip in faces for s in clip["face_status"]]
    assert statuses.count("detected") / len(statuses) > 0.9
    assert planned_jobs(demo_run) == {}


def test_reordering_config_keys_reruns_nothing(edited_run):
    edit_yaml(edited_run / "config/config.yaml", reordered)
    edit_yaml(edited_run / "tests/config/test.yaml", reordered)
    assert planned_jobs(edited_run) == {}


def test_changing_frames_settings_reruns_frames_and_faces_only(edited_run):
    def lower_quality(cfg):
        cfg["frames"]["jpeg_quality"] = 80
        return cfg

    edit_yaml(edited_run / "config/config.yaml", lower_quality)
    assert planned_jobs(edited_run) == {"frames": 2, "faces": 2}


def test_changing_faces_settings_reruns_faces_only(edited_run):
    def more_upsampling(cfg):
        cfg["faces"]["upsample"] = 2
        return cfg

    edit_yaml(edited_run / "config/config.yaml", more_upsampling)
    assert planned_jobs(edited_run) == {"faces": 2}


def test_editing_stage_code_reruns_that_stage_and_downstream(edited_run):
    frames_code = next((edited_run / "stages/frames").glob("*.py"))
    frames_code.write_text(frames_code.read_text() + "\n# a comment is a code change too\n")
    assert planned_jobs(edited_run) == {"frames": 2, "faces": 2}


def test_a_bad_config_value_is_rejected_before_anything_runs(edited_run):
    def typo(cfg):
        cfg["frames"]["num_segmnets"] = 8
        return cfg

    edit_yaml(edited_run / "config/config.yaml", typo)
    proc = snakemake(edited_run, "-n", check=False)
    assert proc.returncode != 0 and "num_segmnets" in proc.stdout + proc.stderr
