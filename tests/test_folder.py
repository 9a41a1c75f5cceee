"""A user's own data (dataset.kind: folder): the label file and split lists, optional masks, every bad input, the
conversion command, scoring of the images that have a mask, and the DAG that follows what the data has."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from c2am.data.folder import build_folder_manifest, roles_with_masks, scan
from c2am.data.to_folder import export
from c2am.data.voc import Manifest, build_manifest
from c2am.io import InputError, load_image, save_label_png
from c2am.runtime import run_stage
from c2am.stages import evaluate, prepare_dataset
from c2am.summary import NOT_SCORED, summarize
from tests import mixed_data
from tests.conftest import ROOT, job_counts, snakemake

CLASSES = mixed_data.CLASSES
ROLES = {"train": "train", "pseudo_eval": "train", "val": "val"}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "mine"
    sizes = mixed_data.write_folder(root, masks_for=("img_100", "img_101"))
    return root, sizes


def write_csv(root, text: str) -> None:
    (root / "labels.csv").write_text(text)


def test_reads_labels_splits_masks_and_every_image_mode(folder, tmp_path):
    root, sizes = folder
    m = build_folder_manifest(root, CLASSES, ROLES)
    m.save(tmp_path / "manifest.json")
    m = Manifest.load(tmp_path / "manifest.json")
    assert m.kind == "folder" and not m.has_boxes
    assert m.ids("train") == [f"img_{k:03d}" for k in range(8)] and m.ids("pseudo_eval") == m.ids("train")
    assert m.ids("val") == ["img_100", "img_101", "img_102", "img_103"]
    assert m.labels["img_001"] == [2, 3]  # "bar;square" -> sorted class indices
    assert m.labels["img_002"] == []  # an empty labels cell: no class label
    assert m.labels["img_003"] == [1, 2]  # the row named the image by its id
    assert m.image_path("img_002").name == "img_002.jpeg" and m.image_path("img_004").name == "img_004.JPG"
    assert m.masked == ["img_100", "img_101"] and m.gt_ids("val") == ["img_100", "img_101"]
    assert m.gt_ids("train") == [] and m.has_mask("img_101") and not m.has_mask("img_102")
    with pytest.raises(InputError, match="split 'train' has no ground-truth masks"):
        m.require_gt_ids("train")
    # grayscale, CMYK, palette, RGBA: all read as RGB at their size
    for image_id, size in sizes.items():
        assert load_image(m.image_path(image_id)).shape == (*size, 3)


def test_split_lists_instead_of_a_split_column(tmp_path):
    root = tmp_path / "mine"
    mixed_data.write_folder(root)
    rows = (root / "labels.csv").read_text().splitlines()
    write_csv(root, "\n".join(",".join(r.split(",")[:2]) for r in rows) + "\n")  # drop the split column
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img_000.jpg\nimg_001\n\nimg_002\n")
    (root / "splits" / "sub.txt").write_text("img_001\n")
    (root / "splits" / "val.txt").write_text("img_100\n")
    found = scan(root, CLASSES, {"train": "train", "pseudo_eval": "sub", "val": "val"})
    assert found.splits == {"train": ["img_000", "img_001", "img_002"], "pseudo_eval": ["img_001"],
                            "val": ["img_100"]}
    assert found.unused == 8


def test_roles_with_masks_follow_the_files(folder, tmp_path):
    root, _ = folder
    dataset = {"kind": "folder", "root": str(root), "classes": CLASSES, "splits": ROLES, "mask_dir": "masks"}
    assert roles_with_masks(dataset) == {"train": False, "pseudo_eval": False, "val": True}
    save_label_png(root / "masks" / "img_000.png", np.zeros((61, 40), np.uint8))
    assert roles_with_masks(dataset) == {"train": True, "pseudo_eval": True, "val": True}
    assert roles_with_masks({**dataset, "mask_dir": "none_here"}) == dict.fromkeys(ROLES, False)
    assert roles_with_masks({**dataset, "kind": "voc"}) == dict.fromkeys(ROLES, True)
    # unreadable data: prepare_dataset reports it; the DAG is built as if every split had masks
    assert roles_with_masks({**dataset, "root": str(tmp_path / "nope")}) == dict.fromkeys(ROLES, True)


BAD_CSV = [
    ("image,labels,split\nimg_000.jpg,disc,train\nghost.jpg,disc,train\n",
     r"labels\.csv line 3: image 'ghost\.jpg' not found in .*images"),
    ("image,labels,split\nimg_000.jpg,disc;zebra,train\n", r"labels\.csv line 2: unknown class 'zebra'"),
    ("image,labels,split\nimg_000.jpg,background,train\n", r"labels\.csv line 2: 'background' is not an image-level"),
    ("image,labels,split\nimg_000.jpg,disc,train\nimg_001.png,,val\nimg_000,square,val\n",
     r"labels\.csv line 4: duplicate image id 'img_000' \(line 2 has it too\)"),
    ("image,labels,split\nimg_000.jpg,disc,train;val;train\n",
     r"labels\.csv line 2: image 'img_000' is listed twice in split 'train'"),
    ("image,labels,split\nimg_000.jpg,disc,train\n", r"dataset\.splits\.val: split 'val' is empty"),
    ("image,lables\nimg_000.jpg,disc\n", r"labels\.csv: header \['image', 'lables'\] lacks column\(s\) \['labels'\]"),
]


@pytest.mark.parametrize("text, message", BAD_CSV)
def test_bad_label_file(folder, text, message):
    root, _ = folder
    write_csv(root, text)
    with pytest.raises(InputError, match=message):
        build_folder_manifest(root, CLASSES, ROLES)


def test_image_listed_twice_in_a_split_list(tmp_path):
    root = tmp_path / "mine"
    mixed_data.write_folder(root)
    write_csv(root, "image,labels\nimg_000.jpg,disc\nimg_001.png,bar\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img_000\nimg_001\nimg_000.jpg\n")
    (root / "splits" / "val.txt").write_text("img_001\n")
    with pytest.raises(InputError, match=r"train\.txt line 3: image 'img_000' is listed twice in this split"):
        scan(root, CLASSES, ROLES)


def test_pseudo_eval_must_be_within_train(folder):
    root, _ = folder
    with pytest.raises(InputError, match=r"image 'img_100' of split 'val' is not in the train split"):
        scan(root, CLASSES, {"train": "train", "pseudo_eval": "val", "val": "val"})


def test_mask_of_another_size_than_its_image(folder):
    root, _ = folder
    save_label_png(root / "masks" / "img_102.png", np.zeros((45, 44), np.uint8))
    with pytest.raises(InputError, match=r"masks/img_102\.png: mask size 44x45 differs from its image's 44x44"):
        build_folder_manifest(root, CLASSES, ROLES)


def test_prepare_dataset_fails_in_one_line_and_writes_no_manifest(folder, tmp_path, capsys):
    root, _ = folder
    write_csv(root, "image,labels,split\nimg_000.jpg,disc,train\nimg_001.png,unicorn,val\n")
    out = tmp_path / "manifest.json"
    argv = ["--kind", "folder", "--root", str(root), "--classes", *CLASSES, "--splits", "train", "train", "val",
            "--mask-dir", "masks", "--out", str(out)]
    assert run_stage(prepare_dataset.main, argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and re.search(r"labels\.csv line 3: unknown class 'unicorn'", err[0])
    assert not out.exists() and not list(tmp_path.glob(".manifest.json*"))


def test_only_images_with_a_mask_are_scored(tmp_path):
    """Hand-computed: val images a (4 x 6: left half class 1) and b (5 x 3: background) have masks, c has none.
    Predictions: a all class 1, b all background, c missing (it is not read). Background: TP 15, FN 12 -> 15/27;
    class 1: TP 12, FP 12 -> 1/2; mIoU (15/27 + 1/2) / 2 = 52.78 %."""
    root = tmp_path / "mine"
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.jpg": (4, 6), "b.png": (5, 3), "c.jpg": (7, 2), "t.jpg": (6, 6)}.items():
        mixed_data.save_mode(root / "images" / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")
    write_csv(root, "image,labels,split\nt.jpg,disc,train\na.jpg,disc,val\nb.png,,val\nc.jpg,bar,val\n")
    mask_a = np.zeros((4, 6), np.uint8)
    mask_a[:, :3] = 1
    save_label_png(root / "masks" / "a.png", mask_a)
    save_label_png(root / "masks" / "b.png", np.zeros((5, 3), np.uint8))
    m = build_folder_manifest(root, CLASSES, ROLES)
    m.save(tmp_path / "manifest.json")
    pred = tmp_path / "pred"
    save_label_png(pred / "a.png", np.ones((4, 6), np.uint8))
    save_label_png(pred / "b.png", np.zeros((5, 3), np.uint8))
    result = evaluate.main(["--manifest", str(tmp_path / "manifest.json"), "--split", "val", "--pred-dir", str(pred),
                            "--out-txt", str(tmp_path / "miou.txt"), "--out-json", str(tmp_path / "miou.json")])
    assert result["num_images"] == 2 and result["split_images"] == 3
    assert result["miou"] == pytest.approx(100 * (15 / 27 + 0.5) / 2)
    assert (tmp_path / "miou.txt").read_text().splitlines()[0] == "mIoU: 52.78"
    # the run summary says what was scored, and what was not
    work = tmp_path / "work"
    (work / "artifacts/dataset").mkdir(parents=True)
    m.save(work / "artifacts/dataset/manifest.json")
    (work / "results").mkdir()
    (work / "results/voc_miou.txt").write_text((tmp_path / "miou.txt").read_text())
    text = summarize(work)
    assert re.search(r"DeepLab on [a-z ]+\s+52\.78", text) and "2 of 3 images, those with a GT mask" in text
    assert re.search(rf"results/pseudo_masks\.json\s+{NOT_SCORED}", text)  # no train image has a mask


def test_conversion_command_round_trips_the_voc_layout(tmp_path):
    voc = tmp_path / "VOC2012"
    mixed_data.write_voc(voc)
    m = build_manifest(voc, CLASSES, {"train": "train_aug", "pseudo_eval": "train", "val": "val"})
    m.save(tmp_path / "voc.json")
    names = export(Manifest.load(tmp_path / "voc.json"), tmp_path / "out", mask_share=0.5, seed=0)
    assert names == {"train": "train", "pseudo_eval": "pseudo_eval", "val": "val"}  # pseudo_eval: 5 of 8
    f = build_folder_manifest(tmp_path / "out", CLASSES, names)
    assert {r: f.ids(r) for r in ROLES} == {r: m.ids(r) for r in ROLES}
    assert f.labels == m.labels and len(f.masked) == 6
    for image_id in f.ids("val"):
        assert f.image_path(image_id).read_bytes() == m.image_path(image_id).read_bytes()
    with pytest.raises(InputError, match="was not written by c2am.data.to_folder"):
        export(m, voc)


def folder_config(tmp_path, root) -> str:
    config = {"dataset": {"kind": "folder", "root": str(root), "classes": CLASSES, "splits": ROLES,
                          "mask_dir": "masks"}}
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_dag_follows_the_masks_there_are(tmp_path):
    root = tmp_path / "mine"
    mixed_data.write_folder(root)  # no mask at all
    result = snakemake("-n", "--configfile", folder_config(tmp_path, root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = set(job_counts(result.stdout))
    assert {"train_deeplab", "infer_deeplab", "crf_labels", "c2am_boxes", "visualize"} <= jobs
    assert not jobs & {"eval_c2am", "eval_pseudo", "evaluate", "predict"}
    # asking for a score the data cannot give fails when the DAG is built, not after the training
    for target, split in (("results/voc_miou.txt", "val"), ("results/pseudo_masks.txt", "train"),
                          ("results/fully_supervised_miou.txt", "val")):
        result = snakemake("-n", "--configfile", folder_config(tmp_path, root), "--", target, cwd=tmp_path)
        out = result.stdout + result.stderr
        assert result.returncode != 0
        assert f"split '{split}' (dataset.splits." in out and "has no ground-truth masks" in out, (target, out)
    save_label_png(root / "masks" / "img_103.png", np.zeros((39, 57), np.uint8))  # one val mask: val is scored
    result = snakemake("-n", "--configfile", folder_config(tmp_path, root), cwd=tmp_path)
    jobs = set(job_counts(result.stdout))
    assert "evaluate" in jobs and not jobs & {"eval_c2am", "eval_pseudo"}
    mixed_data.write_predict(tmp_path / "data" / "predict")  # new images: predict joins the default target
    result = snakemake("-n", "--configfile", folder_config(tmp_path, root), cwd=tmp_path)
    assert "predict" in job_counts(result.stdout)


def test_shipped_folder_config_reads_the_converted_embedded_dataset(tmp_path):
    """config/folder.yaml + `python -m c2am.data.to_folder --out data/embedded_folder` (README): the whole DAG."""
    from c2am.data import to_folder

    to_folder.main(["--out", str(tmp_path / "data" / "embedded_folder")])
    result = snakemake("-n", "--configfile", str(ROOT / "config" / "folder.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = job_counts(result.stdout)
    assert "prepare_dataset" in jobs and "evaluate" not in jobs
    labels = (tmp_path / "data/embedded_folder/labels.csv").read_text().splitlines()
    assert labels[0] == "image,labels,split" and len(labels) == 501
