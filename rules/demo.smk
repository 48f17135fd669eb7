# Embedded demo data: synthetic expression clips of a public-domain face photo, in DFER-CLIP's list format.


rule demo_clips:
    """Synthesise the demo's expression clips and their DFER-CLIP-style annotation lists."""
    output:
        clips=directory("results/demo/source/clips"),
        lists=expand(
            "results/demo/source/lists/demo_set_{fold}_{split}.txt",
            fold=[1, 2],
            split=["train", "test"],
        ),
        manifest="results/demo/source/manifest.json",
    params:
        cfg=canonical(config["demo"]),
        code=code_fingerprint("demo"),
    log:
        "logs/demo/demo_clips.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m stages.demo --config-json {params.cfg:q} --out-dir results/demo/source > {log} 2>&1"
