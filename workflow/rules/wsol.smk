# Weakly supervised object localisation (WSOL), the other half of the paper (docs/method.md §10). Target:
#   snakemake --cores 8 --configfile config/wsol.yaml -- results/wsol.txt      (or the `wsol` rule, + figure)
# C2AM on the train split (no labels) -> maps -> one box threshold (held-out val) -> pseudo boxes on train
# -> a box regressor (localizer) -> boxes on test; a classifier (the multi-label one, on one-hot labels) gives
# the classes. The C2AM and classifier stages are the WSSS ones, run with the `c2am` / `classifier` sections;
# the test split is read by inference and scoring rules only.
include: "wsol_common.smk"


rule prepare_wsol:
    output:
        manifest=WSOL_MANIFEST,
        gt=WSOL_GT,
        gt_train=WSOL_SPLIT_GT["train"],
        gt_val=WSOL_SPLIT_GT["val"],
    log:
        "logs/prepare_wsol.log",
    benchmark:
        "benchmarks/prepare_wsol.tsv"
    conda:
        ENV
    threads: rule_threads("prepare_wsol")
    resources:
        **rule_resources("prepare_wsol"),
    params:
        seed=SEED,
        data=flags(WSOL_DATA, exclude=("synthetic", "metadata")),
        metadata=(
            flag("metadata", WSOL_DATA["metadata"])
            if WSOL_DATA["kind"] == "wsolmeta"
            else ""
        ),
        synthetic=(
            flags(WSOL_DATA["synthetic"]) if WSOL_DATA["kind"] == "synthetic" else ""
        ),
    shell:
        "python -m c2am.stages.prepare_wsol {params.data} {params.metadata} {params.synthetic} --seed {params.seed}"
        " --out-manifest {output.manifest} --out-gt {output.gt} --out-gt-train {output.gt_train}"
        " --out-gt-val {output.gt_val} 2> {log}"


# C2AM and its maps are the WSSS rules (workflow/rules/c2am.smk) on the WSOL manifest; val and test maps too.
use rule train_c2am as wsol_train_c2am with:
    input:
        manifest=WSOL_MANIFEST,
    output:
        model="artifacts/wsol/c2am/model.pt",
        log_csv="artifacts/wsol/c2am/train_log.csv",
    log:
        "logs/wsol_train_c2am.log",
    benchmark:
        "benchmarks/wsol_train_c2am.tsv"
    threads: rule_threads("wsol_train_c2am")
    resources:
        **rule_resources("wsol_train_c2am"),


use rule infer_c2am as wsol_infer_c2am with:
    input:
        manifest=WSOL_MANIFEST,
        model="artifacts/wsol/c2am/model.pt",
    output:
        maps=directory("artifacts/wsol/c2am/maps/{split}"),
    log:
        "logs/wsol_infer_c2am_{split}.log",
    benchmark:
        "benchmarks/wsol_infer_c2am_{split}.tsv"
    wildcard_constraints:
        split="train|val|test",
    threads: rule_threads("wsol_infer_c2am")
    resources:
        **rule_resources("wsol_infer_c2am"),
    params:
        split="{split}",
        shard="",


# One map threshold for every class-agnostic box: chosen on the held-out val split (threshold: val), never on test.
rule box_threshold:
    input:
        unpack(wsol_threshold_inputs),
        manifest=WSOL_MANIFEST,
    output:
        "artifacts/wsol/c2am/box_threshold.json",
    log:
        "logs/box_threshold.log",
    benchmark:
        "benchmarks/box_threshold.tsv"
    conda:
        ENV
    threads: rule_threads("box_threshold")
    resources:
        **rule_resources("box_threshold"),
    params:
        threshold=flags(WSOL["boxes"]),
        grid=flags(WSOL["eval"], exclude=("iou_thresholds",)),
        inputs=wsol_threshold_flags,
    shell:
        "python -m c2am.stages.box_threshold --manifest {input.manifest} {params.threshold} {params.grid}"
        " {params.inputs} --out {output} --threads {threads} 2> {log}"


