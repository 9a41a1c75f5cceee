"""The visual report on the tiny whole-DAG run: figures, `snakemake --report` HTML, and the run summary.

Uses the session's one tiny DAG run (``tiny_dag``, tests/conftest.py). Building targets and writing report.html
write into the run's folder, so this module works on a copy of it (``report_run``), not on the shared run.
"""

import re
import shutil

import pytest

from c2am.summary import summarize
from tests.conftest import snakemake

FIGURES = ["grid_train.png", "grid_val.png", "boxes.png", "loss_curves.png", "tau_sweep.png", "iou_pseudo.png",
           "iou_val.png", "metrics.html"]


@pytest.fixture(scope="module")
def report_run(tiny_dag, tmp_path_factory):
    """A copy of the tiny run's folder (file times kept, so Snakemake sees it as up to date) and its config."""
    work, config = tiny_dag
    copy = tmp_path_factory.mktemp("dag_report") / "work"
    shutil.copytree(work, copy, symlinks=True)  # copy2: modification times are kept
    return copy, copy / config.relative_to(work)


def test_report_html_holds_every_figure(report_run):
    work, config = report_run
    targets = [f"results/figures/{name}" for name in FIGURES]
    result = snakemake("--cores", "2", *targets, "--configfile", str(config), cwd=work)  # --configfile takes nargs
    assert result.returncode == 0, result.stderr[-4000:]
    # `all` built the figures, and the copy is up to date: nothing reruns (else this module would redo the DAG)
    assert "Nothing to be done" in result.stdout + result.stderr, result.stderr[-4000:]
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


def test_summary_of_the_tiny_run(tiny_dag):
    work, _ = tiny_dag
    text = summarize(work)
    assert re.search(r"DeepLab on cam_sal_crf_robust\s+\d+\.\d\d", text)
    assert re.search(r"CAM only, best tau 0\.\d\d \(oracle-tuned\)\s+\d+\.\d\d", text)
    timed = re.findall(r"^  (\w+)\s+\d+\.\d$", text, flags=re.M)
    assert {"prepare_dataset", "train_c2am", "train_classifier", "total"} <= set(timed)
    assert timed[0] == "prepare_dataset" and timed[-1] == "total"
