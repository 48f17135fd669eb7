# Face analysis per shard: 68 landmarks and an 11-class parsing map for every kept frame.


rule faces:
    input:
        "results/{ds}/frames/{shard}.parquet",
    output:
        "results/{ds}/faces/{shard}.parquet",
    params:
        cfg=stage_config("faces"),
        code=code_fingerprint("faces"),
    log:
        "logs/{ds}/faces/{shard}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=0,
    shell:
        "python -m stages.faces --frames {input} --config-json {params.cfg:q} --out {output} > {log} 2>&1"