# Pseudo boxes of the train split (what the localizer learns from); the report scores them against the
# train split's GT boxes, for information only (nothing trains on it).
rule pseudo_boxes:
    input:
        manifest=WSOL_MANIFEST,
        maps="artifacts/wsol/c2am/maps/train",
        threshold="artifacts/wsol/c2am/box_threshold.json",
        gt=WSOL_SPLIT_GT["train"],
    output:
        boxes="artifacts/wsol/c2am/boxes_train.json",
        report=report(
            "results/wsol_pseudo_boxes.txt",
            caption="../report/score_wsol_pseudo_boxes.rst",
            category="7. WSOL",
        ),
    log:
        "logs/pseudo_boxes.log",
    benchmark:
        "benchmarks/pseudo_boxes.tsv"
    conda:
        ENV
    threads: rule_threads("pseudo_boxes")
    resources:
        **rule_resources("pseudo_boxes"),
    params:
        split="train",
        report=map_boxes_report_flags,
    shell:
        "python -m c2am.stages.map_boxes --manifest {input.manifest} --split {params.split} --maps-dir {input.maps}"
        " --threshold-json {input.threshold} --out {output.boxes} {params.report} --threads {threads} 2> {log}"


# The C2AM boxes of the test split, scored beside the localizer's: the same rule, without the GT report.
use rule pseudo_boxes as test_boxes with:
    input:
        manifest=WSOL_MANIFEST,
        maps="artifacts/wsol/c2am/maps/test",
        threshold="artifacts/wsol/c2am/box_threshold.json",
    output:
        boxes="artifacts/wsol/c2am/boxes_test.json",
    log:
        "logs/test_boxes.log",
    benchmark:
        "benchmarks/test_boxes.tsv"
    threads: rule_threads("test_boxes")
    resources:
        **rule_resources("test_boxes"),
    params:
        split="test",


rule train_localizer:
    input:
        manifest=WSOL_MANIFEST,
        boxes="artifacts/wsol/c2am/boxes_train.json",
    output:
        model="artifacts/wsol/localizer/model.pt",
        log_csv="artifacts/wsol/localizer/train_log.csv",
    log:
        "logs/train_localizer.log",
    benchmark:
        "benchmarks/train_localizer.tsv"
    conda:
        ENV
    threads: rule_threads("train_localizer")
    resources:
        **rule_resources("train_localizer"),
    params:
        seed=SEED,
        net=flags(WSOL["localizer"], exclude=("train", "infer")),
        train=flags(WSOL["localizer"]["train"]),
    shell:
        "python -m c2am.stages.train_localizer --manifest {input.manifest} --split train --boxes {input.boxes}"
        " --out {output.model} --log-csv {output.log_csv} {params.net} {params.train}"
        " --seed {params.seed} --threads {threads} 2> {log}"


rule infer_localizer:
    input:
        manifest=WSOL_MANIFEST,
        model="artifacts/wsol/localizer/model.pt",
    output:
        "artifacts/wsol/localizer/boxes_test.json",
    log:
        "logs/infer_localizer.log",
    benchmark:
        "benchmarks/infer_localizer.tsv"
    conda:
        ENV
    threads: rule_threads("infer_localizer")
    resources:
        **rule_resources("infer_localizer"),
    params:
        infer=flags(WSOL["localizer"]["infer"]),
    shell:
        "python -m c2am.stages.infer_localizer --manifest {input.manifest} --split test"
        " --checkpoint {input.model} --out {output} {params.infer} --threads {threads} 2> {log}"


