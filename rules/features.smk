# The visual training cache: frames, parsing maps and landmarks joined per clip with labels and splits.
# Captions stay out of it (models that read them take captions/approved.parquet), so caption, lexicon and
# review edits do not retrain models without text.


rule features:
    """Join frames, parsing maps, landmarks and approved captions into the training cache."""
    input:
        frames="results/{ds}/frames/{shard}.parquet",
        faces="results/{ds}/faces/{shard}.parquet",
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
        "python -m stages.features --frames {input.frames} --faces {input.faces} --index {input.index}"
        " --out {output} > {log} 2>&1"
