# Stage 0: the dataset. Synthetic: generated at dataset.root. VOC: validated in place.
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
        data=flags(DATA, exclude=("synthetic", "splits")),
        splits=" ".join(
            DATA["splits"][role] for role in ("train", "pseudo_eval", "val")
        ),
        synthetic=flags(DATA["synthetic"]) if DATA["kind"] == "synthetic" else "",
    shell:
        "python -m c2am.stages.prepare_dataset {params.data} --splits {params.splits} {params.synthetic} --seed {params.seed} --out {output} 2> {log}"
