# Frame sampling per shard: 16 segment centres + K training candidates per segment, face-cropped JPEGs.


rule frames:
    """Sample 16 segments per clip (segment centres + training candidates), face-cropped JPEGs."""
    input:
        "results/{ds}/index.parquet",
    output:
        "results/{ds}/frames/{shard}.parquet",
    params:
        settings=stage_settings("frames"),
        cfg=stage_run_config("frames"),
        code=code_fingerprint("frames"),
    log:
        "logs/{ds}/frames/{shard}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m stages.frames --index {input} --shard {wildcards.shard} --config-json {params.cfg:q}"
        " --out {output} > {log} 2>&1"
