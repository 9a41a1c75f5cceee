# Stages 3c-3d (the official pipeline's step 4): a class-agnostic saliency network trained on the CRF cues (no
# labels of any kind), then its soft saliency maps S in [0, 1] for the train split; the refinement's background
# is B = 1 - S.
SALIENCY = config["saliency"]


rule train_saliency:
    input:
        manifest=MANIFEST,
        cues="artifacts/c2am/cues",
    output:
        model="artifacts/saliency/model.pt",
        log_csv="artifacts/saliency/train_log.csv",
    log:
        "logs/train_saliency.log",
    benchmark:
        "benchmarks/train_saliency.tsv"
    conda:
        ENV
    threads: rule_threads("train_saliency")
    resources:
        **rule_resources("train_saliency"),
    params:
        seed=SEED,
        net=flags(SALIENCY, exclude=("train", "infer")),
        train=flags(SALIENCY["train"]),
    shell:
        "python -m c2am.stages.train_saliency --manifest {input.manifest} --split train --cues-dir {input.cues}"
        " --out {output.model} --log-csv {output.log_csv} {params.net} {params.train}"
        " --seed {params.seed} --threads {threads} 2> {log}"


rule infer_saliency:
    input:
        manifest=MANIFEST,
        model="artifacts/saliency/model.pt",
    output:
        maps=directory(sharded("artifacts/saliency/maps")),
    log:
        f"logs/{shard_name('infer_saliency')}.log",
    benchmark:
        f"benchmarks/{shard_name('infer_saliency')}.tsv"
    conda:
        ENV
    threads: rule_threads("infer_saliency")
    resources:
        **rule_resources("infer_saliency"),
    params:
        infer=flags(SALIENCY["infer"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.infer_saliency --manifest {input.manifest} --split train"
        " --checkpoint {input.model} --out-dir {output.maps} {params.infer} {params.shard} --threads {threads} 2> {log}"
