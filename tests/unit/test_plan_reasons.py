"""stages.plan: jobs and reasons read from a dry run, params changes named by setting."""
from __future__ import annotations

from stages.plan.reasons import describe, params_diff

OLD = '{"train":{"epochs":1,"towers":{"clip":{"arch":"tiny"}}}}'
NEW = '{"train":{"epochs":2,"towers":{"clip":{"arch":"tiny"}}}}'
DRY_RUN = f"""Building DAG of jobs...
rule train:
    input: results/demo/features/000-of-002.parquet
    output: results/demo/fold1/star-dagger/model.pt
    jobid: 2
    reason: Params have changed since last execution: Union of exclusive params before and now across all output: before: {OLD!r},'{{"code":{{"train":"a1"}}}}' now: {NEW!r},'{{"code":{{"train":"b2"}}}}','it\\'s, odd' 
    wildcards: ds=demo, fold=fold1, model=star-dagger
    threads: 2

localrule fold_metrics:
    input: results/demo/fold1/star-dagger/metrics.json
    jobid: 1
    reason: Input files updated by another job: results/demo/fold1/star-dagger/metrics.json
    wildcards: ds=demo, fold=fold1

rule all:
    jobid: 0
    reason: Input files updated by another job: results/demo/fold1/metrics.json
"""


def test_the_plan_names_changed_settings_and_keeps_other_reasons_short():
    assert describe(DRY_RUN).splitlines() == [
        "train (ds=demo, fold=fold1, model=star-dagger): Params have changed since last execution",
        "    (other params): (absent) -> [\"it's, odd\"]",
        '    code.train: "a1" -> "b2"',
        "    train.epochs: 1 -> 2",
        "fold_metrics (ds=demo, fold=fold1): Input files updated by another job",
    ]


def test_no_params_change_and_nothing_to_do():
    assert params_diff("Missing output files: x.parquet") == []
    assert describe("Building DAG of jobs...\nNothing to be done (all requested files are present and up to date).") \
        == "Nothing to be done: every result is up to date."
