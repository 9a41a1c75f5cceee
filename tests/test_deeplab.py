"""DeepLab model factory, the ignore-255 loss, probability inference + CRF, and the train/infer stages on a tiny tree."""

import csv
import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from c2am.data.voc import Manifest
from c2am.io import (
    InputError,
    load_checkpoint,
    load_label_png,
    save_checkpoint,
    save_jpeg,
    save_label_png,
)
from c2am.models.deeplab import build_deeplab, segmentation_loss
from c2am.stages import infer_deeplab, train_deeplab
from c2am.crf import crf_from_probs
from c2am.distributed import single
from c2am.inference import predict_probs
from c2am.stages.train_deeplab import build_parser, make_loader


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- model


def test_lite0_deeplab_output_shape_and_groups():
    model = build_deeplab("lite0_deeplabhead", 5, "none").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 40, 56))
    assert out.shape == (2, 5, 40, 56)
    backbone, head = model.parameter_groups()
    ids_b, ids_h = {id(p) for p in backbone}, {id(p) for p in head}
    assert ids_b and ids_h and not ids_b & ids_h
    assert ids_b | ids_h == {id(p) for p in model.parameters()}
    # The head sees both trunk maps (112 + 320 channels) and uses the stride-16 ASPP rates.
    assert model.head[0].convs[0][0].in_channels == 432
    assert model.head[0].convs[1][0].dilation == (6, 6)


def test_resnet_deeplab_output_shape_and_normalization():
    model = build_deeplab("deeplabv3_resnet50", 4, "none").eval()
    assert model.normalize_input and model.head[-1].out_channels == 4
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 47))
    assert out.shape == (1, 4, 33, 47)
    # No aux head, nothing beyond layer4 in the backbone (so backbone checkpoints match it key for key).
    assert not any(k.startswith(("aux", "fc.")) for k in model.state_dict())


