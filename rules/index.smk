# Clip index: annotation lists (or a video folder) -> usable clips with frame counts recounted from disk.


rule index:
    """Read a dataset's annotation lists (or video folder) into the clip index; list unusable clips."""
    input:
        description=dataset_description_file,
        lists=index_list_files,
    output:
        index="results/{ds}/index.parquet",
        dropped="results/{ds}/index_dropped.csv",
    params:
        description=index_description,
        overrides=index_overrides_json,
        code=code_fingerprint("index"),
    log:
        main="logs/{ds}/index.log",
        dropped="logs/{ds}/index_dropped.csv",  # kept when the job fails (Snakemake removes failed outputs)
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m stages.index --dataset-config {input.description} --overrides-json {params.overrides:q}"
        " --out {output.index} --dropped {output.dropped} {log.dropped} > {log.main} 2>&1"
