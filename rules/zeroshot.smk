# Zero-shot transfer: the dagger variant trained contrastively on clips and captions of {src} (no labels),
# then clips of {dst} classified with PN prompts of {dst}'s classes.


rule zeroshot_train:
    """Train the dagger variant contrastively on a source dataset's clips and captions."""
    input:
        features=zeroshot_source_features,
        captions="results/{src}/captions/approved.parquet",
        weights=zeroshot_weights,
    output:
        model="results/zeroshot/{src}/model.pt",
        log="results/zeroshot/{src}/train_log.csv",
        predictions="results/zeroshot/{src}/predictions.parquet",
        run_info="results/zeroshot/{src}/run_info.json",
    params:
        settings=zeroshot_train_settings,
        weights=zeroshot_weights_sha,
        cfg=zeroshot_train_config,
        launcher=zeroshot_launcher,
        fold=zeroshot_source_fold,
        code=code_fingerprint("train"),
    log:
        "logs/zeroshot/{src}/train.log",
    threads: zeroshot_threads
    resources:
        mem_mb=32000,
        runtime=24 * 60,
        gpu=zeroshot_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.launcher} -m stages.train fit --features {input.features} --captions {input.captions} --fold {params.fold} --dataset {wildcards.src}"
        " --config-json {params.cfg:q} --out-dir results/zeroshot/{wildcards.src} > {log} 2>&1"


rule zeroshot_predict:
    """Classify a target dataset's clips zero-shot with prompts of its classes."""
    input:
        model="results/zeroshot/{src}/model.pt",
        run_info="results/zeroshot/{src}/run_info.json",
        features=zeroshot_target_features,
    output:
        predictions="results/zeroshot/{src}_to_{dst}/predictions.parquet",
        run_info="results/zeroshot/{src}_to_{dst}/run_info.json",
    params:
        fold=zeroshot_eval_fold,
        mapping=zeroshot_class_mapping,
        code=code_fingerprint("train"),
    log:
        "logs/zeroshot/{src}_to_{dst}/predict.log",
    threads: zeroshot_threads
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=zeroshot_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "python -m stages.train predict --model-dir results/zeroshot/{wildcards.src} --features {input.features}"
        " --fold {params.fold} --dataset {wildcards.dst} --out-dir results/zeroshot/{wildcards.src}_to_{wildcards.dst}"
        " --class-mapping-json {params.mapping:q} > {log} 2>&1"


rule zeroshot_evaluate:
    """Score zero-shot predictions: metrics.json, confusion matrix, training curves."""
    input:
        predictions="results/zeroshot/{src}_to_{dst}/predictions.parquet",
        run_info="results/zeroshot/{src}_to_{dst}/run_info.json",
        log="results/zeroshot/{src}/train_log.csv",
    output:
        metrics=report(
            "results/zeroshot/{src}_to_{dst}/metrics.json",
            caption="../workflow/report/zeroshot.rst",
            category="Zero-shot",
            subcategory="{src} to {dst}",
            labels={"transfer": "{src} to {dst}", "figure": "metrics"},
        ),
        confusion=report(
            "results/zeroshot/{src}_to_{dst}/confusion.png",
            caption="../workflow/report/zeroshot.rst",
            category="Zero-shot",
            subcategory="{src} to {dst}",
            labels={"transfer": "{src} to {dst}", "figure": "confusion matrix"},
        ),
        curves=report(
            "results/zeroshot/{src}_to_{dst}/training_curves.png",
            caption="../workflow/report/zeroshot.rst",
            category="Zero-shot",
            subcategory="{src} to {dst}",
            labels={"transfer": "{src} to {dst}", "figure": "training curves"},
        ),
    params:
        code=code_fingerprint("evaluate"),
    log:
        "logs/zeroshot/{src}_to_{dst}/evaluate.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python -m stages.evaluate fold --predictions {input.predictions} --run-info {input.run_info}"
        " --train-log {input.log} --out-metrics {output.metrics} --out-confusion {output.confusion}"
        " --out-curves {output.curves} > {log} 2>&1"
