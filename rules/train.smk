# Training one model (FineCLIPER variant or DFER-CLIP) on one fold. Interrupted runs resume from
# results/{ds}/{fold}/{model}/checkpoints/ (not an output, so a failed job keeps it).


rule train:
    """Train one model (a FineCLIPER variant or DFER-CLIP) on one fold; test predictions."""
    input:
        features=feature_shards,
        captions=model_captions,
        weights=train_weights,
        descriptors=dfer_clip_descriptors,
    output:
        model="results/{ds}/{fold}/{model}/model.pt",
        log="results/{ds}/{fold}/{model}/train_log.csv",
        predictions="results/{ds}/{fold}/{model}/predictions.parquet",
        run_info="results/{ds}/{fold}/{model}/run_info.json",
    params:
        settings=train_settings,
        weights=train_weights_sha,
        descriptors=descriptors_content,
        cfg=train_config,
        launcher=train_launcher,
        code=code_fingerprint("train"),
    log:
        "logs/{ds}/{fold}/{model}/train.log",
    threads: train_threads
    resources:
        mem_mb=32000,
        runtime=24 * 60,
        gpu=train_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.launcher} -m stages.train fit --features {input.features} --captions {input.captions}"
        " --fold {wildcards.fold} --dataset {wildcards.ds}"
        " --config-json {params.cfg:q} --out-dir results/{wildcards.ds}/{wildcards.fold}/{wildcards.model}"
        " --descriptors config/prompts/dfer_clip_descriptors.yaml > {log} 2>&1"