# The classifier of the WSSS half (workflow/rules/pseudo.smk), on one-hot labels; scored on the held-out val
# split after training.
use rule train_classifier as wsol_train_classifier with:
    input:
        manifest=WSOL_MANIFEST,
    output:
        model="artifacts/wsol/classifier/model.pt",
        log_csv="artifacts/wsol/classifier/train_log.csv",
        report=report(
            "results/wsol_classifier.txt",
            caption="../report/score_wsol_classifier.rst",
            category="7. WSOL",
        ),
    log:
        "logs/wsol_train_classifier.log",
    benchmark:
        "benchmarks/wsol_train_classifier.tsv"
    threads: rule_threads("wsol_train_classifier")
    resources:
        **rule_resources("wsol_train_classifier"),


rule infer_classes:
    input:
        manifest=WSOL_MANIFEST,
        model="artifacts/wsol/classifier/model.pt",
    output:
        "artifacts/wsol/classifier/scores_test.json",
    log:
        "logs/infer_classes.log",
    benchmark:
        "benchmarks/infer_classes.tsv"
    conda:
        ENV
    threads: rule_threads("infer_classes")
    resources:
        **rule_resources("infer_classes"),
    params:
        infer=flags(config["classifier"]["infer"], exclude=("scales",)),
    shell:
        "python -m c2am.stages.infer_classes --manifest {input.manifest} --split test"
        " --checkpoint {input.model} --out {output} {params.infer} --threads {threads} 2> {log}"


rule eval_wsol:
    input:
        manifest=WSOL_MANIFEST,
        gt=WSOL_GT,
        localizer="artifacts/wsol/localizer/boxes_test.json",
        c2am="artifacts/wsol/c2am/boxes_test.json",
        threshold="artifacts/wsol/c2am/box_threshold.json",
        scores="artifacts/wsol/classifier/scores_test.json",
        maps="artifacts/wsol/c2am/maps/test",
        val_maps="artifacts/wsol/c2am/maps/val",
    output:
        txt=report(
            "results/wsol.txt",
            caption="../report/score_wsol.rst",
            category="7. WSOL",
        ),
        json="results/wsol.json",
    log:
        "logs/eval_wsol.log",
    benchmark:
        "benchmarks/eval_wsol.tsv"
    conda:
        ENV
    threads: rule_threads("eval_wsol")
    resources:
        **rule_resources("eval_wsol"),
    params:
        eval=flags(WSOL["eval"]),
    shell:
        "python -m c2am.stages.eval_wsol --manifest {input.manifest} --gt {input.gt} --split test"
        " --held-out-split val --localizer-boxes {input.localizer} --c2am-boxes {input.c2am}"
        " --threshold-json {input.threshold} --class-scores {input.scores} --maps-dir {input.maps}"
        " --held-out-maps {input.val_maps} {params.eval} --out-txt {output.txt} --out-json {output.json}"
        " --threads {threads} 2> {log}"


rule wsol_figures:
    input:
        manifest=WSOL_MANIFEST,
        gt=WSOL_GT,
        localizer="artifacts/wsol/localizer/boxes_test.json",
        c2am="artifacts/wsol/c2am/boxes_test.json",
        scores="artifacts/wsol/classifier/scores_test.json",
    output:
        sample=report(
            "results/figures/wsol_boxes.png",
            caption="../report/wsol_boxes.rst",
            category="7. WSOL",
        ),
        failures=report(
            "results/figures/wsol_failures.png",
            caption="../report/wsol_failures.rst",
            category="7. WSOL",
        ),
    log:
        "logs/wsol_figures.log",
    benchmark:
        "benchmarks/wsol_figures.tsv"
    conda:
        ENV
    threads: rule_threads("wsol_figures")
    resources:
        **rule_resources("wsol_figures"),
    params:
        seed=SEED,
    shell:
        "python -m c2am.stages.wsol_figures --manifest {input.manifest} --gt {input.gt} --split test"
        " --localizer-boxes {input.localizer} --c2am-boxes {input.c2am} --class-scores {input.scores}"
        " --seed {params.seed} --out {output.sample} --failures-out {output.failures} 2> {log}"
