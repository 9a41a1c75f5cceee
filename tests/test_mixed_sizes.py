"""Images of any size and aspect ratio through every stage, with the settings of config/voc2012.yaml.

The whole DAG runs on a fixture of portrait, landscape, square and odd-sided images (tests/mixed_data.py) in each
layout a dataset can come in (voc, folder, coco) with the real-data settings: ResNet-50 C2AM and classifier,
DeepLabV3-ResNet101, 4 inference scales, test-time flip and CRF, weights saved from random initialisation in the
MoCo v2 format (C2AM) and in torchvision's hub cache (``$TORCH_HOME``). Shrunk only in image count (and so the
batch size), crop and epochs. Every map, cue, CAM, pseudo label and prediction must have its image's size.

The folder run has no mask at all: the scoring rules leave the DAG, the summary and the report say "no ground
truth: not scored", and ``predict`` writes one mask and one overlay per new image, each at the image's size.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from c2am.data.voc import Manifest
from c2am.io import load_checkpoint, load_image, load_label_png, load_npy, load_npz
from c2am.summary import NOT_SCORED, summarize
from tests import configs, mixed_data
from tests.conftest import ROOT, job_counts, snakemake

SCORING_RULES = {"eval_c2am", "eval_pseudo", "evaluate"}
BATCH = 4  # the fixture has 8 train images; voc2012.yaml's batches (64 and 16) need thousands


def shrink(config: dict) -> None:
    """config/voc2012.yaml shrunk in image count (batch size), crop and epochs only; scales, flip, CRF, trunks and
    weights stay."""
    for net in ("c2am", "classifier", "saliency", "affinity", "deeplab"):
        config[net]["train"].update(epochs=1, batch_size=BATCH)
    config["c2am"]["train"].update(resize=64, crop=56)
    config["classifier"]["train"]["crop"] = 64
    config["deeplab"]["train"]["crop"] = 64
    config["saliency"]["train"]["crop"] = 64
    config["affinity"]["train"]["crop"] = 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-init ResNet weights as the real configs read them: a MoCo v2 file (FAIR's ``module.encoder_q.``
    keys, MLP head included) and torchvision's ImageNet files in a hub cache. Returns (moco file, TORCH_HOME)."""
    import torch
    import torchvision

    from c2am.models.backbone import torchvision_cache_path

    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    r50 = torchvision.models.resnet50(weights=None).state_dict()
    r101 = torchvision.models.resnet101(weights=None).state_dict()
    for name, state in (("resnet50", r50), ("resnet101", r101)):
        # torchvision_cache_path is <torch hub dir>/checkpoints/<file>: under TORCH_HOME, <TORCH_HOME>/hub
        path = home / "hub" / torchvision_cache_path(name).relative_to(torch.hub.get_dir())
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    moco = {f"module.encoder_q.{k}": v for k, v in r50.items() if not k.startswith("fc.")}
    moco.update({"module.encoder_q.fc.0.weight": torch.randn(2048, 2048) * 0.01,
                 "module.encoder_q.fc.0.bias": torch.zeros(2048),
                 "module.encoder_q.fc.2.weight": torch.randn(128, 2048) * 0.01,
                 "module.encoder_q.fc.2.bias": torch.zeros(128)})
    moco_file = home / "moco_v2_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": moco}, moco_file)
    return moco_file, home


