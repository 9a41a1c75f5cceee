# Stages 7c-7d: an affinity network trained on the confident parts of the base variant's labels, then a random walk of
# its background score and CAMs on the learned affinities: the variants <base>_rw and <base>_rw_robust.
AFFINITY = config["affinity"]


rule train_affinity:
    input:
        manifest=MANIFEST,
        labels=f"artifacts/pseudo/{AFFINITY_BASE}",
    output:
        model="artifacts/affinity/model.pt",
        log_csv="artifacts/affinity/train_log.csv",
    log:
        "logs/train_affinity.log",
    benchmark:
        "benchmarks/train_affinity.tsv"
    conda:
        ENV
    threads: rule_threads("train_affinity")
    resources:
        **rule_resources("train_affinity"),
    params:
        seed=SEED,
        net=flags(AFFINITY, exclude=("base", "train", "walk")),
        train=flags(AFFINITY["train"]),
    shell:
        "python -m c2am.stages.train_affinity --manifest {input.manifest} --split train --labels-dir {input.labels}"
        " --out {output.model} --log-csv {output.log_csv} {params.net} {params.train}"
        " --seed {params.seed} --threads {threads} 2> {log}"


rule random_walk:
    input:
        manifest=MANIFEST,
        model="artifacts/affinity/model.pt",
        cams="artifacts/classifier/cams",
        background=PSEUDO_BACKGROUNDS[affinity_background()],
    output:
        labels=directory(sharded(f"artifacts/pseudo/{AFFINITY_BASE}_rw")),
    log:
        f"logs/{shard_name('random_walk')}.log",
    benchmark:
        f"benchmarks/{shard_name('random_walk')}.tsv"
    conda:
        ENV
    threads: rule_threads("random_walk")
    resources:
        **rule_resources("random_walk"),
    params:
        background=lambda w, input: background_flag(
            affinity_background(), input.background
        ),
        walk=flags(AFFINITY["walk"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.random_walk --manifest {input.manifest} --split train --checkpoint {input.model}"
        " --cams-dir {input.cams} {params.background} --out-dir {output.labels} {params.walk} {params.shard}"
        " --threads {threads} 2> {log}"
