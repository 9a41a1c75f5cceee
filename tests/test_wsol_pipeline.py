"""The WSOL DAG for real on a tiny config (the embedded WSOL data, 64 px, one epoch per network), and the rule
that matters most: the test split never enters training."""

import json
import re

import pytest
import yaml

from c2am.artifacts import load_boxes
from c2am.data.voc import Manifest
from c2am.io import load_checkpoint
from c2am.summary import summarize
from tests import configs
from tests.conftest import ROOT, job_counts, snakemake, stage_commands

TRAINING_STAGES = {"train_c2am", "train_classifier", "train_localizer"}


def wsol_tiny(config: dict) -> None:
    """The WSOL tiny config: 40 + 20 images of 64 px, 4 classes, one epoch per network, one scale, a coarse grid."""
    wsol = config["wsol"]
    wsol["dataset"].update(num_classes=4, val_fraction=0.25, synthetic={"n_train": 40, "n_test": 20, "image_size": 64})
    wsol["localizer"]["train"].update(epochs=1, batch_size=8, size=64)
    wsol["eval"]["cam_curve_interval"] = 0.05
    config["c2am"]["train"].update(epochs=1, batch_size=8, resize=64, crop=56)
    config["c2am"]["infer"]["scales"] = [1.0]
    config["classifier"]["train"].update(epochs=1, batch_size=8, crop=64)


@pytest.fixture(scope="module")
def wsol_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wsol")
    config = configs.merged("wsol.yaml")  # as Snakemake merges it: key by key
    wsol_tiny(config)
    path = work / "tiny_wsol.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "2", "--configfile", str(path), "--", "wsol", cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    return work, path


def test_scores_and_artifacts(wsol_run):
    work, _ = wsol_run
    lines = (work / "results/wsol.txt").read_text().splitlines()
    assert re.fullmatch(r"gt_known_loc: [01]\.\d{4}", lines[0])
    keys = [line.split(":")[0] for line in lines]
    for key in ("top1_loc", "top5_loc", "top1_cls", "top5_cls", "maxboxacc_v2", "c2am_gt_known_loc",
                "c2am_maxboxacc_v2", "c2am_maxboxacc_v2_oracle"):
        assert key in keys, key
    assert "ORACLE" in next(line for line in lines if line.startswith("c2am_maxboxacc_v2_oracle"))
    result = json.loads((work / "results/wsol.json").read_text())
    assert set(result["localizer"]["box_acc"]) == {"0.3", "0.5", "0.7"}
    assert result["box_threshold"]["method"] == "val" and result["box_threshold"]["split"] == "val"
    for source in ("localizer", "c2am"):
        s = result[source]
        assert 0 <= s["top1_loc"] <= s["gt_known_loc"] <= 1 and s["top1_loc"] <= s["top5_loc"]
        assert s["images"] == 20
    assert re.match(r"gt_known_loc: [01]\.\d{4}", (work / "results/wsol_pseudo_boxes.txt").read_text())
    for figure in ("wsol_boxes.png", "wsol_failures.png"):
        assert (work / "results/figures" / figure).stat().st_size > 1000
    assert {p.stem for p in (work / "benchmarks").glob("*.tsv")} >= {
        "prepare_wsol", "wsol_train_c2am", "train_localizer", "infer_localizer", "eval_wsol"}
    summary = summarize(work)  # what the run printed at its end: the WSOL scores, no empty segmentation lines
    assert re.search(r"localizer: GT-known / top-1 / top-5 loc\s+\d+\.\d / \d+\.\d / \d+\.\d", summary)
    assert "Pseudo masks" not in summary and "train_localizer" in summary


