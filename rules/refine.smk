# Caption refinement: remove emotion words and emotion-implying clauses, flag what may still leak the label.


rule refine:
    """Remove emotion words and emotion-implying clauses from the captions; flag possible leaks."""
    input:
        raw=raw_caption_shards,
        index="results/{ds}/index.parquet",
        frames=frame_shards,
        lexicons=lexicon_files,
    output:
        refined="results/{ds}/captions/refined.parquet",
        report="results/{ds}/captions/refinement_report.json",
        report_md=report(
            "results/{ds}/captions/refinement_report.md",
            caption="../workflow/report/refinement.rst",
            category="Captions",
            subcategory="{ds}",
            labels={"table": "refinement report"},
        ),
    params:
        settings=stage_settings("refine"),
        cfg=stage_run_config("refine", drop=["lexicons"]),
        lexicon_dir=lexicon_dir,
        code=code_fingerprint("refine"),
    log:
        "logs/{ds}/refine.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/captions.yaml"
    shell:
        "python -m stages.refine --raw {input.raw} --index {input.index} --lexicon-dir {params.lexicon_dir}"
        " --frames {input.frames}"
        " --config-json {params.cfg:q} --out {output.refined} --report {output.report} > {log} 2>&1"
