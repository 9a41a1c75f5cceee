"""The VOC reader on a small SBD-style fixture (train_aug + SegmentationClassAug), and every bad-input case."""

from pathlib import Path

import numpy as np
import pytest
import torch

from c2am.data.datasets import (
    ClassificationDataset,
    SegmentationDataset,
    image_train_transform,
    segmentation_train_transform,
)
from c2am.data.voc import Manifest, build_manifest
from c2am.io import InputError, save_jpeg, save_label_png
from c2am.stages import prepare_dataset

CLASSES = ["background", "aeroplane", "bicycle", "bird"]
ROLES = {"train": "train_aug", "pseudo_eval": "train", "val": "val"}


def make_sbd_fixture(root: Path) -> dict[str, np.ndarray]:
    """Five images of different sizes; train (2) is a subset of train_aug (4), as on VOC + SBD."""
    rng = np.random.default_rng(0)
    sizes = {"2007_000032": (30, 40), "2007_000039": (24, 36), "2008_000002": (32, 32), "2008_000008": (20, 28),
             "2007_000129": (26, 30)}
    masks = {}
    for i, (image_id, (h, w)) in enumerate(sizes.items()):
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        mask = np.zeros((h, w), np.uint8)
        mask[2:10, 3:12] = 1 + i % 3
        if i == 1:
            mask[12:18, 14:20] = 3
        mask[10, 3:12] = 255  # VOC's boundary band
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
        masks[image_id] = mask
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    ids = list(sizes)
    (lists / "train_aug.txt").write_text("\n".join(ids[:4]) + "\n")
    (lists / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (lists / "val.txt").write_text(ids[4] + "\n")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "2007_000032.xml").write_text(
        "<annotation><object><name>aeroplane</name><bndbox><xmin>4</xmin><ymin>3</ymin>"
        "<xmax>12</xmax><ymax>11</ymax></bndbox></object></annotation>"
    )
    return masks


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOC2012"
    masks = make_sbd_fixture(root)
    return root, masks


def test_manifest_reads_sbd_layout(voc, tmp_path):
    root, masks = voc
    m = build_manifest(root, CLASSES, ROLES)
    m.save(tmp_path / "manifest.json")
    m = Manifest.load(tmp_path / "manifest.json")
    assert m.ids("train") == ["2007_000032", "2007_000039", "2008_000002", "2008_000008"]
    assert m.ids("pseudo_eval") == ["2007_000032", "2007_000039"]
    assert m.ids("val") == ["2007_000129"]
    # image-level labels come from the masks: 255 and background excluded
    assert m.image_labels("train") == {"2007_000032": [1], "2007_000039": [2, 3], "2008_000002": [3],
                                       "2008_000008": [1]}
    assert m.multi_hot("2007_000039").tolist() == [0.0, 1.0, 1.0]
    assert np.array_equal(m.load_mask("2007_000039"), masks["2007_000039"])
    assert m.load_image("2007_000039").shape == (24, 36, 3)
    assert m.gt_boxes("2007_000032") == [(1, [3, 2, 11, 10])]


def test_datasets_shapes_and_joint_augmentation(voc):
    root, _ = voc
    m = build_manifest(root, CLASSES, ROLES)
    image, y = ClassificationDataset(m, "train", image_train_transform(16, scale=(0.8, 1.0)))[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert y.tolist() == [0.0, 1.0, 1.0]
    image, y = ClassificationDataset(m, "train", image_train_transform(16, resize=20))[0]
    assert image.shape == (3, 16, 16)
    # scale jitter is relative to the crop: 0.5 x 48 -> shorter side 24, so the 48 crop pads with 255, never a class
    torch.manual_seed(0)
    image, mask = SegmentationDataset(m, "train", segmentation_train_transform(48, (0.5, 0.5)))[3]
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= {0, 1, 255} and (mask == 255).sum() >= 48 * 48 - 24 * 34
    # without augmentation the mask is the GT itself
    image, mask = SegmentationDataset(m, "train")[1]
    assert image.shape == (3, 24, 36) and set(mask.unique().tolist()) == {0, 2, 3, 255}


def test_missing_root(tmp_path):
    with pytest.raises(InputError, match=r"nope: dataset root not found"):
        build_manifest(tmp_path / "nope", CLASSES, ROLES)


def test_list_names_missing_image(voc):
    root, _ = voc
    (root / "JPEGImages" / "2008_000002.jpg").unlink()
    with pytest.raises(InputError, match=r"2008_000002\.jpg: image not found"):
        build_manifest(root, CLASSES, ROLES)


def test_missing_list(voc):
    root, _ = voc
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(InputError, match=r"val\.txt: image list not found"):
        build_manifest(root, CLASSES, ROLES)


def test_corrupt_jpeg(voc):
    root, _ = voc
    path = root / "JPEGImages" / "2007_000039.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated
    with pytest.raises(InputError, match=r"2007_000039\.jpg: corrupt or unreadable image"):
        build_manifest(root, CLASSES, ROLES)


def test_mask_size_differs_from_image(voc):
    root, _ = voc
    save_label_png(root / "SegmentationClassAug" / "2008_000008.png", np.zeros((21, 28), np.uint8))
    with pytest.raises(InputError, match=r"2008_000008\.png: mask size 28x21 differs from its image's 28x20"):
        build_manifest(root, CLASSES, ROLES)


def test_mask_class_outside_list(voc):
    root, _ = voc
    mask = np.zeros((20, 28), np.uint8)
    mask[0, 0] = 7
    save_label_png(root / "SegmentationClassAug" / "2008_000008.png", mask)
    with pytest.raises(InputError, match=r"2008_000008\.png: mask holds class index 7, outside the class list"):
        build_manifest(root, CLASSES, ROLES)


def test_annotation_with_unknown_class(voc):
    root, _ = voc
    m = build_manifest(root, CLASSES, ROLES)
    (root / "Annotations" / "2007_000032.xml").write_text(
        "<annotation><object><name>zebra</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
        "</bndbox></object></annotation>"
    )
    with pytest.raises(InputError, match=r"2007_000032\.xml: unknown class 'zebra'"):
        m.gt_boxes("2007_000032")


def test_prepare_dataset_stage_exit_code_and_no_manifest_on_error(voc, tmp_path, capsys):
    from c2am.runtime import run_stage

    root, _ = voc
    (root / "JPEGImages" / "2008_000002.jpg").unlink()
    out = tmp_path / "manifest.json"
    argv = ["--kind", "voc", "--root", str(root), "--classes", *CLASSES, "--out", str(out)]
    assert run_stage(prepare_dataset.main, argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "2008_000002.jpg: image not found" in err
    assert not out.exists() and not list(tmp_path.glob(".manifest.json*"))


def test_prepare_dataset_refuses_to_overwrite_user_data(voc, tmp_path):
    root, _ = voc
    argv = ["--kind", "synthetic", "--root", str(root), "--classes", *CLASSES, "--out", str(tmp_path / "m.json")]
    with pytest.raises(InputError, match="was not generated by c2am"):
        prepare_dataset.main(argv)
    assert (root / "JPEGImages" / "2007_000032.jpg").exists()