def test_the_test_split_never_enters_training(wsol_run):
    work, config = wsol_run
    manifest = Manifest.load(work / "artifacts/wsol/dataset/manifest.json")
    train, val, test = (set(manifest.ids(s)) for s in ("train", "val", "test"))
    assert len(train) == 28 and len(val) == 12 and len(test) == 20  # val: round(0.25 * 10) per class
    assert not train & test and not val & test and not train & val  # disjoint ids
    # every training job reads the train split only (and the classifier scores val), never test
    result = snakemake("-n", "-p", "--forceall", "--configfile", str(config), "--", "wsol", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    trained = set()
    for stage, argv in stage_commands(result.stdout):
        line = " ".join(argv)
        if stage in TRAINING_STAGES:
            trained.add(stage)
            splits = [argv[i + 1] for i, a in enumerate(argv) if a in ("--split", "--val-split")]
            assert splits and set(splits) <= {"train", "val"} and splits[0] == "train", line
    assert trained == TRAINING_STAGES
    # what the localizer learnt from: pseudo boxes of train images only; every checkpoint says train
    assert set(load_boxes(work / "artifacts/wsol/c2am/boxes_train.json")) == train
    for ckpt, kind in (("c2am", "c2am"), ("classifier", "classifier"), ("localizer", "localizer")):
        meta = load_checkpoint(work / f"artifacts/wsol/{ckpt}/model.pt", kind=kind)["meta"]
        assert meta["split"] == "train", ckpt
    assert load_checkpoint(work / "artifacts/wsol/localizer/model.pt", kind="localizer")["meta"]["images"] == 28


def dry_run_jobs(stdout: str) -> list[tuple[str, list[str], list[str], str]]:
    """(rule, inputs, outputs, shell command) of each job a ``snakemake -n -p`` run listed."""
    jobs = []
    for block in stdout.split("\nrule ")[1:]:
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:] if ": " in line)
        files = [[f for f in fields.get(key, "").split(", ") if f] for key in ("input", "output")]
        jobs.append((block.split(":", 1)[0], *files, fields.get("Shell command", "")))
    return jobs


# Stages that may touch what comes from the test split: the inference on it, the boxes cut from its maps at the
# threshold chosen on val, and the scoring and figures of eval_wsol / wsol_figures (and the target `wsol`).
TEST_READERS = {"wsol_infer_c2am", "infer_classes", "infer_localizer", "test_boxes", "eval_wsol", "wsol_figures",
                "wsol"}


def test_nothing_is_chosen_or_trained_on_what_the_test_split_gives(wsol_run):
    """Follow the DAG from the test split's files, the GT file of every split (gt.json, which holds the test boxes)
    and what every job that reads the test images (``--split test``) writes: they and everything made from them
    reach only the test inference, eval_wsol and the figures; no training job and no threshold choice
    (box_threshold on val, pseudo_boxes on train, each with its own split's GT file) ever has one as input."""
    work, config = wsol_run
    result = snakemake("-n", "-p", "--forceall", "--configfile", str(config), "--", "wsol", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = dry_run_jobs(result.stdout)
    assert {"box_threshold", "pseudo_boxes", "train_localizer", "eval_wsol"} <= {rule for rule, *_ in jobs}
    tainted = {f for rule, _, outputs, cmd in jobs if "--split test" in cmd for f in outputs}
    tainted.add("artifacts/wsol/dataset/gt.json")
    inputs = {rule: set(ins) for rule, ins, _, _ in jobs}
    assert "artifacts/wsol/dataset/gt_val.json" in inputs["box_threshold"]
    assert "artifacts/wsol/dataset/gt_train.json" in inputs["pseudo_boxes"]
    assert "artifacts/wsol/c2am/maps/test" in tainted and "artifacts/wsol/localizer/boxes_test.json" in tainted
    readers = set()
    for _ in jobs:  # to a fixed point: what is made from a tainted file is tainted
        for rule, inputs, outputs, _cmd in jobs:
            if tainted & set(inputs):
                readers.add(rule)
                tainted |= set(outputs)
    assert readers and readers <= TEST_READERS, readers - TEST_READERS
    assert "eval_wsol" in readers and "box_threshold" not in readers and "train_localizer" not in readers


def test_second_run_does_nothing_and_the_report_has_a_wsol_section(wsol_run):
    work, config = wsol_run
    result = snakemake("-n", "--configfile", str(config), "--", "wsol", cwd=work)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    result = snakemake("--configfile", str(config), "--report", "wsol.html", "--", "wsol", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (work / "wsol.html").read_text()
    assert "7. WSOL" in html and "wsol_boxes.png" in html and "wsol_failures.png" in html


def test_a_changed_localizer_setting_reruns_only_the_localizer(wsol_run):
    work, config = wsol_run
    changed = yaml.safe_load(config.read_text())
    changed["wsol"]["localizer"]["train"]["lr"] = 0.02
    path = work / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    result = snakemake("-n", "--configfile", str(path), "--", "wsol", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(job_counts(result.stdout)) == {"train_localizer", "infer_localizer", "eval_wsol", "wsol_figures", "wsol"}
