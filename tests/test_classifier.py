"""Classifier model, CAM computation/normalisation, the val report, resume hygiene, and train -> infer on a tiny tree."""

import numpy as np
import pytest
import torch
from torch import nn

from c2am.data.voc import Manifest
from c2am.io import InputError, load_checkpoint, load_npz, save_checkpoint, save_jpeg, save_label_png
from c2am.models.classifier import Classifier
from c2am.stages import infer_cam, train_classifier
from c2am.inference import image_cams
from c2am.metrics import classification_report as format_report


class IdentityTrunk(nn.Module):
    """Features = the image itself (3 channels), so CAMs are predictable by hand."""

    channels = (3, 3)

    def forward(self, x):
        return x, x


def identity_classifier() -> Classifier:
    model = Classifier(IdentityTrunk(), 3)
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    return model.eval()


def test_logits_are_mean_of_cam_logits():
    torch.manual_seed(0)
    model = Classifier(IdentityTrunk(), 2)
    x = torch.randn(2, 3, 5, 7)
    expected = model.head(x).mean(dim=(2, 3))
    torch.testing.assert_close(model(x), expected)
    cams = model.cams(x)
    assert cams.shape == (2, 2, 5, 7) and cams.min() >= 0
    torch.testing.assert_close(cams, torch.relu(model.head(x)))


def test_image_cams_selects_classes_and_normalises_by_max():
    model = identity_classifier()
    image = torch.zeros(1, 3, 8, 8)
    image[0, 0] = 0.25
    image[0, 0, 2:4, 2:4] = 1.0  # class 1 peaks here
    image[0, 1] = -1.0  # class 2: ReLU makes it all zero
    image[0, 2, :, :4] = 0.5  # class 3: left half, uniform
    cams = image_cams(model, image, [1, 2, 3], scales=[1.0], amp=False)
    assert cams.shape == (3, 8, 8)
    assert cams[0].max() == pytest.approx(1.0) and cams[0, 2, 2] == pytest.approx(1.0)
    assert cams[0, 6, 6] == pytest.approx(0.25)  # ratio to the peak survives the normalisation
    assert cams[1].abs().max() == 0  # an all-zero class stays zero (no division blow-up)
    np.testing.assert_allclose(cams[2, :, :4].numpy(), 1.0)
    np.testing.assert_allclose(cams[2, :, 4:].numpy(), 0.0)
    only_third = image_cams(model, image, [3], scales=[1.0], amp=False)
    torch.testing.assert_close(only_third[0], cams[2])


def test_image_cams_multiscale_keeps_size_and_range():
    model = identity_classifier()
    image = torch.rand(1, 3, 12, 10)
    cams = image_cams(model, image, [2], scales=[0.5, 1.0, 1.5], amp=False)
    assert cams.shape == (1, 12, 10)
    assert cams.min() >= 0 and cams.max() == pytest.approx(1.0)
    assert image_cams(model, image, [], scales=[1.0], amp=False).shape == (0, 12, 10)


def test_report_format():
    scores = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.1]])
    targets = np.array([[1, 0], [0, 1], [1, 0]])
    text = format_report(scores, targets, ["cat", "dog"])
    lines = text.splitlines()
    assert lines[0] == "mAP: 1.0000"
    # cat: TP 2 (0.9, 0.6), FN 0, FP 0 -> 1; dog: TP 1 -> 1.
    assert lines[1] == "F1: 1.0000"
    assert lines[2:] == ["cat: 1.0000", "dog: 1.0000"]
    worse = format_report(np.array([[0.4, 0.2], [0.4, 0.7], [0.6, 0.1]]), targets, ["cat", "dog"])
    # cat: predicted only for the third image -> TP 1, FN 1 -> F1 2/3; macro with dog's 1 -> 0.8333.
    assert worse.splitlines()[1] == "F1: 0.8333"


# ----------------------------------------------------------------------------- tiny end-to-end

CLASSES = ["background", "a", "b"]


@pytest.fixture
def tiny_tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "voc"
    ids = [f"im{i}" for i in range(4)]
    labels = {}
    for i, image_id in enumerate(ids):
        image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        gt = np.zeros((32, 32), np.uint8)
        gt[4:20, 4:20] = 1 + i % 2
        if i == 3:
            gt[22:30, 22:30] = 1
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image)
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", gt)
        labels[image_id] = sorted({int(c) for c in np.unique(gt) if c > 0})
    Manifest(root=root, classes=CLASSES, splits={"train": ids, "pseudo_eval": ids, "val": ids},
             labels=labels).save(tmp_path / "manifest.json")
    return tmp_path


def test_train_then_infer_cam_tiny(tiny_tree):
    torch.set_num_threads(1)
    t = tiny_tree
    out = t / "cls" / "model.pt"
    train_classifier.main([
        "--manifest", str(t / "manifest.json"), "--out", str(out), "--log-csv", str(t / "cls" / "log.csv"),
        "--out-txt", str(t / "cls" / "report.txt"), "--weights", "none", "--epochs", "1", "--batch-size", "2",
        "--lr", "0.01", "--crop", "32", "--threads", "1", "--device", "cpu", "--seed", "0",
    ])
    meta = load_checkpoint(out, kind="classifier")["meta"]
    assert meta["classes"] == CLASSES and meta["num_foreground"] == 2 and meta["kind"] == "classifier"
    report = (t / "cls" / "report.txt").read_text().splitlines()
    assert report[0].startswith("mAP: ") and report[1].startswith("F1: ")
    assert len((t / "cls" / "log.csv").read_text().splitlines()) == 1 + 2  # header + 2 steps
    assert not (t / "cls" / "model.pt.resume").exists()

    infer_cam.main([
        "--manifest", str(t / "manifest.json"), "--checkpoint", str(out), "--out-dir", str(t / "cams"),
        "--scales", "1.0", "0.5", "--threads", "1", "--device", "cpu",
    ])
    data = load_npz(t / "cams" / "im3.npz")
    np.testing.assert_array_equal(data["classes"], [1, 2])
    assert data["cams"].dtype == np.float16 and data["cams"].shape == (2, 32, 32)
    assert data["cams"].min() >= 0 and data["cams"].max() <= 1
    for k in range(2):
        peak = float(data["cams"][k].max())
        assert peak == 1.0 or peak == 0.0  # normalised by its max (or an all-zero map)


def test_infer_cam_rejects_other_class_list(tiny_tree, tmp_path):
    ckpt = tmp_path / "bad.pt"
    save_checkpoint(ckpt, {}, {"kind": "classifier", "classes": ["background", "x"], "backbone": "lite0",
                               "num_foreground": 1})
    with pytest.raises(InputError, match="trained on classes"):
        infer_cam.main(["--manifest", str(tiny_tree / "manifest.json"), "--checkpoint", str(ckpt),
                        "--out-dir", str(tmp_path / "c"), "--device", "cpu"])
