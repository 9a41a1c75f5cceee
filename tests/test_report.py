"""The visual report on the tiny whole-DAG run: figures, `snakemake --report` HTML, and the run summary.

Reuses the module fixture of tests/test_pipeline.py (a second run of the tiny DAG in this module's own temp dir).
"""

import re

from c2am.stages.summary import summarize
from tests.test_pipeline import run  # noqa: F401  (pytest fixture)
from tests.test_workflow import snakemake

FIGURES = ["grid_train.png", "grid_val.png", "boxes.png", "loss_curves.png", "tau_sweep.png", "iou_pseudo.png",
           "iou_val.png", "metrics.html"]


def test_report_html_holds_every_figure(run):  # noqa: F811
    work, config = run
    targets = [f"results/figures/{name}" for name in FIGURES]
    result = snakemake("--cores", "2", *targets, "--configfile", str(config), cwd=work)  # --configfile takes nargs
    assert result.returncode == 0, result.stderr[-4000:]
    for name in FIGURES:
        assert (work / "results/figures" / name).stat().st_size > 1000, name
    result = snakemake("--configfile", str(config), "--report", "report.html", cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    html = (work / "report.html").read_text()
    for name in FIGURES:
        # self-contained: each figure is embedded as a data URI, not linked
        mime = "text/html" if name.endswith(".html") else "image/png"
        assert re.search(rf"data:{mime};charset=utf8;filename={re.escape(name)};base64,", html), name
    for category in ("1. C2AM", "3. Pseudo labels", "4. DeepLab", "5. Training"):
        assert category in html


def test_summary_of_the_tiny_run(run):  # noqa: F811
    work, _ = run
    text = summarize(work)
    assert re.search(r"DeepLab on cam_cues_crf\s+\d+\.\d\d", text)
    assert re.search(r"CAM only, best tau 0\.\d\d \(oracle-tuned\)\s+\d+\.\d\d", text)
    timed = re.findall(r"^  (\w+)\s+\d+\.\d$", text, flags=re.M)
    assert {"prepare_dataset", "train_c2am", "train_classifier", "total"} <= set(timed)
    assert timed[0] == "prepare_dataset" and timed[-1] == "total"
