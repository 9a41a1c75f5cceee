# Stages 4-8: classifier -> CAMs -> refinement with the C2AM cues -> label CRF -> pseudo-mask scores.
CLS = config["classifier"]
REFINE = config["refine"]
CRF_LABELS = config["crf_labels"]


rule train_classifier:
    input:
        manifest=MANIFEST,
    output:
        model="artifacts/classifier/model.pt",
        log_csv="artifacts/classifier/train_log.csv",
        report=report("results/classifier.txt", caption="../report/score_classifier.rst", category="2. Classifier"),
    params:
        seed=SEED,
        net=flags(CLS, exclude=("train", "infer")),
        train=flags(CLS["train"]),
    log:
        "logs/train_classifier.log",
    benchmark:
        "benchmarks/train_classifier.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m c2am.stages.train_classifier --manifest {input.manifest} --split train --val-split val"
        " --out {output.model} --log-csv {output.log_csv} --report {output.report}"
        " {params.net} {params.train} --seed {params.seed} --threads {threads} 2> {log}"


rule infer_cam:
    input:
        manifest=MANIFEST,
        model="artifacts/classifier/model.pt",
    output:
        cams=directory("artifacts/classifier/cams"),
    params:
        infer=flags(CLS["infer"]),
    log:
        "logs/infer_cam.log",
    benchmark:
        "benchmarks/infer_cam.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m c2am.stages.infer_cam --manifest {input.manifest} --split train"
        " --checkpoint {input.model} --out-dir {output.cams} {params.infer} --threads {threads} 2> {log}"


rule refine_cams:
    input:
        manifest=MANIFEST,
        cams="artifacts/classifier/cams",
        cues="artifacts/c2am/cues",
    output:
        cam_cues=directory("artifacts/pseudo/cam_cues"),
        cam_fixed_tau=directory("artifacts/pseudo/cam_fixed_tau"),
    params:
        fixed_tau=REFINE["fixed_tau"],
    log:
        "logs/refine_cams.log",
    benchmark:
        "benchmarks/refine_cams.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m c2am.stages.refine_cams --manifest {input.manifest} --split train"
        " --cams-dir {input.cams} --cues-dir {input.cues} --fixed-tau {params.fixed_tau}"
        " --out-cues-dir {output.cam_cues} --out-tau-dir {output.cam_fixed_tau} --threads {threads} 2> {log}"


rule crf_labels:
    input:
        manifest=MANIFEST,
        labels="artifacts/pseudo/cam_cues",
    output:
        labels=directory("artifacts/pseudo/cam_cues_crf"),
    params:
        crf=flags(CRF_LABELS),
    log:
        "logs/crf_labels.log",
    benchmark:
        "benchmarks/crf_labels.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m c2am.stages.crf_labels --manifest {input.manifest} --split train"
        " --labels-dir {input.labels} --compare-dir {input.labels} --out-dir {output.labels}"
        " {params.crf} --threads {threads} 2> {log}"


rule eval_pseudo:
    input:
        manifest=MANIFEST,
        cams="artifacts/classifier/cams",
        cam_cues="artifacts/pseudo/cam_cues",
        cam_cues_crf="artifacts/pseudo/cam_cues_crf",
    output:
        txt=report("results/pseudo_masks.txt", caption="../report/score_pseudo_masks.rst", category="3. Pseudo labels"),
        json="results/pseudo_masks.json",
    params:
        sweep=" ".join(str(REFINE["tau_sweep"][k]) for k in ("start", "stop", "step")),
        fixed_tau=REFINE["fixed_tau"],
    log:
        "logs/eval_pseudo.log",
    benchmark:
        "benchmarks/eval_pseudo.tsv"
    threads: NET_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m c2am.stages.eval_pseudo --manifest {input.manifest} --split pseudo_eval"
        " --cams-dir {input.cams} --tau-sweep {params.sweep} --fixed-tau {params.fixed_tau}"
        " --variant cam_cues={input.cam_cues} --variant cam_cues_crf={input.cam_cues_crf}"
        " --out-txt {output.txt} --out-json {output.json} --threads {threads} 2> {log}"
