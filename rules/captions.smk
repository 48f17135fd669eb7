# Fine-grained captions per shard: a description of facial movements for every clip.


rule captions:
    """Describe the facial movements of every clip of a shard (fine-grained captions)."""
    input:
        faces="results/{ds}/faces/{shard}.parquet",
        frames="results/{ds}/frames/{shard}.parquet",
        index="results/{ds}/index.parquet",
        prompt=captions_prompt,
        weights=captions_weights,
    output:
        "results/{ds}/captions/raw/{shard}.parquet",
    params:
        settings=stage_settings("captions"),
        prompt=prompt_content,
        weights=captions_weights_sha,
        cfg=stage_run_config("captions", drop=["prompt"]),
        code=code_fingerprint("captions"),
    log:
        "logs/{ds}/captions/{shard}.log",
    threads: 2
    resources:
        mem_mb=24000,
        runtime=240,
        gpu=captions_gpus,
    conda:
        "../envs/captions.yaml"
    shell:
        "python -m stages.captions --faces {input.faces} --frames {input.frames} --index {input.index}"
        " --prompt {input.prompt} --config-json {params.cfg:q} --out {output} > {log} 2>&1"
