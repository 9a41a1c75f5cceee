"""The saliency network of stages 3c-3d (the official step 4): trained on cues alone (no label is read), its loss,
its maps at each image's size, its bad inputs, and the rules that run it."""

import csv
import math
import shutil
from collections import defaultdict

import numpy as np
import pytest
import torch

from c2am import inference
from c2am.artifacts import load_cue, load_map, save_cue
from c2am.data.datasets import CueDataset, segmentation_train_transform
from c2am.data.voc import Manifest, build_manifest
from c2am.io import InputError, load_checkpoint, save_checkpoint
from c2am.models.saliency import DECODERS, build_saliency, load_saliency, saliency_loss
from c2am.runtime import run_stage
from c2am.stages import infer_saliency, train_saliency
from tests import mixed_data
from tests.conftest import snakemake, stage_commands

torch.set_num_threads(1)

SPLITS = {"train": "train_aug", "pseudo_eval": "train", "val": "val"}


def forbid_labels(monkeypatch) -> None:
    """Every reader of GT masks, image-level labels and boxes raises: the saliency stages must need none."""
    def refuse(name):
        def reader(self, *args, **kwargs):
            raise AssertionError(f"the saliency stages read labels (Manifest.{name})")
        return reader

    for name in ("load_mask", "multi_hot", "image_labels", "gt_boxes"):
        monkeypatch.setattr(Manifest, name, refuse(name))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The mixed-size VOC fixture (8 train images, portrait and landscape, odd sides), the cue of each train image
    (its rectangles), and then no label at all: the mask and annotation folders are deleted.
    Returns (manifest path, cues folder, id -> (h, w))."""
    root = tmp_path_factory.mktemp("saliency_data")
    sizes = mixed_data.write_voc(root / "VOC")
    manifest = build_manifest(root / "VOC", mixed_data.CLASSES, SPLITS)
    path = root / "manifest.json"
    manifest.save(path)
    cues = root / "cues"
    train, _ = mixed_data.dataset_items()
    for item in train:
        save_cue(cues / f"{item.image_id}.png", item.mask > 0)
    shutil.rmtree(root / "VOC" / "SegmentationClassAug")
    shutil.rmtree(root / "VOC" / "Annotations")
    return path, cues, {i: sizes[i] for i in manifest.ids("train")}


def train_argv(manifest, cues, out, **overrides):
    opts = {"epochs": 3, "batch-size": 4, "crop": 32, "lr": 0.01, "seed": 1}
    opts.update(overrides)
    argv = ["--manifest", str(manifest), "--cues-dir", str(cues), "--out", str(out), "--log-csv", str(out) + ".csv",
            "--backbone", "lite0", "--weights", "pretrained", "--threads", "1", "--device", "cpu"]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    return argv


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    manifest, cues, _ = data
    out = tmp_path_factory.mktemp("saliency_model") / "model.pt"
    with pytest.MonkeyPatch.context() as mp:
        forbid_labels(mp)
        train_saliency.main(train_argv(manifest, cues, out))
    return out


# ----------------------------------------------------------------------------- the loss


def test_loss_against_a_hand_computed_case():
    logits = torch.tensor([[[0.0, 2.0, -1.0]]])
    target = torch.tensor([[[1, 0, 255]]])
    # pixel 1: target 1, logit 0 -> -log(sigmoid(0)) = log 2; pixel 2: target 0, logit 2 -> log(1 + e^2); pixel 3 ignored
    expected = (math.log(2.0) + math.log(1.0 + math.exp(2.0))) / 2
    assert saliency_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert saliency_loss(logits[:, None], target).item() == pytest.approx(expected, rel=1e-6)  # B x 1 x H x W


def test_loss_of_a_batch_without_valid_pixel_is_zero_and_float32():
    logits = torch.randn(2, 1, 4, 4, dtype=torch.float16, requires_grad=True)
    loss = saliency_loss(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert saliency_loss(torch.full((1, 2, 2), 200.0, dtype=torch.float16), torch.ones(1, 2, 2, dtype=torch.long)) == 0


# ----------------------------------------------------------------------------- the dataset


def test_cue_dataset_gives_0_1_and_255_padding(data, monkeypatch):
    manifest_path, cues, sizes = data
    forbid_labels(monkeypatch)
    manifest = Manifest.load(manifest_path)
    plain = CueDataset(manifest, "train", cues)
    image, cue = plain[0]
    assert tuple(cue.shape) == sizes[plain.ids[0]] and set(cue.unique().tolist()) == {0, 1}
    torch.manual_seed(0)
    big = CueDataset(manifest, "train", cues, transform=segmentation_train_transform(96, (0.5, 0.5)))
    image, cue = big[1]
    assert image.shape == (3, 96, 96) and cue.dtype == torch.int64
    assert set(cue.unique().tolist()) == {0, 1, 255}  # the crop is larger than the resized image: padded with 255


# ----------------------------------------------------------------------------- training and maps


def epoch_means(csv_path) -> list[float]:
    losses = defaultdict(list)
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            losses[int(row["epoch"])].append(float(row["loss"]))
    return [sum(v) / len(v) for _, v in sorted(losses.items())]


def test_training_on_cues_alone_lowers_the_loss(trained):
    means = epoch_means(str(trained) + ".csv")
    assert len(means) == 3 and means[-1] < means[0], means
    meta = load_checkpoint(trained, kind="saliency")["meta"]
    assert meta["kind"] == "saliency" and meta["backbone"] == "lite0" and meta["epochs"] == 3
    assert meta["final_loss"] == pytest.approx(means[-1], rel=1e-4)


@pytest.mark.parametrize("extra", [[], ["--scales", "0.5", "1.0", "--flip", "--batch-size", "2"]])
def test_maps_are_soft_and_at_each_images_size(data, trained, tmp_path, monkeypatch, extra):
    manifest, cues, sizes = data
    forbid_labels(monkeypatch)
    maps = tmp_path / "maps"
    n = infer_saliency.main(["--manifest", str(manifest), "--checkpoint", str(trained), "--out-dir", str(maps),
                             "--threads", "1", "--device", "cpu", *extra])
    assert n == len(sizes) == len(list(maps.glob("*.npy")))
    assert len({h / w for h, w in sizes.values()}) > 2  # portrait, landscape and square images
    inside, outside = [], []
    for image_id, size in sizes.items():
        raw = np.load(maps / f"{image_id}.npy", allow_pickle=False)
        assert raw.dtype == np.float16 and raw.shape == size
        smap = load_map(maps / f"{image_id}.npy", size)  # checks finite and in [0, 1]
        assert 0.0 <= smap.min() <= smap.max() <= 1.0
        assert np.unique(smap).size > 2  # soft, not a thresholded mask
        cue = load_cue(cues / f"{image_id}.png", size)
        inside.append(smap[cue])
        outside.append(smap[~cue])
    # S is high where the cues it learnt from say foreground (the fixture's rectangles): in the training run of
    # this fixture, 0.15 inside against 0.04 outside, pooled over the images
    inside, outside = np.concatenate(inside).mean(), np.concatenate(outside).mean()
    assert inside > 2 * outside, (inside, outside)


def test_saliency_maps_are_sigmoid_of_the_logit_and_follow_the_object():
    """A hand-made case: a network whose logit is 20 (grey - 0.5), on a black image with a white square off the
    centre (the cue). S = sigmoid(10) on the square and sigmoid(-10) elsewhere, exactly, at scale 1 with and
    without flip (the mirrored map is flipped back); at scales 0.5 and 1 S stays high inside and low outside."""
    image = torch.zeros(1, 3, 24, 40)
    image[0, :, 6:16, 4:14] = 1.0
    cue = np.zeros((24, 40), bool)
    cue[6:16, 4:14] = True
    expected = np.where(cue, 1 / (1 + math.exp(-10)), 1 / (1 + math.exp(10))).astype(np.float32)
    network = lambda x: 20 * (x.mean(1, keepdim=True) - 0.5)  # noqa: E731
    for flip in (False, True):
        (smap,) = inference.saliency_maps(network, image, [1.0], flip)
        np.testing.assert_allclose(smap, expected, atol=1e-6)
    (smap,) = inference.saliency_maps(network, image, [0.5, 1.0], flip=True)
    core, far = np.zeros_like(cue), np.ones_like(cue)
    core[8:14, 6:12] = True
    far[3:19, 1:17] = False
    assert smap[core].min() > 0.9 and smap[far].max() < 0.1, (smap[core].min(), smap[far].max())


def test_load_refuses_a_checkpoint_of_another_kind(tmp_path):
    path = tmp_path / "deeplab.pt"
    save_checkpoint(path, {}, {"kind": "deeplab"})
    with pytest.raises(InputError, match=r"deeplab\.pt: expected a saliency checkpoint, found kind 'deeplab'"):
        load_saliency(path, "cpu")


# ----------------------------------------------------------------------------- bad input


def one_line_error(capsys, argv, out) -> str:
    assert run_stage(train_saliency.main, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not out.exists() and not out.with_name(out.name + ".resume").exists()
    return lines[0]


def test_missing_cue_folder_is_one_line_exit_2_and_no_checkpoint(data, tmp_path, capsys):
    manifest, _, _ = data
    out = tmp_path / "model.pt"
    missing = tmp_path / "no_cues"
    line = one_line_error(capsys, train_argv(manifest, missing, out, epochs=1), out)
    assert str(missing) in line and "cue folder not found" in line


def test_missing_or_wrong_size_cue_names_the_file(data, tmp_path, capsys):
    manifest, cues, sizes = data
    partial = tmp_path / "cues"
    shutil.copytree(cues, partial)
    first = sorted(sizes)[0]
    (partial / f"{first}.png").unlink()
    out = tmp_path / "model.pt"
    line = one_line_error(capsys, train_argv(manifest, partial, out, epochs=1), out)
    assert str(partial / f"{first}.png") in line and "1 of 8 missing" in line

    h, w = sizes[first]
    save_cue(partial / f"{first}.png", np.ones((h + 1, w), bool))
    line = one_line_error(capsys, train_argv(manifest, partial, out, epochs=1), out)
    assert str(partial / f"{first}.png") in line and f"{w}x{h + 1}" in line and f"{w}x{h}" in line


# ----------------------------------------------------------------------------- the rules


def test_rules_pass_each_stages_defaults(tmp_path):
    """The dry run of artifacts/saliency/maps lists both rules, and every flag they pass is the stage's default
    (what tests/test_defaults.py checks for the rules of the default target)."""
    result = snakemake("-n", "-p", "artifacts/saliency/maps", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    commands = {name: argv for name, argv in stage_commands(result.stdout + result.stderr) if "saliency" in name}
    assert set(commands) == {"train_saliency", "infer_saliency"}
    assert "--cues-dir artifacts/c2am/cues" in " ".join(commands["train_saliency"])
    drift = []
    for name, module in (("train_saliency", train_saliency), ("infer_saliency", infer_saliency)):
        parser = module.build_parser()
        passed = vars(parser.parse_args(commands[name]))
        for action in parser._actions:
            if action.required or action.dest in ("threads", "help"):
                continue
            if passed[action.dest] != action.default:
                drift.append(f"{name} --{action.dest}: rule {passed[action.dest]!r}, stage {action.default!r}")
    assert not drift, drift
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("decoder", DECODERS)
def test_each_decoder_gives_a_logit_per_pixel_on_two_shapes(decoder):
    torch.manual_seed(0)
    model = build_saliency("lite0", "none", decoder).eval()
    for shape in ((64, 96), (80, 48)):
        with torch.no_grad():
            assert model(torch.rand(2, 3, *shape)).shape == (2, 1, *shape)


def test_the_pyramid_decoder_predicts_on_the_stride_4_grid():
    """Before the final upsampling: 64 x 96 input -> head 4 x 6 cells (stride 16), pyramid 16 x 24 (stride 4)."""
    x = torch.rand(1, 3, 64, 96)
    for decoder, stride in (("head", 16), ("pyramid", 4)):
        model = build_saliency("lite0", "none", decoder).eval()
        with torch.no_grad():
            levels = list(model.backbone(x))
            logits = model.head(levels) if decoder == "pyramid" else model.head(torch.cat(levels, dim=1))
        assert logits.shape == (1, 1, 64 // stride, 96 // stride)


def test_checkpoint_keeps_its_decoder_and_an_old_one_loads_as_head(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 48, 64)
    pyramid = build_saliency("lite0", "none", "pyramid").eval()
    meta = {"kind": "saliency", "backbone": "lite0"}
    save_checkpoint(tmp_path / "pyr.pt", pyramid.state_dict(), {**meta, "decoder": "pyramid"})
    loaded = load_saliency(tmp_path / "pyr.pt", "cpu")
    assert loaded.decoder == "pyramid"
    with torch.no_grad():
        assert torch.allclose(loaded(x), pyramid(x), atol=1e-5)
    head = build_saliency("lite0", "none", "head")
    save_checkpoint(tmp_path / "old.pt", head.state_dict(), meta)  # written before the decoder was a choice
    assert load_saliency(tmp_path / "old.pt", "cpu").decoder == "head"
    save_checkpoint(tmp_path / "bad.pt", head.state_dict(), {**meta, "decoder": "unet"})
    with pytest.raises(InputError, match=r"bad\.pt.*decoder 'unet'"):
        load_saliency(tmp_path / "bad.pt", "cpu")
    with pytest.raises(ValueError, match="decoder must be one of"):
        build_saliency("lite0", "none", "unet")
