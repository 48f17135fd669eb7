# Evaluation of a trained model's test predictions: metrics.json, confusion matrix, training curves;
# per-dataset summaries over folds and the comparison table of models.


rule evaluate:
    input:
        predictions="results/{ds}/{fold}/{model}/predictions.parquet",
        run_info="results/{ds}/{fold}/{model}/run_info.json",
        log="results/{ds}/{fold}/{model}/train_log.csv",
    output:
        metrics="results/{ds}/{fold}/{model}/metrics.json",
        confusion="results/{ds}/{fold}/{model}/confusion.png",
        curves="results/{ds}/{fold}/{model}/training_curves.png",
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/{ds}/{fold}/{model}/evaluate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m stages.evaluate fold --predictions {input.predictions} --run-info {input.run_info}"
        " --train-log {input.log} --out-metrics {output.metrics} --out-confusion {output.confusion}"
        " --out-curves {output.curves} > {log} 2>&1"


rule fold_metrics:
    localrule: True
    input:
        unpack(selected_model_metrics),
    output:
        metrics="results/{ds}/{fold}/metrics.json",
        confusion="results/{ds}/{fold}/confusion.png",
    shell:
        "cp {input.metrics:q} {output.metrics:q} && cp {input.confusion:q} {output.confusion:q}"


rule summary:
    localrule: True
    input:
        fold_metrics,
    output:
        json="results/{ds}/summary.json",
        md="results/{ds}/summary.md",
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/{ds}/summary.log",
    shell:
        "python -m stages.evaluate summary --metrics {input} --out-json {output.json} --out-md {output.md} > {log} 2>&1"


rule compare_models:
    localrule: True
    input:
        compared_model_metrics,
    output:
        "results/{ds}/{fold}/models.md",
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/{ds}/{fold}/compare_models.log",
    shell:
        "python -m stages.evaluate table --metrics {input} --out-md {output} > {log} 2>&1"
