"""The whole DAG, for real, on a tiny config in a temporary directory (a few dozen 64-px images, one epoch each).

The run is the session fixture ``tiny_dag`` of tests/conftest.py (the expensive part: one to two minutes on 2 cores),
shared with tests/test_report.py; the tests here only read it or dry-run against it.
"""

import json
import re

import numpy as np
import pytest
import yaml

from c2am.data.voc import Manifest
from c2am.io import load_checkpoint, load_label_png, load_npy, load_npz
from c2am.training import resume_state_path
from tests.conftest import ROOT, tiny  # noqa: F401  (re-exported: other test modules import tiny from here)
from tests.test_workflow import STAGE_RULES, job_counts, snakemake, write_config

SCORE_FILES = ["c2am_maps", "c2am_boxes", "classifier", "pseudo_masks", "voc_miou", "fully_supervised_miou"]
PSEUDO_VARIANTS = [f"cam_{bg}{suffix}" for bg in ("cues", "sal") for suffix in ("", "_crf", "_crf_robust")] + [
    "cam_sal_crf_rw", "cam_sal_crf_rw_robust"]  # the random walk on affinity.base (default cam_sal_crf)
CHECKPOINTS = {"artifacts/c2am/model.pt": "c2am", "artifacts/classifier/model.pt": "classifier",
               "artifacts/deeplab/cam_sal_crf_robust/model.pt": "deeplab"}
RESUME_GLOB = "*.resume"  # the name of the per-epoch resume state that training keeps beside its checkpoint


def test_every_artifact_exists_and_every_score_parses(tiny_dag):
    work, _ = tiny_dag
    manifest = Manifest.load(work / "artifacts/dataset/manifest.json")
    train, val = manifest.ids("train"), manifest.ids("val")
    assert len(train) == 24 and len(val) == 8
    for ckpt, kind in CHECKPOINTS.items():
        assert load_checkpoint(work / ckpt, kind=kind)["state_dict"]
        # The pattern names the file training really writes (so the check below can fail) ...
        assert resume_state_path(work / ckpt).match(RESUME_GLOB), resume_state_path(work / ckpt)
        # ... and a finished run removes it.
        assert not resume_state_path(work / ckpt).exists(), "resume state left behind after a finished run"
    assert not sorted(work.rglob(RESUME_GLOB)), "resume state left behind after a finished run"
    assert isinstance(load_checkpoint(work / "artifacts/c2am/model.pt", kind="c2am")["meta"]["inverted"], bool)
    for image_id in train:
        fg = load_npy(work / "artifacts/c2am/maps" / f"{image_id}.npy")
        assert fg.dtype == np.float16 and fg.shape == (64, 64) and 0 <= fg.min() and fg.max() <= 1
        assert set(np.unique(load_label_png(work / "artifacts/c2am/cues" / f"{image_id}.png"))) <= {0, 255}
        cams = load_npz(work / "artifacts/classifier/cams" / f"{image_id}.npz")
        assert cams["cams"].shape[0] == len(cams["classes"]) == len(manifest.labels[image_id])
        for variant in PSEUDO_VARIANTS + ["cam_fixed_tau"]:
            assert load_label_png(work / "artifacts/pseudo" / variant / f"{image_id}.png").shape == (64, 64)
    for image_id in val:
        assert load_label_png(work / "artifacts/deeplab/cam_sal_crf_robust/pred_val" / f"{image_id}.png").shape == (64, 64)

    results = {name: (work / "results" / f"{name}.txt").read_text().splitlines() for name in SCORE_FILES}
    assert re.fullmatch(r"mIoU: \d+\.\d\d", results["voc_miou"][0])
    assert [line.split(":")[0] for line in results["pseudo_masks"]] == ["cam_best_tau", "cam_fixed_tau", *PSEUDO_VARIANTS]
    # the embedded world's distractor masks are scored beside each variant's mIoU
    assert all(re.search(r"\(distractors labelled \d+\.\d %\)$", line) for line in results["pseudo_masks"][2:])
    assert re.fullmatch(r"cam_best_tau: \d+\.\d\d \(tau=0\.\d\d\)", results["pseudo_masks"][0])
    assert re.fullmatch(r"gt_known_loc: [01]\.\d{4}", results["c2am_boxes"][0])
    assert [line.split(":")[0] for line in results["c2am_maps"][:3]] == ["map_fg_iou", "cue_fg_iou", "map_auc"]
    assert re.match(r"mAP: [01]\.\d{4}", results["classifier"][0])
    scores = json.loads((work / "results/voc_miou.json").read_text())
    assert len(scores["confusion_matrix"]) == 7
    assert (work / "logs/train_c2am.log").stat().st_size > 0
    assert {p.stem for p in (work / "benchmarks").glob("*.tsv")} >= {
        "prepare_dataset", "train_c2am", "train_classifier", "evaluate_voc_miou"}


def test_second_run_does_nothing(tiny_dag):
    work, config = tiny_dag
    result = snakemake("-n", "--configfile", str(config), cwd=work)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize("key, value, jobs", [
    # the robust test's floor: its two variants, and the DeepLab that learns from one of them
    ("region_floor", 0.3, {"robust_labels", "eval_pseudo", "train_deeplab", "infer_deeplab", "evaluate",
                           "visualize", "all"}),
    # the CAM-only baseline: only its own labels and the scores (no DeepLab learns from it)
    ("fixed_tau", 0.25, {"refine_fixed_tau", "eval_pseudo", "visualize", "all"}),
])
def test_parameter_change_reruns_that_stage_and_downstream_only(tiny_dag, key, value, jobs):
    work, _ = tiny_dag

    def edit(config):
        tiny(config)
        section = config["refine"]["robust"] if key == "region_floor" else config["refine"]
        section[key] = value

    changed = write_config(work / f"changed_{key}.yaml", edit)
    result = snakemake("-n", "--configfile", str(changed), cwd=work)
    assert result.returncode == 0, result.stderr
    assert set(job_counts(result.stdout)) == jobs


def test_forcerun_reruns_one_stage_and_downstream(tiny_dag):
    work, config = tiny_dag
    result = snakemake("-n", "--configfile", str(config), "--forcerun", "extract_cues", cwd=work)
    jobs = set(job_counts(result.stdout))
    assert "extract_cues" in jobs and "train_c2am" not in jobs and "train_classifier" not in jobs
    assert {"refine_cams", "eval_c2am"} <= jobs


def test_all_stage_rules_ran(tiny_dag):
    work, _ = tiny_dag
    stems = {p.stem for p in (work / "benchmarks").glob("*.tsv")}
    # a rule with wildcards times itself as <rule>_<wildcards>.tsv
    ran = {rule for rule in STAGE_RULES if any(s == rule or s.startswith(rule + "_") for s in stems)}
    assert ran == STAGE_RULES
    assert yaml.safe_load((work / "tiny.yaml").read_text())["dataset"]["synthetic"]["n_train"] == 24
