"""A copy of the workflow in a temporary folder, so tests can edit configs and run Snakemake on it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_PARTS = ["Snakefile", "rules", "envs", "stages", "workflow", "config", "profiles", "tests/config"]


def copy_workflow(dest: Path) -> Path:
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True,
              configfile: str | None = "tests/config/test.yaml") -> subprocess.CompletedProcess:
    """Run the Snakemake CLI of this interpreter's environment in ``workdir`` (with the tiny test overlay)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    overlay = ["--configfile", configfile] if configfile else []
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args, *overlay],  # --configfile takes several values: last
        cwd=workdir, env=env, capture_output=True, text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str, configfile: str | None = "tests/config/test.yaml") -> dict[str, int]:
    """Rules a dry run would execute, with their job counts (the aggregate rule 'all' left out)."""
    out = snakemake(workdir, "-n", *args, configfile=configfile)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M))
    return {rule: int(count) for rule, count in jobs.items() if rule != "all"}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The demo workflow run once to its current final target on the tiny test config."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    snakemake(workdir)
    return workdir


@pytest.fixture
def edited_run(demo_run, tmp_path) -> Path:
    """A private copy of the finished run (results and Snakemake's records included) that a test may edit."""
    dest = tmp_path / "run"
    shutil.copytree(demo_run, dest, symlinks=True)
    return dest
