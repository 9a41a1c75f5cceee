# Stages 4-8: classifier -> CAMs -> refinement with the C2AM cues or saliency maps -> label CRF -> pseudo-mask scores.
CLS = config["classifier"]
REFINE = config["refine"]
CRF_LABELS = config["crf_labels"]


rule train_classifier:
    input:
        manifest=MANIFEST,
    output:
        model="artifacts/classifier/model.pt",
        log_csv="artifacts/classifier/train_log.csv",
        report=report(
            "results/classifier.txt",
            caption="../report/score_classifier.rst",
            category="2. Classifier",
        ),
    log:
        "logs/train_classifier.log",
    benchmark:
        "benchmarks/train_classifier.tsv"
    conda:
        ENV
    threads: rule_threads("train_classifier")
    resources:
        **rule_resources("train_classifier"),
    params:
        seed=SEED,
        net=flags(CLS, exclude=("train", "infer")),
        train=flags(CLS["train"]),
    shell:
        "python -m c2am.stages.train_classifier --manifest {input.manifest} --split train --val-split val"
        " --out {output.model} --log-csv {output.log_csv} --out-txt {output.report}"
        " {params.net} {params.train} --seed {params.seed} --threads {threads} 2> {log}"


rule infer_cam:
    input:
        manifest=MANIFEST,
        model="artifacts/classifier/model.pt",
    output:
        cams=directory(sharded("artifacts/classifier/cams")),
    log:
        f"logs/{shard_name('infer_cam')}.log",
    benchmark:
        f"benchmarks/{shard_name('infer_cam')}.tsv"
    conda:
        ENV
    threads: rule_threads("infer_cam")
    resources:
        **rule_resources("infer_cam"),
    params:
        infer=flags(CLS["infer"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.infer_cam --manifest {input.manifest} --split train"
        " --checkpoint {input.model} --out-dir {output.cams} {params.infer} {params.shard} --threads {threads} 2> {log}"


rule refine_cams:
    input:
        manifest=MANIFEST,
        cams="artifacts/classifier/cams",
        background=lambda w: PSEUDO_BACKGROUNDS[w.bg],
    output:
        labels=directory(sharded("artifacts/pseudo/cam_{bg}")),
    log:
        f"logs/{shard_name('refine_cams_{bg}')}.log",
    benchmark:
        f"benchmarks/{shard_name('refine_cams_{bg}')}.tsv"
    wildcard_constraints:
        bg="|".join(PSEUDO_BACKGROUNDS),
    conda:
        ENV
    threads: rule_threads("refine_cams")
    resources:
        **rule_resources("refine_cams"),
    params:
        background=refine_background_flag,
        shard=shard_flag,
    shell:
        "python -m c2am.stages.refine_cams --manifest {input.manifest} --split train --cams-dir {input.cams}"
        " {params.background} --out-dir {output.labels} {params.shard} --threads {threads} 2> {log}"


rule refine_fixed_tau:
    input:
        manifest=MANIFEST,
        cams="artifacts/classifier/cams",
    output:
        labels=directory(sharded("artifacts/pseudo/cam_fixed_tau")),
    log:
        f"logs/{shard_name('refine_fixed_tau')}.log",
    benchmark:
        f"benchmarks/{shard_name('refine_fixed_tau')}.tsv"
    conda:
        ENV
    threads: rule_threads("refine_fixed_tau")
    resources:
        **rule_resources("refine_fixed_tau"),
    params:
        fixed_tau=REFINE["fixed_tau"],
        shard=shard_flag,
    shell:
        "python -m c2am.stages.refine_cams --manifest {input.manifest} --split train --cams-dir {input.cams}"
        " --fixed-tau {params.fixed_tau} --out-dir {output.labels} {params.shard} --threads {threads} 2> {log}"


rule crf_labels:
    input:
        manifest=MANIFEST,
        labels="artifacts/pseudo/{variant}",
    output:
        labels=directory(sharded("artifacts/pseudo/{variant}_crf")),
    log:
        f"logs/{shard_name('crf_labels_{variant}')}.log",
    benchmark:
        f"benchmarks/{shard_name('crf_labels_{variant}')}.tsv"
    wildcard_constraints:
        variant="|".join(PSEUDO_REFINED),
    conda:
        ENV
    threads: rule_threads("crf_labels")
    resources:
        **rule_resources("crf_labels"),
    params:
        crf=flags(CRF_LABELS),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.crf_labels --manifest {input.manifest} --split train"
        " --labels-dir {input.labels} --compare-dir {input.labels} --out-dir {output.labels}"
        " {params.crf} {params.shard} --threads {threads} 2> {log}"


rule robust_labels:
    input:
        manifest=MANIFEST,
        labels="artifacts/pseudo/{variant}",
        cams="artifacts/classifier/cams",
    output:
        labels=directory(sharded("artifacts/pseudo/{variant}_robust")),
    log:
        f"logs/{shard_name('robust_labels_{variant}')}.log",
    benchmark:
        f"benchmarks/{shard_name('robust_labels_{variant}')}.tsv"
    wildcard_constraints:
        variant="|".join(ROBUST_INPUTS),
    conda:
        ENV
    threads: rule_threads("robust_labels")
    resources:
        **rule_resources("robust_labels"),
    params:
        robust=flags(REFINE["robust"]),
        shard=shard_flag,
    shell:
        "python -m c2am.stages.robust_labels --manifest {input.manifest} --split train --labels-dir {input.labels}"
        " --cams-dir {input.cams} --out-dir {output.labels} {params.robust} {params.shard} --threads {threads} 2> {log}"


rule eval_pseudo:
    input:
        gt=needs_gt("pseudo_eval", "results/pseudo_masks.txt"),
        manifest=MANIFEST,
        cams="artifacts/classifier/cams",
        variants=expand("artifacts/pseudo/{variant}", variant=PSEUDO_VARIANTS),
    output:
        txt=report(
            "results/pseudo_masks.txt",
            caption="../report/score_pseudo_masks.rst",
            category="3. Pseudo labels",
        ),
        json="results/pseudo_masks.json",
    log:
        "logs/eval_pseudo.log",
    benchmark:
        "benchmarks/eval_pseudo.tsv"
    conda:
        ENV
    threads: rule_threads("eval_pseudo")
    resources:
        **rule_resources("eval_pseudo"),
    params:
        sweep=" ".join(str(REFINE["tau_sweep"][k]) for k in ("start", "stop", "step")),
        fixed_tau=REFINE["fixed_tau"],
        variants=" ".join(
            f"--variant {v}=artifacts/pseudo/{v}" for v in PSEUDO_VARIANTS
        ),
        distractors=distractor_flag,
    shell:
        "python -m c2am.stages.eval_pseudo --manifest {input.manifest} --split pseudo_eval"
        " --cams-dir {input.cams} --tau-sweep {params.sweep} --fixed-tau {params.fixed_tau}"
        " {params.variants} {params.distractors} --out-txt {output.txt} --out-json {output.json}"
        " --threads {threads} 2> {log}"
