# c2am-wsss: weakly supervised semantic segmentation with C2AM, as a Snakemake DAG.
#   snakemake --cores 8 results/voc_miou.txt          (default: the embedded dataset, on a CPU)
#   snakemake --cores 8 --configfile config/voc2012.yaml results/voc_miou.txt
# Each rule calls one stage module of the c2am package (python -m c2am.stages.<rule>).

import sys


# The default config sits beside this file, so the workflow also runs from another working directory (-d).
configfile: workflow.source_path("config/config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Per-image stages run as SHARDS jobs each (config `shards`; when > 1, `--set-scatter shards=N` changes the count).
scattergather:
    shards=SHARDS,


wildcard_constraints:
    scatteritem=r"\d+-of-\d+",


include: "workflow/rules/dataset.smk"
include: "workflow/rules/c2am.smk"
include: "workflow/rules/saliency.smk"
include: "workflow/rules/pseudo.smk"
include: "workflow/rules/affinity.smk"
include: "workflow/rules/deeplab.smk"
include: "workflow/rules/wsol.smk"


if SHARDS > 1:

    include: "workflow/rules/shards.smk"


include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/sweep.smk"


# Every product, and the scores the data allows (default_targets, workflow/rules/common.smk).
rule all:
    default_target: True
    input:
        default_targets(),
        rules.visualize.output,


# Everything of the WSOL half (workflow/rules/wsol.smk): scores, reports and the figure
# (snakemake --configfile config/wsol.yaml wsol; snakemake --configfile config/wsol.yaml --report report.html wsol).
rule wsol:
    input:
        "results/wsol.txt",
        "results/wsol_pseudo_boxes.txt",
        "results/wsol_classifier.txt",
        "results/figures/wsol_boxes.png",
        "results/figures/wsol_failures.png",


onsuccess:
    # the c2am package beside this file, whatever env runs Snakemake
    sys.path.insert(0, workflow.basedir)
    from c2am.summary import summarize

    print(summarize("."))


onerror:
    # A stage's one clear line ("error: ...") is in its log, which Snakemake only names: show each failed job's
    # log tail last on the terminal. `scheduler.failed` holds the jobs that failed after their last retry.
    sys.path.insert(0, workflow.basedir)
    from c2am.hooks import print_failed_logs

    print_failed_logs(getattr(getattr(workflow, "scheduler", None), "failed", ()))


# A run killed by kill -9 leaves Snakemake's lock behind: remove it when no other run of this workflow is live
# in this folder, which an OS lock held from here to the end of the run tells (c2am/hooks.py). Main process
# only: the job processes that Snakemake starts (on cluster nodes too) run inside a live run.
if workflow.is_main_process:
    sys.path.insert(0, workflow.basedir)
    from c2am.hooks import claim

    claim()
