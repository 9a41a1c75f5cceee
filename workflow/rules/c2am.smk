# Stages 1-3: C2AM on unlabelled images -> class-agnostic maps -> background cues (+ boxes, quality report).
C2AM = config["c2am"]


rule train_c2am:
    input:
        manifest=MANIFEST,
    output:
        model="artifacts/c2am/model.pt",
        log_csv="artifacts/c2am/train_log.csv",
    params:
        seed=SEED,
        net=flags(C2AM, exclude=("train", "infer", "cues", "boxes")),
        train=flags(C2AM["train"]),
    log:
        "logs/train_c2am.log",
    benchmark:
        "benchmarks/train_c2am.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m c2am.stages.train_c2am --manifest {input.manifest} --split train"
        " --out {output.model} --log-csv {output.log_csv} {params.net} {params.train}"
        " --seed {params.seed} --threads {threads} 2> {log}"


rule infer_c2am:
    input:
        manifest=MANIFEST,
        model="artifacts/c2am/model.pt",
    output:
        maps=directory("artifacts/c2am/maps"),
    params:
        infer=flags(C2AM["infer"]),
    log:
        "logs/infer_c2am.log",
    benchmark:
        "benchmarks/infer_c2am.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m c2am.stages.infer_c2am --manifest {input.manifest} --split train"
        " --checkpoint {input.model} --out-dir {output.maps} {params.infer} --threads {threads} 2> {log}"


rule extract_cues:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
    output:
        cues=directory("artifacts/c2am/cues"),
        threshold="artifacts/c2am/cue_threshold.json",
    params:
        cues=flags(C2AM["cues"], exclude=("fixed_threshold",)),
    log:
        "logs/extract_cues.log",
    benchmark:
        "benchmarks/extract_cues.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m c2am.stages.extract_cues --manifest {input.manifest} --split train"
        " --maps-dir {input.maps} --out-dir {output.cues} --out-threshold {output.threshold}"
        " {params.cues} --threads {threads} 2> {log}"


rule eval_c2am:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
        cues="artifacts/c2am/cues",
        threshold="artifacts/c2am/cue_threshold.json",
    output:
        report("results/c2am_maps.txt", caption="../report/score_c2am_maps.rst", category="1. C2AM"),
    params:
        crf=flags(C2AM["cues"]["crf"]),
        fixed=C2AM["cues"]["fixed_threshold"],
    log:
        "logs/eval_c2am.log",
    benchmark:
        "benchmarks/eval_c2am.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m c2am.stages.eval_c2am --manifest {input.manifest} --split train"
        " --maps-dir {input.maps} --cues-dir {input.cues} --threshold-json {input.threshold}"
        " --fixed-threshold {params.fixed} {params.crf} --out {output} --threads {threads} 2> {log}"


rule c2am_boxes:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
    output:
        boxes="artifacts/c2am/boxes.json",
        report=report("results/c2am_boxes.txt", caption="../report/score_c2am_boxes.rst", category="1. C2AM"),
    params:
        boxes=flags(C2AM["boxes"]),
    log:
        "logs/c2am_boxes.log",
    benchmark:
        "benchmarks/c2am_boxes.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m c2am.stages.c2am_boxes --manifest {input.manifest} --split train"
        " --maps-dir {input.maps} {params.boxes} --out-json {output.boxes} --out-txt {output.report} 2> {log}"
