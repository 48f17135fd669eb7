# FineCLIPER / DFER-CLIP pipeline: a table of contents. Logic lives in stages/ (plain Python);
# helpers for paths, configs and fingerprints live in rules/common.smk.
from snakemake.utils import min_version, validate

min_version("9.11")


report: "workflow/report/workflow.rst"


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/index.smk"
include: "rules/frames.smk"
include: "rules/faces.smk"
include: "rules/captions.smk"
include: "rules/refine.smk"
include: "rules/review.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/zeroshot.smk"


rule all:
    """The default target: the demo's metrics (confusion matrix and training curves beside them)."""
    default_target: True
    localrule: True
    input:
        demo_final_outputs(),


onsuccess:
    remove_stale_shard_files()
    report_final_outputs(requested_targets())
