# Stages 9-11: DeepLab trained on a pseudo-label variant (or on GT: the fully supervised reference),
# predictions on val, and the final score.
DEEPLAB = config["deeplab"]
LABEL_VARIANTS = tuple(PSEUDO_VARIANTS) + ("cam_fixed_tau",)
if DEEPLAB["labels"] not in LABEL_VARIANTS:
    raise WorkflowError(
        f"deeplab.labels: {DEEPLAB['labels']!r} is not a variant this config builds; "
        f"choose one of {', '.join(LABEL_VARIANTS)} (the _rw variants follow affinity.base)"
    )
# results/<score>.txt -> the labels its DeepLab was trained on
SCORES = {"voc_miou": DEEPLAB["labels"], "fully_supervised_miou": "gt"}


rule train_deeplab:
    input:
        manifest=MANIFEST,
        labels=deeplab_labels,
    output:
        model="artifacts/deeplab/{labels}/model.pt",
        log_csv="artifacts/deeplab/{labels}/train_log.csv",
    log:
        "logs/train_deeplab_{labels}.log",
    benchmark:
        "benchmarks/train_deeplab_{labels}.tsv"
    wildcard_constraints:
        labels="|".join(LABEL_VARIANTS + ("gt",)),
    conda:
        ENV
    threads: rule_threads("train_deeplab")
    resources:
        **rule_resources("train_deeplab"),
    params:
        seed=SEED,
        labels=deeplab_label_flag,
        net=flags(DEEPLAB, exclude=("labels", "train", "infer")),
        train=flags(DEEPLAB["train"]),
    shell:
        "python -m c2am.stages.train_deeplab --manifest {input.manifest} --split train {params.labels}"
        " --out {output.model} --log-csv {output.log_csv} {params.net} {params.train}"
        " --seed {params.seed} --threads {threads} 2> {log}"


rule infer_deeplab:
    input:
        manifest=MANIFEST,
        model="artifacts/deeplab/{labels}/model.pt",
    output:
        pred=directory(sharded("artifacts/deeplab/{labels}/pred_val")),
    log:
        f"logs/{shard_name('infer_deeplab_{labels}')}.log",
    benchmark:
        f"benchmarks/{shard_name('infer_deeplab_{labels}')}.tsv"
    conda:
        ENV
    threads: rule_threads("infer_deeplab")
    resources:
        **rule_resources("infer_deeplab"),
    params:
        infer=flags(DEEPLAB["infer"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.infer_deeplab --manifest {input.manifest} --split val"
        " --checkpoint {input.model} --out-dir {output.pred} {params.infer} {params.shard}"
        " --threads {threads} 2> {log}"


rule evaluate:
    input:
        gt=needs_gt("val", "results/{score}.txt"),
        manifest=MANIFEST,
        pred=lambda w: f"artifacts/deeplab/{SCORES[w.score]}/pred_val",
    output:
        txt=report(
            "results/{score}.txt",
            caption="../report/score_miou.rst",
            category="4. DeepLab",
        ),
        json="results/{score}.json",
    log:
        "logs/evaluate_{score}.log",
    benchmark:
        "benchmarks/evaluate_{score}.tsv"
    wildcard_constraints:
        score="|".join(SCORES),
    conda:
        ENV
    threads: rule_threads("evaluate")
    resources:
        **rule_resources("evaluate"),
    shell:
        "python -m c2am.stages.evaluate --manifest {input.manifest} --split val --pred-dir {input.pred}"
        " --out-txt {output.txt} --out-json {output.json} 2> {log}"
