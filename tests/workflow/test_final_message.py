"""The run's closing message names the targets that were asked for and built, not the demo's default target."""
from __future__ import annotations

from tests.workflow.conftest import copy_workflow, snakemake


def test_done_message_names_the_requested_target(tmp_path):
    workdir = copy_workflow(tmp_path / "run")
    out = snakemake(workdir, "results/demo/index.parquet").stdout
    message = out[out.index("Done. Main results:"):]
    assert "results/demo/index.parquet" in message and "metrics.json" not in message
