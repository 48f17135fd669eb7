# Embedded demo data: synthetic expression clips of a public-domain face photo, in DFER-CLIP's list format.
# Every dataset entry with a `demo:` key is generated (the demo, and demo_shift with its settings over `demo:`).


rule demo_clips:
    """Synthesise a generated dataset's expression clips and their DFER-CLIP-style annotation lists."""
    output:
        clips=directory("results/{ds}/source/clips"),
        lists=expand(
            "results/{{ds}}/source/lists/demo_set_{fold}_{split}.txt",
            fold=[1, 2],
            split=["train", "test"],
        ),
        manifest="results/{ds}/source/manifest.json",
    params:
        cfg=demo_settings,
        code=code_fingerprint("demo"),
    log:
        "logs/{ds}/demo_clips.log",
    wildcard_constraints:
        ds="|".join(GENERATED_DATASETS),
    threads: 2
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m stages.demo --config-json {params.cfg:q} --out-dir results/{wildcards.ds}/source > {log} 2>&1"


rule pretrain_demo_towers:
    """Pre-train the demo's tiny CLIP towers on a synthetic corpus of facial actions (an action read-out per face part)."""
    output:
        "results/demo/pretrained/clip.pt",
    params:
        cfg=pretrain_settings,
        tower=pretrained_demo_tower,
        code=code_fingerprint("pretrain"),
    log:
        "logs/demo/pretrain_demo_towers.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/pretrain.yaml"
    shell:
        "python -m stages.pretrain --config-json {params.cfg:q} --tower-json {params.tower:q} --out {output}"
        " > {log} 2>&1"
