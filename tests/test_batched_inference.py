"""Cross-image batched inference equals one image at a time (docs/method.md §4-§6), on the CPU.

Images of two sizes and aspect ratios, in interleaved manifest order: the batches must group them by exact
size, keep every id once, and give each image the maps it gets alone (within float rounding: a batch of 2N
images may use other conv kernels than a batch of 2).
"""

import numpy as np
import pytest
import torch

from c2am.artifacts import load_cams, load_map
from c2am.data.voc import Manifest
from c2am.inference import (
    batch_cams,
    foreground_map,
    foreground_maps,
    image_cams,
    iterate_batches,
    predict_probs,
    predict_probs_batch,
    size_batches,
)
from c2am.io import save_checkpoint, save_jpeg
from c2am.models.backbone import build_trunk
from c2am.models.c2am_net import C2AM
from c2am.models.classifier import build_classifier
from c2am.models.deeplab import build_deeplab
from c2am.stages import infer_c2am, infer_cam

torch.set_num_threads(1)

# id -> (height, width): wide and tall images, interleaved
SIZES = {"a": (36, 52), "b": (48, 30), "c": (36, 52), "d": (48, 30), "e": (36, 52)}
CLASSES = ["background", "x", "y", "z"]
LABELS = {"a": [1], "b": [2, 3], "c": [], "d": [3], "e": [1, 2]}
ATOL = 2e-5


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("batched")
    rng = np.random.default_rng(0)
    for image_id, (h, w) in SIZES.items():
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8))
    manifest = Manifest(root=root, classes=CLASSES, splits={"train": list(SIZES)}, labels=LABELS)
    path = root / "manifest.json"
    manifest.save(path)
    return path


def test_size_batches_group_by_exact_size_and_cover_every_id_once(manifest_path):
    manifest = Manifest.load(manifest_path)
    batches = size_batches(manifest, manifest.ids("train"), 2)
    assert batches == [["a", "c"], ["e"], ["b", "d"]]
    assert size_batches(manifest, manifest.ids("train"), 1) == [[i] for i in "abcde"]  # order kept
    for ids, _, images in iterate_batches(manifest, batches, "cpu"):
        assert images.shape == (len(ids), 3, *SIZES[ids[0]])


def batches_of(manifest_path, batch_size):
    manifest = Manifest.load(manifest_path)
    return list(iterate_batches(manifest, size_batches(manifest, manifest.ids("train"), batch_size), "cpu"))


def test_network_maps_of_a_batch_equal_those_of_each_image(manifest_path):
    torch.manual_seed(0)
    c2am = C2AM(build_trunk("lite0", "none")).eval()
    classifier = build_classifier("lite0", "none", 3).eval()
    deeplab = build_deeplab("lite0_deeplabhead", 4, "none").eval()
    scales = [0.75, 1.0]
    for ids, _, images in batches_of(manifest_path, 3):
        assert len(ids) > 1 or ids == ["d"]
        maps = foreground_maps(c2am, True, images, scales, amp=False)
        cams = batch_cams(classifier, images, [LABELS[i] for i in ids], scales, amp=False)
        probs = predict_probs_batch(deeplab, images, scales, flip=True)
        probs_noflip = predict_probs_batch(deeplab, images, scales, flip=False)
        for k, image_id in enumerate(ids):
            one = images[k : k + 1]
            np.testing.assert_allclose(maps[k], foreground_map(c2am, True, one, scales, amp=False), atol=ATOL)
            alone = image_cams(classifier, one, LABELS[image_id], scales, amp=False)
            assert cams[k].shape == alone.shape == (len(LABELS[image_id]), *SIZES[image_id])
            torch.testing.assert_close(cams[k], alone, atol=ATOL, rtol=0)
            torch.testing.assert_close(probs[k], predict_probs(deeplab, one, scales, flip=True), atol=ATOL, rtol=0)
            torch.testing.assert_close(probs_noflip[k], predict_probs(deeplab, one, scales, flip=False),
                                       atol=ATOL, rtol=0)


def test_stages_with_a_batch_size_write_what_one_image_at_a_time_writes(manifest_path, tmp_path):
    torch.manual_seed(1)
    c2am_ckpt, cls_ckpt = tmp_path / "c2am.pt", tmp_path / "cls.pt"
    save_checkpoint(c2am_ckpt, C2AM(build_trunk("lite0", "none")).state_dict(),
                    {"kind": "c2am", "backbone": "lite0", "inverted": False})
    save_checkpoint(cls_ckpt, build_classifier("lite0", "none", 3).state_dict(),
                    {"kind": "classifier", "backbone": "lite0", "classes": CLASSES, "num_foreground": 3})
    for batch_size in (1, 3):
        common = ["--manifest", str(manifest_path), "--scales", "1.0", "--batch-size", str(batch_size),
                  "--device", "cpu", "--threads", "1"]
        infer_c2am.main([*common, "--checkpoint", str(c2am_ckpt), "--out-dir", str(tmp_path / f"maps{batch_size}")])
        infer_cam.main([*common, "--checkpoint", str(cls_ckpt), "--out-dir", str(tmp_path / f"cams{batch_size}")])
    for image_id, size in SIZES.items():
        one = load_map(tmp_path / "maps1" / f"{image_id}.npy", size)
        np.testing.assert_allclose(load_map(tmp_path / "maps3" / f"{image_id}.npy", size), one, atol=1e-3)  # float16
        cams1, classes1 = load_cams(tmp_path / "cams1" / f"{image_id}.npz", size)
        cams3, classes3 = load_cams(tmp_path / "cams3" / f"{image_id}.npz", size)
        assert classes1.tolist() == classes3.tolist() == LABELS[image_id]
        np.testing.assert_allclose(cams3, cams1, atol=1e-3)
