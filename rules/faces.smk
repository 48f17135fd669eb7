# Face analysis per shard: 68 landmarks and an 11-class parsing map for every kept frame.


rule faces:
    """Find 68 landmarks and an 11-class face-parsing map for every kept frame of a shard."""
    input:
        frames="results/{ds}/frames/{shard}.parquet",
        weights=faces_weights,
    output:
        "results/{ds}/faces/{shard}.parquet",
    params:
        settings=stage_settings("faces"),
        weights=faces_weights_sha,
        cfg=stage_run_config("faces"),
        code=code_fingerprint("faces"),
    log:
        "logs/{ds}/faces/{shard}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=faces_gpus,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m stages.faces --frames {input.frames} --config-json {params.cfg:q} --out {output} > {log} 2>&1"