def prepare(work, weights, dataset: dict):
    """The config of a run in ``work``: config/voc2012.yaml (shrunk) on ``dataset``, the MoCo file where it says."""
    config = configs.merged("voc2012.yaml")
    shrink(config)
    config["dataset"] = {**config["dataset"], **dataset, "classes": mixed_data.CLASSES}
    (work / "weights").mkdir(exist_ok=True)
    os.symlink(weights[0], work / "weights" / "moco_v2_800ep_pretrain.pth.tar")
    path = work / "mixed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, weights):
    """The three DAGs (voc, folder, coco), run at the same time (each one job at a time: most of a tiny DAG is a
    chain, so three chains keep 2 cores busier than one). kind -> (work dir, sizes, stdout + stderr, config)."""
    coco = configs.merged("coco2014.yaml")["dataset"]
    folder_dataset = {"kind": "folder", "root": "data/mine", "mask_dir": "masks",
                      "splits": {"train": "train", "pseudo_eval": "train", "val": "val"}}
    plans = {
        "voc": (lambda w: mixed_data.write_voc(w / "data" / "VOCdevkit" / "VOC2012"), {"kind": "voc"}),
        "folder": (lambda w: mixed_data.write_folder(w / "data" / "mine"), folder_dataset),
        "coco": (lambda w: mixed_data.write_coco(w / "data" / "coco"),
                 {k: coco[k] for k in ("kind", "root", "splits", "coco")}),
    }
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               TORCH_HOME=str(weights[1]))
    started = {}
    for kind, (write, dataset) in plans.items():
        work = tmp_path_factory.mktemp(f"mixed_{kind}")
        sizes = write(work)
        if kind == "folder":
            sizes = {"dataset": sizes, "predict": mixed_data.write_predict(work / "data" / "predict")}
        config = prepare(work, weights, dataset)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "1",
               "--configfile", str(config)]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started[kind] = (work, sizes, proc, config)
    done = {}
    for kind, (work, sizes, proc, config) in started.items():
        out, _ = proc.communicate(timeout=1200)
        done[kind] = (work, sizes, out, config) if proc.returncode == 0 else out[-5000:]
    return done


def finished(runs, kind):
    if isinstance(runs[kind], str):
        pytest.fail(f"the {kind} DAG failed:\n{runs[kind]}", pytrace=False)
    return runs[kind]


@pytest.fixture(scope="module")
def voc_run(runs):
    return finished(runs, "voc")


@pytest.fixture(scope="module")
def folder_run(runs):
    return finished(runs, "folder")


@pytest.fixture(scope="module")
def coco_run(runs):
    return finished(runs, "coco")


def check_sizes(work, sizes: dict) -> None:
    """Every per-image artifact of the run in ``work`` has its image's size."""
    manifest = Manifest.load(work / "artifacts/dataset/manifest.json")
    train, val = manifest.ids("train"), manifest.ids("val")
    assert set(train) | set(val) == set(sizes)
    assert len({sizes[i][0] / sizes[i][1] for i in train}) >= 6  # portrait, landscape and square among them
    for image_id in train:
        size = tuple(sizes[image_id])
        assert load_image(manifest.image_path(image_id)).shape[:2] == size
        assert load_npy(work / "artifacts/c2am/maps" / f"{image_id}.npy").shape == size, image_id
        assert load_label_png(work / "artifacts/c2am/cues" / f"{image_id}.png").shape == size, image_id
        cams = load_npz(work / "artifacts/classifier/cams" / f"{image_id}.npz")
        assert cams["cams"].shape == (len(manifest.labels[image_id]), *size), image_id
        for variant in ("cam_cues", "cam_fixed_tau", "cam_cues_crf"):
            assert load_label_png(work / "artifacts/pseudo" / variant / f"{image_id}.png").shape == size, image_id
    for image_id in val:
        pred = load_label_png(work / "artifacts/deeplab/cam_cues_crf/pred_val" / f"{image_id}.png")
        assert pred.shape == tuple(sizes[image_id]), image_id


def check_real_settings(work) -> None:
    """The run used the trunks and test-time settings of config/voc2012.yaml, with the weight files given."""
    assert load_checkpoint(work / "artifacts/c2am/model.pt", kind="c2am")["meta"]["backbone"] == "resnet50"
    assert load_checkpoint(work / "artifacts/classifier/model.pt", kind="classifier")["meta"]["backbone"] == "resnet50"
    meta = load_checkpoint(work / "artifacts/deeplab/cam_cues_crf/model.pt", kind="deeplab")["meta"]
    assert meta["arch"] == "deeplabv3_resnet101" and meta["weights_backbone"] == "imagenet"
    log = (work / "logs/train_c2am.log").read_text()
    assert "prefix 'module.encoder_q.'" in log
    assert re.search(r"matched (\d+) of \1 trunk tensors \(4 classifier/head tensors dropped", log), log[-2000:]
    infer = (work / "logs/infer_deeplab_cam_cues_crf.log").read_text()
    assert "scales [0.5, 0.75, 1.0, 1.25, 1.5] of the native size, flip True, crf True" in infer


