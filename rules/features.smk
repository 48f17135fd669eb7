# The training cache: frames, parsing maps, landmarks and approved captions joined per clip.


rule features:
    """Join frames, parsing maps, landmarks and approved captions into the training cache."""
    input:
        frames="results/{ds}/frames/{shard}.parquet",
        faces="results/{ds}/faces/{shard}.parquet",
        approved="results/{ds}/captions/approved.parquet",
        index="results/{ds}/index.parquet",
    output:
        "results/{ds}/features/{shard}.parquet",
    params:
        code=code_fingerprint("features"),
    log:
        "logs/{ds}/features/{shard}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m stages.features --frames {input.frames} --faces {input.faces} --approved {input.approved}"
        " --index {input.index} --out {output} > {log} 2>&1"
