# Evaluation of a trained model's test predictions: metrics.json, confusion matrix, training curves;
# per-dataset summaries over folds and the comparison table of models.


rule evaluate:
    """Score a model's test predictions: metrics.json, confusion matrix, training curves."""
    input:
        predictions="results/{ds}/{fold}/{model}/predictions.parquet",
        run_info="results/{ds}/{fold}/{model}/run_info.json",
        log="results/{ds}/{fold}/{model}/train_log.csv",
    output:
        metrics=report(
            "results/{ds}/{fold}/{model}/metrics.json",
            caption="../workflow/report/metrics.rst",
            category="Results",
            subcategory="{ds} {fold}",
            labels={"model": "{model}", "figure": "metrics"},
        ),
        confusion=report(
            "results/{ds}/{fold}/{model}/confusion.png",
            caption="../workflow/report/confusion.rst",
            category="Results",
            subcategory="{ds} {fold}",
            labels={"model": "{model}", "figure": "confusion matrix"},
        ),
        curves=report(
            "results/{ds}/{fold}/{model}/training_curves.png",
            caption="../workflow/report/training_curves.rst",
            category="Results",
            subcategory="{ds} {fold}",
            labels={"model": "{model}", "figure": "training curves"},
        ),
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/{ds}/{fold}/{model}/evaluate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/train.yaml"
    shell:
        "python -m stages.evaluate fold --predictions {input.predictions} --run-info {input.run_info}"
        " --train-log {input.log} --out-metrics {output.metrics} --out-confusion {output.confusion}"
        " --out-curves {output.curves} > {log} 2>&1"


rule fold_metrics:
    """Copy the selected model's metrics and confusion matrix to the fold's folder."""
    localrule: True
    input:
        unpack(selected_model_metrics),
    output:
        metrics="results/{ds}/{fold}/metrics.json",
        confusion="results/{ds}/{fold}/confusion.png",
    log:
        "logs/{ds}/{fold}/fold_metrics.log",
    conda:
        "../envs/train.yaml"
    shell:
        "(cp -v {input.metrics:q} {output.metrics:q} && cp -v {input.confusion:q} {output.confusion:q}) > {log} 2>&1"


rule summary:
    """UAR and WAR of a dataset per fold with mean and standard deviation."""
    localrule: True
    input:
        fold_metrics,
    output:
        json="results/{ds}/summary.json",
        md=report(
            "results/{ds}/summary.md",
            caption="../workflow/report/summary.rst",
            category="Results",
            subcategory="{ds} all folds",
            labels={"model": "selected", "figure": "UAR and WAR per fold"},
        ),
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/{ds}/summary.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python -m stages.evaluate summary --metrics {input} --out-json {output.json} --out-md {output.md} > {log} 2>&1"


rule compare_models:
    """Table of the compared models on one fold beside their published numbers."""
    localrule: True
    input:
        compared_model_metrics,
    output:
        report(
            "results/{ds}/{fold}/models.md",
            caption="../workflow/report/models.rst",
            category="Results",
            subcategory="{ds} {fold}",
            labels={"model": "all compared", "figure": "comparison table"},
        ),
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/{ds}/{fold}/compare_models.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python -m stages.evaluate table --metrics {input} --out-md {output} > {log} 2>&1"
