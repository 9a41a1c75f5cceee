# Stage 0: the dataset. Synthetic: generated at dataset.root. VOC, folder: validated in place. COCO: validated, and
# its semantic masks rasterised into dataset.coco.label_dir.
DATA = config["dataset"]


rule prepare_dataset:
    output:
        MANIFEST,
    log:
        "logs/prepare_dataset.log",
    benchmark:
        "benchmarks/prepare_dataset.tsv"
    conda:
        ENV
    threads: rule_threads("prepare_dataset")
    resources:
        **rule_resources("prepare_dataset"),
    params:
        seed=SEED,
        data=flags({k: v for k, v in DATA.items() if not isinstance(v, dict)}),
        splits=" ".join(
            DATA["splits"][role] for role in ("train", "pseudo_eval", "val")
        ),
        synthetic=flags(DATA["synthetic"]) if DATA["kind"] == "synthetic" else "",
        layout=(
            flags(DATA.get(DATA["kind"], {}))
            if DATA["kind"] in ("folder", "coco")
            else ""
        ),
    shell:
        "python -m c2am.stages.prepare_dataset {params.data} --splits {params.splits} {params.synthetic} {params.layout}"
        " --seed {params.seed} --threads {threads} --out {output} 2> {log}"
