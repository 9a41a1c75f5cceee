"""Prediction on new images (c2am.stages.predict): a mask and an overlay per image at its size, the overlay's
colours, and the folder errors. The whole DAG's predict target, with the ResNet-101 DeepLab, is in
tests/test_mixed_sizes.py."""

from __future__ import annotations

import numpy as np
import pytest

from c2am.data.voc import Manifest
from c2am.figures import OVERLAY_ALPHA, PALETTE, prediction_overlay
from c2am.io import load_image, load_label_png, save_checkpoint
from c2am.models.deeplab import build_deeplab
from c2am.runtime import run_stage
from c2am.stages import predict
from tests import mixed_data

CLASSES = mixed_data.CLASSES


@pytest.mark.parametrize("size", [(7, 300), (301, 5), (33, 47), (120, 80)])
def test_overlay_is_the_image_size_and_blends_only_the_objects(size):
    h, w = size
    image = np.full((h, w, 3), 100, np.uint8)
    labels = np.zeros((h, w), np.uint8)
    labels[-1, : w // 2] = 1  # bottom row, left half: class 1, far from the legend (top right)
    out = prediction_overlay(image, labels, CLASSES)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    expected = np.floor((1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * PALETTE[1].astype(np.float64))
    assert np.abs(out[-1, 0].astype(int) - expected).max() <= 1  # (128, 0, 0) over grey 100
    if h > 20 and w > 20:
        assert np.abs(out[h // 2, 0].astype(int) - 100).max() <= 1  # background left as it is


def manifest_and_checkpoint(tmp_path):
    root = tmp_path / "voc"
    mixed_data.write_voc(root)
    from c2am.data.voc import build_manifest

    m = build_manifest(root, CLASSES, {"train": "train_aug", "pseudo_eval": "train", "val": "val"})
    m.save(tmp_path / "manifest.json")
    model = build_deeplab("lite0_deeplabhead", len(CLASSES), "none")
    save_checkpoint(tmp_path / "deeplab.pt", model.state_dict(),
                    {"kind": "deeplab", "arch": "lite0_deeplabhead", "num_classes": len(CLASSES),
                     "crop": 32, "scale_range": [0.5, 1.5]})
    return tmp_path / "manifest.json", tmp_path / "deeplab.pt"


def argv(manifest, ckpt, images, out, *extra):
    return ["--manifest", str(manifest), "--checkpoint", str(ckpt), "--images", str(images),
            "--out-masks", str(out / "masks"), "--out-overlays", str(out / "overlays"), "--device", "cpu", *extra]


def test_one_mask_and_one_overlay_per_image_at_its_size(tmp_path):
    manifest, ckpt = manifest_and_checkpoint(tmp_path)
    new = mixed_data.write_predict(tmp_path / "new")
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert predict.main(argv(manifest, ckpt, tmp_path / "new", out, "--scales", "0.5", "1.0", "--flip",
                             "--crf", "--iters", "2")) == 3
    assert Manifest.load(manifest).num_classes == 4
    for image_id, size in new.items():
        mask = load_label_png(out / "masks" / f"{image_id}.png")
        assert mask.shape == size and mask.max() < len(CLASSES)
        assert load_image(out / "overlays" / f"{image_id}.jpg").shape == (*size, 3)
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i}.png" for i in sorted(new)]


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, r"new: prediction folder \(config predict\.images\) not found"),
    (lambda d: d.mkdir(), r"new: prediction folder \(config predict\.images\) holds no image"),
    (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), r"holds no image \(\.jpg, \.jpeg, \.png\)"),
    (lambda d: (mixed_data.save_mode(d / "a.jpg", np.zeros((4, 4, 3), np.uint8), "RGB"),
                mixed_data.save_mode(d / "a.png", np.zeros((4, 4, 3), np.uint8), "RGB")),
     r"a\.jpg and a\.png have the same id"),
])
def test_bad_prediction_folder_is_one_error_line(tmp_path, capsys, setup, message):
    folder = tmp_path / "new"
    setup(folder)
    out = tmp_path / "out"
    # the folder is checked before anything else: no manifest or checkpoint is needed to report it
    code = run_stage(predict.main, argv(tmp_path / "none.json", tmp_path / "none.pt", folder, out))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1
    import re

    assert re.search(message, err[0]), err[0]
    assert not out.exists()
