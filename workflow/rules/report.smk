# Figures for the Snakemake report (snakemake --report report.html): stage outputs on a seeded sample of
# images, training curves, the tau sweep and per-class IoU. Needs the whole DAG (DeepLab on deeplab.labels).
FIGURES = "results/figures"
FINAL_LABELS = config["deeplab"]["labels"]
# The pseudo-label columns of the train grid: the baseline, the official chain (cue, saliency), the robust rule, the walk.
GRID_VARIANTS = [
    "cam_fixed_tau",
    "cam_cues_crf",
    "cam_sal_crf",
    "cam_sal_crf_robust",
    f"{AFFINITY_BASE}_rw",
]


rule visualize:
    input:
        **OPTIONAL_SCORES,
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
        cues="artifacts/c2am/cues",
        boxes="artifacts/c2am/boxes.json",
        cams="artifacts/classifier/cams",
        saliency="artifacts/saliency/maps",
        labels=expand("artifacts/pseudo/{variant}", variant=GRID_VARIANTS),
        pred=f"artifacts/deeplab/{FINAL_LABELS}/pred_val",
        log_c2am="artifacts/c2am/train_log.csv",
        log_classifier="artifacts/classifier/train_log.csv",
        log_deeplab=f"artifacts/deeplab/{FINAL_LABELS}/train_log.csv",
        log_saliency="artifacts/saliency/train_log.csv",
        c2am_boxes="results/c2am_boxes.txt",
        classifier="results/classifier.txt",
    output:
        grid_train=report(
            f"{FIGURES}/grid_train.png",
            caption="../report/grid_train.rst",
            category="3. Pseudo labels",
        ),
        tau=report(
            f"{FIGURES}/tau_sweep.png",
            caption="../report/tau_sweep.rst",
            category="3. Pseudo labels",
        ),
        iou_pseudo=report(
            f"{FIGURES}/iou_pseudo.png",
            caption="../report/iou_pseudo.rst",
            category="3. Pseudo labels",
        ),
        boxes=report(
            f"{FIGURES}/boxes.png", caption="../report/boxes.rst", category="1. C2AM"
        ),
        grid_val=report(
            f"{FIGURES}/grid_val.png",
            caption="../report/grid_val.rst",
            category="4. DeepLab",
        ),
        iou_val=report(
            f"{FIGURES}/iou_val.png",
            caption="../report/iou_val.rst",
            category="4. DeepLab",
        ),
        tables=report(
            f"{FIGURES}/metrics.html",
            caption="../report/metrics.rst",
            category="0. Metrics",
        ),
        loss=report(
            f"{FIGURES}/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="5. Training",
        ),
    log:
        "logs/visualize.log",
    benchmark:
        "benchmarks/visualize.tsv"
    conda:
        ENV
    threads: rule_threads("visualize")
    resources:
        **rule_resources("visualize"),
    params:
        seed=SEED,
        scores=score_flags,
        variants=" ".join(f"--variant {v}=artifacts/pseudo/{v}" for v in GRID_VARIANTS),
    shell:
        "python -m c2am.stages.visualize --manifest {input.manifest} --maps-dir {input.maps} --cues-dir {input.cues}"
        " --c2am-boxes {input.boxes} --cams-dir {input.cams} --saliency-dir {input.saliency}"
        " {params.variants} --pred-dir {input.pred}"
        " --train-log c2am={input.log_c2am} --train-log classifier={input.log_classifier}"
        " --train-log saliency={input.log_saliency} --train-log deeplab={input.log_deeplab}"
        " {params.scores} --out-tables {output.tables}"
        " --out-grid-train {output.grid_train} --out-grid-val {output.grid_val} --out-boxes {output.boxes}"
        " --out-loss {output.loss} --out-tau {output.tau} --out-iou-pseudo {output.iou_pseudo}"
        " --out-iou-val {output.iou_val} --seed {params.seed} 2> {log}"
