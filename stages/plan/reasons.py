"""Read the jobs and reasons of a ``snakemake --dry-run`` and name the settings behind a params change.

Every tracked param of this workflow is canonical JSON with one top-level key saying what it is (the stage's
settings under the stage's name, ``code``, ``weights``, ``prompt``, ...; rules/common.smk). Snakemake reports a
params change as the sets of param values only before and only now; merging each set into one object and
diffing the two gives the changed keys by name.
"""
from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from dataclasses import dataclass, field

from stages.common.provenance import changed_settings

PARAMS_CHANGED = "Params have changed since last execution:"
_JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$")
_FIELD = re.compile(r"^\s+(\w+): (.*)$")


@dataclass
class PlannedJob:
    rule: str
    wildcards: str = ""
    reason: str = ""
    fields: dict = field(default_factory=dict)


def planned_jobs(dry_run_output: str) -> list[PlannedJob]:
    """The job blocks of a dry run (``rule x:`` followed by indented ``key: value`` lines), in order."""
    jobs: list[PlannedJob] = []
    for line in dry_run_output.splitlines():
        header = _JOB_HEADER.match(line)
        if header:
            jobs.append(PlannedJob(header.group(1)))
            continue
        found = _FIELD.match(line)
        if jobs and found:
            jobs[-1].fields.setdefault(found.group(1), found.group(2))
    for job in jobs:
        job.reason = job.fields.get("reason", "")
        job.wildcards = job.fields.get("wildcards", "")
    return [job for job in jobs if job.rule != "all"]


def _param_sets(reason: str) -> tuple[list[str], list[str]]:
    """The param values only before and only now, from Snakemake's 'before: 'a','b' now: 'c'' text."""
    text = reason.split(PARAMS_CHANGED, 1)[1]
    sets: dict[str, list[str]] = {"before": [], "now": []}
    current = None
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    try:
        for token in tokens:
            if token.type == tokenize.NAME and token.string in sets:
                current = token.string
            elif token.type == tokenize.STRING and current:
                sets[current].append(ast.literal_eval(token.string))
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass  # the rest of the reason line (other reasons) need not be Python tokens
    return sets["before"], sets["now"]


def _merged(values: list[str]) -> dict:
    merged: dict = {}
    for value in values:
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            parsed = None
        if isinstance(parsed, dict):
            merged.update(parsed)
        else:
            merged.setdefault("(other params)", []).append(value)
    return merged


def params_diff(reason: str) -> list[str]:
    """``key: old -> new`` lines for a reason that contains a params change (else [])."""
    if PARAMS_CHANGED not in reason:
        return []
    before, now = _param_sets(reason)
    return changed_settings(_merged(before), _merged(now))


def _short(reason: str) -> str:
    """The reasons without their file lists and param values."""
    head, params, tail = reason.partition(PARAMS_CHANGED)
    clauses = [clause.split(":", 1)[0].strip() for clause in head.split("; ")]
    if params:
        clauses.append(PARAMS_CHANGED.rstrip(":"))
        clauses += ["Software environment definition has changed"] * ("Software environment" in tail)
    return "; ".join(c for c in clauses if c) or "(no reason given)"


def describe(dry_run_output: str) -> str:
    """One line per planned job with its reasons, then the changed settings of params changes, indented."""
    if "Nothing to be done" in dry_run_output:
        return "Nothing to be done: every result is up to date."
    lines = []
    for job in planned_jobs(dry_run_output):
        where = f" ({job.wildcards})" if job.wildcards else ""
        lines.append(f"{job.rule}{where}: {_short(job.reason)}")
        lines += [f"    {change}" for change in params_diff(job.reason)]
    return "\n".join(lines)
