"""The demo runs on a real (one-node) SLURM cluster through workflow/profiles/slurm, every non-local job as a SLURM job.

Run by `make test-cluster`, which starts the cluster first (tests/cluster/local_slurm.sh). Plain `pytest` does not
collect this folder (pyproject's testpaths); run directly without a cluster, it fails and says how to start one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.workflow.conftest import copy_workflow

HERE = Path(__file__).resolve().parent
PROFILE = "workflow/profiles/slurm"
TARGET = "results/demo/fold1/metrics.json"
PARTITION = os.environ.get("SLURM_TEST_PARTITION", "local")
# Extra config files for the run (space-separated), e.g. tests/config/test.yaml for a quicker, tinier demo.
EXTRA_CONFIGS = os.environ.get("CLUSTER_TEST_CONFIGS", "").split()
RUN_TIMEOUT_S = 60 * 60


@dataclass(frozen=True)
class SlurmSubmission:
    snakemake_job: int
    slurm_job: int
    log: Path


def slurm_is_up() -> str | None:
    """None when a controller answers; otherwise why not (in the failure message)."""
    if shutil.which("squeue") is None:
        return "no SLURM client (squeue); `make test-cluster` installs and starts a one-node cluster"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if "is UP" not in ping.stdout:
        return f"no SLURM controller answers ({ping.stdout.strip() or ping.stderr.strip()}); run `make test-cluster`"
    return None


def partition_overrides(profile: Path, partition: str) -> list[str]:
    """Send every job of the profile to ``partition``: its default and every per-rule partition."""
    settings = yaml.safe_load((profile / "profile.yaml").read_text())
    per_rule = [f"{rule}:slurm_partition={partition}" for rule, resources in settings.get("set-resources", {}).items()
                if "slurm_partition" in resources]
    args = ["--default-resources", f"slurm_partition={partition}"]
    return args + (["--set-resources", *per_rule] if per_rule else [])


def jobs_by_rule(log_text: str) -> dict[int, tuple[str, bool]]:
    """Snakemake job id -> (rule, ran locally) from the run's log ('rule x:' / 'localrule x:' then 'jobid: N')."""
    blocks = re.findall(r"^(localrule|rule) (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", log_text, flags=re.M)
    return {int(jobid): (rule, kind == "localrule") for kind, rule, jobid in blocks}


def slurm_submissions(log_text: str) -> list[SlurmSubmission]:
    found = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.", log_text)
    return [SlurmSubmission(int(job), int(slurm_job), Path(log)) for job, slurm_job, log in found]


def squeue_records(slurm_jobs: list[int]) -> dict[int, tuple[str, str]]:
    """SLURM job id -> (state, comment), for finished jobs too (kept for MinJobAge)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(map(str, slurm_jobs)), "-o", "%i|%T|%k"],
        capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
    ).stdout
    records = (line.split("|", 2) for line in out.splitlines() if line.strip())
    return {int(job): (state, comment) for job, state, comment in records}


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory) -> tuple[Path, str]:
    reason = slurm_is_up()
    if reason:  # not in `make test` (testpaths); `make test-cluster` starts the cluster first
        pytest.fail(f"no usable SLURM cluster: {reason}. Run `make test-cluster` (it starts a one-node cluster; "
                    "root), or see /var/log/slurm/*.log if it did.")
    workdir = copy_workflow(tmp_path_factory.mktemp("cluster"))
    shutil.copytree(HERE, workdir / "tests/cluster", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = [
        sys.executable, "-m", "snakemake", TARGET, "--profile", PROFILE,
        *partition_overrides(workdir / PROFILE, PARTITION),
        # Accounting is off on the test cluster: sacct knows no jobs, squeue does (MinJobAge=3600).
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-keep-successful-logs", "--slurm-init-seconds-before-status-checks", "5",
        # The test cluster has no GPUs: train on the CPU, so no job asks SLURM for one.
        "--configfile", *EXTRA_CONFIGS, "tests/cluster/cpu_only.yaml",
    ]
    proc = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S)
    log_text = proc.stdout + proc.stderr
    (workdir / "cluster_run.log").write_text(log_text)
    assert proc.returncode == 0, f"cluster run failed (log: {workdir / 'cluster_run.log'}):\n{log_text[-6000:]}"
    return workdir, log_text


def test_the_demo_reaches_its_metrics_on_slurm(cluster_run):
    workdir, _ = cluster_run
    metrics = json.loads((workdir / TARGET).read_text())
    assert metrics["n"] > 0 and 0 <= metrics["uar"] <= 1


def test_every_non_local_job_ran_as_a_completed_slurm_job(cluster_run):
    _, log_text = cluster_run
    jobs = jobs_by_rule(log_text)
    submissions = slurm_submissions(log_text)
    remote = {job for job, (_, local) in jobs.items() if not local}
    assert remote and {s.snakemake_job for s in submissions} == remote
    assert len({s.slurm_job for s in submissions}) == len(submissions)
    ran_remotely = {jobs[job][0] for job in remote}
    assert {"demo_clips", "frames", "faces", "captions", "train", "evaluate"} <= ran_remotely

    records = squeue_records([s.slurm_job for s in submissions])
    for s in submissions:
        rule = jobs[s.snakemake_job][0]
        state, comment = records[s.slurm_job]
        assert state == "COMPLETED", f"SLURM job {s.slurm_job} ({rule}) is {state}"
        assert comment.startswith(f"rule_{rule}"), f"SLURM job {s.slurm_job} carries comment {comment!r}, not {rule}"
        # The job's own SLURM log: the Snakemake job step that ran the rule inside the allocation.
        assert s.log.is_file() and f"rule {rule}:" in s.log.read_text(), s.log
