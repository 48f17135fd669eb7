# Manual-review gate. The generated sheet is for people; config/review/{ds}.csv is the human-owned copy
# (never a rule output). `python -m stages.review status {ds}` says what is pending.


rule review_sheet:
    """Write the review sheet for people, keeping earlier decisions of the human sheet."""
    localrule: True
    input:
        refined="results/{ds}/captions/refined.parquet",
        index="results/{ds}/index.parquet",
        earlier=earlier_review_decisions,
    output:
        report(
            "results/{ds}/review/sheet.csv",
            caption="../workflow/report/review_sheet.rst",
            category="Captions",
            subcategory="{ds}",
            labels={"table": "review status"},
        ),
    params:
        sheet=human_review_sheet_target,
        code=code_fingerprint("review"),
    log:
        "logs/{ds}/review_sheet.log",
    conda:
        "../envs/captions.yaml"
    shell:
        "python -m stages.review export --refined {input.refined} --index {input.index}"
        " --previous {params.sheet:q} --out {output} > {log} 2>&1"


rule apply_review:
    """Apply the human review sheet (or the review mode): the approved captions."""
    localrule: True
    input:
        refined="results/{ds}/captions/refined.parquet",
        generated="results/{ds}/review/sheet.csv",
        sheet=human_review_sheet,
    output:
        "results/{ds}/captions/approved.parquet",
    params:
        mode=review_mode,
        sheet=human_review_sheet_target,
        code=code_fingerprint("review"),
    log:
        "logs/{ds}/apply_review.log",
    conda:
        "../envs/captions.yaml"
    shell:
        "python -m stages.review apply --refined {input.refined} --sheet {params.sheet:q}"
        " --generated {input.generated} --mode {params.mode} --out {output} > {log} 2>&1"