def test_voc_layout_of_mixed_sizes(voc_run):
    work, sizes, _, _ = voc_run
    check_sizes(work, sizes)
    check_real_settings(work)
    assert re.match(r"mIoU: \d+\.\d\d", (work / "results/voc_miou.txt").read_text())
    assert re.match(r"gt_known_loc: [01]\.\d{4}", (work / "results/c2am_boxes.txt").read_text())


def test_coco_layout_of_mixed_sizes(coco_run):
    work, sizes, _, _ = coco_run
    check_sizes(work, sizes)
    check_real_settings(work)
    manifest = Manifest.load(work / "artifacts/dataset/manifest.json")
    assert manifest.kind == "coco" and manifest.labels["COCO_train2014_000000000005"] == []
    assert (work / "artifacts/dataset/coco2014_labels/SegmentationClass/COCO_val2014_000000000004.png").is_file()
    assert re.match(r"mIoU: \d+\.\d\d", (work / "results/voc_miou.txt").read_text())
    # the image without annotation has no GT box: the others are scored
    boxes = (work / "results/c2am_boxes.txt").read_text()
    assert re.match(r"gt_known_loc: [01]\.\d{4}", boxes) and "images with a GT box (scored): 7" in boxes


def test_folder_without_masks_runs_end_to_end(folder_run):
    work, sizes, out, _ = folder_run
    check_sizes(work, sizes["dataset"])
    check_real_settings(work)
    ran = set(job_counts(out))
    assert not ran & SCORING_RULES, ran
    assert {"train_deeplab", "infer_deeplab", "crf_labels", "visualize", "predict"} <= ran
    for name in ("voc_miou.txt", "pseudo_masks.txt", "c2am_maps.txt"):
        assert not (work / "results" / name).exists()
    assert f"gt_known_loc: {NOT_SCORED}" in (work / "results/c2am_boxes.txt").read_text()
    text = summarize(work)
    assert re.search(rf"results/pseudo_masks.json\s+{NOT_SCORED}", text), text
    assert re.search(rf"DeepLab, val predictions \(artifacts/deeplab/\)\s+{NOT_SCORED}", text), text
    assert NOT_SCORED in out  # the summary printed at the end of the run
    assert "no ground truth: not scored" in (work / "results/figures/metrics.html").read_text()
    manifest = Manifest.load(work / "artifacts/dataset/manifest.json")
    assert manifest.labels["img_002"] == []  # no class label: background-only pseudo labels
    assert set(np.unique(load_label_png(work / "artifacts/pseudo/cam_cues_crf/img_002.png"))) <= {0}


def test_predict_writes_a_mask_and_an_overlay_per_new_image_at_its_size(folder_run):
    work, sizes, _, _ = folder_run
    new = sizes["predict"]
    masks, overlays = work / "results/predict/masks", work / "results/predict/overlays"
    files = {d: sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) for d in (masks, overlays)}
    assert files[masks] == [f"{i}.png" for i in sorted(new)] and files[overlays] == [f"{i}.jpg" for i in sorted(new)]
    for image_id, size in new.items():
        assert load_label_png(masks / f"{image_id}.png").shape == size
        overlay = load_image(overlays / f"{image_id}.jpg")
        assert overlay.shape == (*size, 3)
    assert "masks and overlays" in summarize(work)


def test_report_holds_the_predictions_and_says_not_scored(folder_run, tmp_path):
    work, sizes, _, config = folder_run
    new = sizes["predict"]
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    result = snakemake("--configfile", str(copy / config.name), "--report", "report.html", cwd=copy)
    assert result.returncode == 0, result.stderr[-4000:]
    html = (copy / "report.html").read_text()
    assert "6. Predictions" in html
    for image_id in new:
        assert f"{image_id}.jpg" in html
    assert "metrics.html" in html
