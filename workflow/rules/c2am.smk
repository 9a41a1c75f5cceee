# Stages 1-3: C2AM on unlabelled images -> class-agnostic maps -> background cues (+ boxes, quality report).
C2AM = config["c2am"]


rule train_c2am:
    input:
        manifest=MANIFEST,
    output:
        model="artifacts/c2am/model.pt",
        log_csv="artifacts/c2am/train_log.csv",
    log:
        "logs/train_c2am.log",
    benchmark:
        "benchmarks/train_c2am.tsv"
    conda:
        ENV
    threads: rule_threads("train_c2am")
    resources:
        **rule_resources("train_c2am"),
    params:
        seed=SEED,
        net=flags(C2AM, exclude=("train", "infer", "cues", "boxes")),
        train=flags(C2AM["train"]),
    shell:
        "python -m c2am.stages.train_c2am --manifest {input.manifest} --split train"
        " --out {output.model} --log-csv {output.log_csv} {params.net} {params.train}"
        " --seed {params.seed} --threads {threads} 2> {log}"


rule infer_c2am:
    input:
        manifest=MANIFEST,
        model="artifacts/c2am/model.pt",
    output:
        maps=directory(sharded("artifacts/c2am/maps")),
    log:
        f"logs/{shard_name('infer_c2am')}.log",
    benchmark:
        f"benchmarks/{shard_name('infer_c2am')}.tsv"
    conda:
        ENV
    threads: rule_threads("infer_c2am")
    resources:
        **rule_resources("infer_c2am"),
    params:
        split="train",
        infer=flags(C2AM["infer"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.infer_c2am --manifest {input.manifest} --split {params.split}"
        " --checkpoint {input.model} --out-dir {output.maps} {params.infer} {params.shard} --threads {threads} 2> {log}"


# One threshold over ALL maps of the split, before the per-image (possibly sharded) CRF.
rule cue_threshold:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
    output:
        "artifacts/c2am/cue_threshold.json",
    log:
        "logs/cue_threshold.log",
    benchmark:
        "benchmarks/cue_threshold.tsv"
    conda:
        ENV
    threads: rule_threads("cue_threshold")
    resources:
        **rule_resources("cue_threshold"),
    params:
        threshold=flags({"threshold": C2AM["cues"]["threshold"]}),
    shell:
        "python -m c2am.stages.cue_threshold --manifest {input.manifest} --split train --maps-dir {input.maps}"
        " {params.threshold} --out {output} --threads {threads} 2> {log}"


rule extract_cues:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
        threshold="artifacts/c2am/cue_threshold.json",
    output:
        cues=directory(sharded("artifacts/c2am/cues")),
    log:
        f"logs/{shard_name('extract_cues')}.log",
    benchmark:
        f"benchmarks/{shard_name('extract_cues')}.tsv"
    conda:
        ENV
    threads: rule_threads("extract_cues")
    resources:
        **rule_resources("extract_cues"),
    params:
        crf=flags(C2AM["cues"]["crf"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.extract_cues --manifest {input.manifest} --split train"
        " --maps-dir {input.maps} --threshold-json {input.threshold} --out-dir {output.cues}"
        " {params.crf} {params.shard} --threads {threads} 2> {log}"


rule eval_c2am:
    input:
        gt=needs_gt("train", "results/c2am_maps.txt"),
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
        cues="artifacts/c2am/cues",
        threshold="artifacts/c2am/cue_threshold.json",
    output:
        report(
            "results/c2am_maps.txt",
            caption="../report/score_c2am_maps.rst",
            category="1. C2AM",
        ),
    log:
        "logs/eval_c2am.log",
    benchmark:
        "benchmarks/eval_c2am.tsv"
    conda:
        ENV
    threads: rule_threads("eval_c2am")
    resources:
        **rule_resources("eval_c2am"),
    params:
        cues=flags(C2AM["cues"], exclude=("threshold",)),
    shell:
        "python -m c2am.stages.eval_c2am --manifest {input.manifest} --split train"
        " --maps-dir {input.maps} --cues-dir {input.cues} --threshold-json {input.threshold}"
        " {params.cues} --out-txt {output} --threads {threads} 2> {log}"


rule c2am_boxes:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
    output:
        boxes="artifacts/c2am/boxes.json",
        report=report(
            "results/c2am_boxes.txt",
            caption="../report/score_c2am_boxes.rst",
            category="1. C2AM",
        ),
    log:
        "logs/c2am_boxes.log",
    benchmark:
        "benchmarks/c2am_boxes.tsv"
    conda:
        ENV
    threads: rule_threads("c2am_boxes")
    resources:
        **rule_resources("c2am_boxes"),
    params:
        boxes=flags(C2AM["boxes"]),
    shell:
        "python -m c2am.stages.c2am_boxes --manifest {input.manifest} --split train"
        " --maps-dir {input.maps} {params.boxes} --out {output.boxes} --out-txt {output.report} 2> {log}"