def test_resnet_backbone_weights_load_from_local_moco_file(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet50(weights=None)
    state = {f"module.encoder_q.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "moco.pth"
    torch.save({"state_dict": state}, path)
    model = build_deeplab("deeplabv3_resnet50", 3, str(path))
    torch.testing.assert_close(model.backbone.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    torch.testing.assert_close(model.backbone.bn1.running_mean, source.bn1.running_mean)


def test_bad_model_and_weights_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown"):
        build_deeplab("unet", 3, "none")
    with pytest.raises(InputError, match="not found"):
        build_deeplab("deeplabv3_resnet50", 3, str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match="at least 2"):
        build_deeplab("lite0_deeplabhead", 1, "none")


# ----------------------------------------------------------------------------- loss


def test_loss_ignores_255_hand_case():
    # Pixel 0: logits (2, 0), target 0 -> -log(e^2 / (e^2 + 1)) = log(1 + e^-2). Pixel 1 is ignored.
    logits = torch.tensor([[[[2.0, -5.0]], [[0.0, 9.0]]]])  # 1 x 2 x 1 x 2
    target = torch.tensor([[[0, 255]]])
    assert segmentation_loss(logits, target).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    ref = nn.CrossEntropyLoss(ignore_index=255)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, :2] = 255
    torch.testing.assert_close(segmentation_loss(logits, target), ref(logits, target))


def test_loss_all_ignored_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_few_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    model = build_deeplab("lite0_deeplabhead", 3, "none").train()
    x = torch.rand(4, 3, 32, 32)
    y = torch.zeros(4, 32, 32, dtype=torch.long)
    y[:, 8:24, 8:24] = 1 + (x[:, 0, 8:24, 8:24] > 0.5).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = segmentation_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- inference


class FixedLogits(nn.Module):
    """Class 1 logit = 4 * red channel, class 0 logit = 0: predictable softmax, not flip-symmetric."""

    def forward(self, x):
        return torch.stack([torch.zeros_like(x[:, 0]), 4 * x[:, 0]], dim=1)


def test_predict_probs_single_scale_is_softmax():
    image = torch.rand(1, 3, 6, 8)
    probs = predict_probs(FixedLogits(), image, [1.0], flip=False)
    expected = torch.softmax(FixedLogits()(image), dim=1)[0]
    torch.testing.assert_close(probs, expected)


def test_predict_probs_multiscale_flip_is_mean_distribution():
    image = torch.zeros(1, 3, 8, 10)
    image[..., :5] = 1.0  # left half red
    probs = predict_probs(FixedLogits(), image, [0.5, 1.0], flip=True)
    assert probs.shape == (2, 8, 10)
    torch.testing.assert_close(probs.sum(0), torch.ones(8, 10))
    # The model is pixelwise, so flips and scales agree on the interior of each half.
    assert probs[1, 4, 1].item() == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item(), rel=1e-5)
    assert probs[1, 4, 8].item() == pytest.approx(0.5, rel=1e-5)


def test_crf_from_probs_keeps_confident_labels_and_checks_inputs():
    image = np.full((10, 12, 3), 128, np.uint8)
    image[:, 6:] = 30
    probs = np.zeros((3, 10, 12), np.float32)
    probs[0, :, :6] = 0.9
    probs[2, :, 6:] = 0.9
    probs[1] = 1 - probs[0] - probs[2]
    labels = crf_from_probs(image, probs, softmax_scale=0.9, iters=5)
    expected = np.where(np.arange(12)[None, :] < 6, 0, 2).repeat(10, axis=0)
    np.testing.assert_array_equal(labels, expected)
    with pytest.raises(ValueError, match="softmax_scale"):
        crf_from_probs(image, probs, softmax_scale=0.0)
    with pytest.raises(ValueError, match="C x H x W"):
        crf_from_probs(image, probs[:, :5])


# ----------------------------------------------------------------------------- stages on a tiny tree

CLASSES = ["background", "a", "b"]


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "voc"
    ids = [f"im{i}" for i in range(4)]
    sizes = [(32, 32), (32, 32), (28, 36), (32, 32)]
    labels = {}
    for i, image_id in enumerate(ids):
        h, w = sizes[i]
        image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        gt = np.zeros((h, w), np.uint8)
        gt[4:20, 4:20] = 1 + i % 2
        gt[20, 4:20] = 255
        image[gt == 1 + i % 2] = (200, 40, 40)
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image)
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", gt)
        labels[image_id] = [1 + i % 2]
    Manifest(root=root, classes=CLASSES, splits={"train": ids, "pseudo_eval": ids, "val": ids},
             labels=labels).save(tmp_path / "manifest.json")
    # Pseudo labels: everything class 2, so a loader using them is easy to tell from the GT one.
    for image_id, (h, w) in zip(ids, sizes):
        save_label_png(tmp_path / "pseudo" / f"{image_id}.png", np.full((h, w), 2, np.uint8))
    return tmp_path


def train_argv(t, *extra):
    return [
        "--manifest", str(t / "manifest.json"), "--out", str(t / "dl" / "model.pt"),
        "--log-csv", str(t / "dl" / "log.csv"), "--weights", "none", "--epochs", "1",
        "--batch-size", "2", "--lr", "0.01", "--crop", "32", "--scale-range", "0.9", "1.1",
        "--threads", "1", "--device", "cpu", "--seed", "0", *extra,
    ]


def test_label_source_selection(tiny):
    manifest = Manifest.load(tiny / "manifest.json")
    gt_args = build_parser().parse_args(train_argv(tiny, "--gt-labels"))
    gt_masks = torch.cat([m.flatten() for _, m in make_loader(gt_args, manifest, single("cpu"))])
    assert {0, 1, 2} <= set(gt_masks.unique().tolist())
    pseudo_args = build_parser().parse_args(train_argv(tiny, "--labels-dir", str(tiny / "pseudo")))
    pseudo_masks = torch.cat([m.flatten() for _, m in make_loader(pseudo_args, manifest, single("cpu"))])
    assert set(pseudo_masks.unique().tolist()) <= {2, 255}  # 255 only from crop padding
    with pytest.raises(SystemExit):  # exactly one label source
        build_parser().parse_args(train_argv(tiny))
    with pytest.raises(SystemExit):
        build_parser().parse_args(train_argv(tiny, "--gt-labels", "--labels-dir", str(tiny / "pseudo")))
    (tiny / "pseudo" / "im3.png").unlink()
    with pytest.raises(InputError, match="1 of 4"):
        make_loader(pseudo_args, manifest, single("cpu"))


def test_train_then_infer_tiny(tiny):
    meta = train_deeplab.main(train_argv(tiny, "--labels-dir", str(tiny / "pseudo"), "--epochs", "2",
                                         "--warmup-iters", "2"))
    ckpt = load_checkpoint(tiny / "dl" / "model.pt", kind="deeplab")
    assert ckpt["meta"]["warmup_iters"] == 2
    assert ckpt["meta"]["arch"] == "lite0_deeplabhead" and ckpt["meta"]["num_classes"] == 3
    assert ckpt["meta"]["labels"] == str(tiny / "pseudo") and math.isfinite(meta["final_loss"])
    assert not (tiny / "dl" / "model.pt.resume").exists()
    with open(tiny / "dl" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # 4 images / batch 2, 2 epochs
    # lr 0.01, 4 steps, warm-up 2: 0.01 * (1/2) * 1, then 0.01 * 1 * (3/4)^0.9, then the poly decay
    assert [float(r["lr"]) for r in rows[:2]] == pytest.approx([0.005, 0.01 * 0.75 ** 0.9], rel=1e-4)

    for extra in ([], ["--scales", "0.75", "1.0", "--flip", "--crf", "--iters", "2", "--softmax-scale", "0.8"]):
        out = tiny / ("pred" + "".join(extra[:1]))
        n = infer_deeplab.main([
            "--manifest", str(tiny / "manifest.json"), "--split", "val", "--checkpoint", str(tiny / "dl" / "model.pt"),
            "--out-dir", str(out), "--threads", "1", "--device", "cpu", *extra,
        ])
        assert n == 4 and sorted(p.name for p in out.iterdir()) == [f"im{i}.png" for i in range(4)]
        manifest = Manifest.load(tiny / "manifest.json")
        for image_id in manifest.ids("val"):
            pred = load_label_png(out / f"{image_id}.png")
            assert pred.shape == manifest.load_image(image_id).shape[:2]
            assert pred.max() < 3


def test_infer_rejects_class_count_mismatch(tiny):
    model = build_deeplab("lite0_deeplabhead", 5, "none")
    save_checkpoint(tiny / "five.pt", model.state_dict(), {"kind": "deeplab", "arch": "lite0_deeplabhead", "num_classes": 5})
    with pytest.raises(InputError, match="5 classes"):
        infer_deeplab.main(["--manifest", str(tiny / "manifest.json"), "--checkpoint", str(tiny / "five.pt"),
                            "--out-dir", str(tiny / "p"), "--device", "cpu"])


def test_stale_resume_state_is_ignored_not_fatal(tiny):
    # A state left by a run with other settings (here: another lr) must not be continued, nor stop the stage.
    state = tiny / "dl" / "model.pt.resume"
    save_checkpoint(state, {"bogus": torch.zeros(1)}, {"kind": "deeplab"}, run={"meta": {"lr": 0.5}, "epochs": 1, "seed": 0}, epoch=1)
    meta = train_deeplab.main(train_argv(tiny, "--gt-labels"))
    assert meta["epoch_losses"] and len(meta["epoch_losses"]) == 1  # trained, not skipped as "already done"
    assert load_checkpoint(tiny / "dl" / "model.pt", kind="deeplab")["meta"]["labels"] == "gt"
    assert not state.exists()


def test_killed_run_resumes_to_the_same_weights(tiny, monkeypatch):
    argv = train_argv(tiny, "--gt-labels", "--epochs", "2")
    train_deeplab.main(argv)
    reference = load_checkpoint(tiny / "dl" / "model.pt", kind="deeplab")["state_dict"]
    (tiny / "dl" / "model.pt").unlink()

    calls = {"n": 0}
    real_step = train_deeplab.step

    def dies_in_epoch_2(model, batch):
        calls["n"] += 1
        if calls["n"] > 2:  # 4 images / batch 2 = 2 steps per epoch
            raise KeyboardInterrupt
        return real_step(model, batch)

    monkeypatch.setattr(train_deeplab, "step", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_deeplab.main(argv)
    assert (tiny / "dl" / "model.pt.resume").is_file() and not (tiny / "dl" / "model.pt").exists()
    monkeypatch.setattr(train_deeplab, "step", real_step)
    meta = train_deeplab.main(argv)
    assert len(meta["epoch_losses"]) == 2
    resumed = load_checkpoint(tiny / "dl" / "model.pt", kind="deeplab")["state_dict"]
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    with open(tiny / "dl" / "log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
