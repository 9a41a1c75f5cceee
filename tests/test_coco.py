"""COCO 2014 (dataset.kind: coco): the semantic masks rasterised from a tiny hand-made instances file, checked pixel
by pixel; every bad input; and the DAG of config/coco2014.yaml on a COCO-layout fixture (dry run)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from c2am.data.coco import build_coco_manifest
from c2am.data.voc import Manifest
from c2am.io import InputError, load_label_png, save_jpeg
from c2am.runtime import run_stage
from c2am.stages import prepare_dataset
from tests import mixed_data
from tests.conftest import ROOT, job_counts, snakemake
from tests.test_workflow import STAGE_RULES

CLASSES = ["background", "disc", "square", "bar"]
ROLES = {"train": "train2014", "pseudo_eval": "train2014", "val": "val2014"}
CATEGORIES = [{"id": 3, "name": "disc"}, {"id": 17, "name": "square"}, {"id": 90, "name": "bar"}]

# Image 1 (6 x 8). Expected mask, by the documented rules:
# - annotation 2, disc (class 1), polygon with corners (1, 1)-(5, 4) in pixel-edge coordinates: rows 1-3, cols 1-4;
# - annotation 1, bar (class 3), uncompressed RLE [7, 2, 4, 2, 33] (column-major runs from a zero run): rows 1-2 of
#   cols 1 and 2. It lies inside annotation 2 and is smaller (4 < 12 pixels): it wins, though it comes first;
# - annotation 3, square (class 2), two polygons: row 5, cols 0-1, and row 0, cols 6-7;
# - annotation 4, a crowd of squares, compressed RLE of rows 3-5 x cols 3-7: 255 except where annotation 2 covers
#   it (row 3, cols 3-4 stay disc).
EXPECTED_1 = np.array([
    [0, 0, 0, 0, 0, 0, 2, 2],
    [0, 3, 3, 1, 1, 0, 0, 0],
    [0, 3, 3, 1, 1, 0, 0, 0],
    [0, 1, 1, 1, 1, 255, 255, 255],
    [0, 0, 0, 255, 255, 255, 255, 255],
    [2, 2, 0, 255, 255, 255, 255, 255],
], dtype=np.uint8)


def crowd_rle() -> dict:
    region = np.zeros((6, 8), np.uint8)
    region[3:6, 3:8] = 1
    rle = mask_utils.encode(np.asfortranarray(region))
    return {"size": [6, 8], "counts": rle["counts"].decode("ascii")}


def write_tiny_coco(root) -> None:
    rng = np.random.default_rng(0)
    for split, images in (("train2014", [(1, 6, 8), (2, 4, 5)]), ("val2014", [(7, 5, 3)])):
        entries = []
        for image_id, h, w in images:
            name = f"COCO_{split}_{image_id:012d}.jpg"
            save_jpeg(root / split / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            entries.append({"id": image_id, "file_name": name, "height": h, "width": w})
        annotations = []
        if split == "train2014":
            annotations = [
                {"id": 1, "image_id": 1, "category_id": 90, "iscrowd": 0, "bbox": [1, 1, 2, 2],
                 "segmentation": {"counts": [7, 2, 4, 2, 33], "size": [6, 8]}},
                {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": [1, 1, 4, 3],
                 "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
                {"id": 3, "image_id": 1, "category_id": 17, "iscrowd": 0, "bbox": [0, 0, 8, 6],
                 "segmentation": [[0, 5, 2, 5, 2, 6, 0, 6], [6, 0, 8, 0, 8, 1, 6, 1]]},
                {"id": 4, "image_id": 1, "category_id": 17, "iscrowd": 1, "bbox": [3, 3, 5, 3],
                 "segmentation": crowd_rle()},
            ]  # image 2: no annotation
        else:
            annotations = [{"id": 9, "image_id": 7, "category_id": 90, "iscrowd": 0, "bbox": [0.4, 1.2, 2, 2.5],
                            "segmentation": [[0, 1, 3, 1, 3, 4, 0, 4]]}]
        path = root / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": CATEGORIES}))


@pytest.fixture
def coco(tmp_path):
    root = tmp_path / "coco"
    write_tiny_coco(root)
    return root, tmp_path / "labels"


def test_masks_match_the_hand_computed_ones(coco, tmp_path):
    root, labels = coco
    m = build_coco_manifest(root, CLASSES, ROLES, labels)
    m.save(tmp_path / "manifest.json")
    m = Manifest.load(tmp_path / "manifest.json")
    a, b, v = "COCO_train2014_000000000001", "COCO_train2014_000000000002", "COCO_val2014_000000000007"
    assert m.ids("train") == [a, b] and m.ids("pseudo_eval") == [a, b] and m.ids("val") == [v]
    assert m.kind == "coco" and m.masked is None and m.image_path(a) == root / "train2014" / f"{a}.jpg"
    assert np.array_equal(load_label_png(labels / "SegmentationClass" / f"{a}.png"), EXPECTED_1)
    assert np.array_equal(m.load_mask(a), EXPECTED_1)
    assert np.array_equal(m.load_mask(b), np.zeros((4, 5), np.uint8))  # no annotation: background
    expected_v = np.zeros((5, 3), np.uint8)
    expected_v[1:4, 0:3] = 3
    assert np.array_equal(m.load_mask(v), expected_v)
    # image-level labels: every annotated class with a non-empty region (the crowd's too); none without annotation
    assert m.labels == {a: [1, 2, 3], b: [], v: [3]}
    # boxes of the non-crowd instances, 0-based inclusive (COCO's [x, y, w, h] are pixel edges)
    assert m.gt_boxes(a) == [(3, [1, 1, 2, 2]), (1, [1, 1, 4, 3]), (2, [0, 0, 7, 5])]
    assert m.gt_boxes(b) == [] and m.gt_boxes(v) == [(3, [0, 1, 2, 3])]
    assert ET.parse(labels / "Annotations" / f"{a}.xml").getroot().find("size/width").text == "8"


def test_category_index_is_the_position_of_its_name_in_the_classes(coco):
    root, labels = coco
    m = build_coco_manifest(root, ["background", "bar", "disc", "square"], ROLES, labels)
    mask = m.load_mask("COCO_train2014_000000000001")
    assert mask[1, 1] == 1 and mask[2, 3] == 2 and mask[0, 6] == 3  # bar, disc, square


def edit_instances(root, split, edit) -> None:
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


BAD = [
    (lambda d: d["annotations"][0].update(image_id=99),
     r"instances_train2014\.json: annotation 1 points at image 99, which is not in 'images'"),
    (lambda d: d["annotations"][1].update(category_id=5),
     r"instances_train2014\.json: annotation 2 has category 5, which is not in 'categories'"),
    (lambda d: d["categories"].append({"id": 44, "name": "spoon"}),
     r"instances_train2014\.json: category 44 'spoon' is not in dataset\.classes"),
    (lambda d: d["images"][1].update(height=5),
     r"COCO_train2014_000000000002\.jpg: image is 5x4, instances_train2014\.json says 5x5"),
    (lambda d: d["images"][1].update(file_name="COCO_train2014_000000000404.jpg"),
     r"COCO_train2014_000000000404\.jpg: image not found"),
    (lambda d: d["annotations"][1].update(segmentation=[[1, 1, 5]]),
     r"annotation 2: a polygon must be a flat list of x, y numbers"),
    (lambda d: d["annotations"][0]["segmentation"].update(size=[8, 6]),
     r"annotation 1: RLE size \[8, 6\] differs from its image's"),
]


@pytest.mark.parametrize("edit, message", BAD)
def test_bad_instances_file(coco, edit, message):
    root, labels = coco
    edit_instances(root, "train2014", edit)
    with pytest.raises(InputError, match=message):
        build_coco_manifest(root, CLASSES, ROLES, labels)
    assert not labels.exists()  # validated before anything is written


def test_prepare_dataset_fails_in_one_line_and_writes_nothing(coco, tmp_path, capsys):
    root, labels = coco
    edit_instances(root, "val2014", lambda d: d["annotations"][0].update(image_id=3))
    out = tmp_path / "manifest.json"
    argv = ["--kind", "coco", "--root", str(root), "--classes", *CLASSES, "--splits", "train2014", "train2014",
            "val2014", "--label-dir", str(labels), "--out", str(out)]
    assert run_stage(prepare_dataset.main, argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "instances_val2014.json: annotation 9 points at image 3" in err[0]
    assert not out.exists() and not labels.exists()
    edit_instances(root, "val2014", lambda d: d["annotations"][0].update(image_id=7))
    assert run_stage(prepare_dataset.main, argv) == 0 and Manifest.load(out).kind == "coco"
    assert run_stage(prepare_dataset.main, argv) == 0  # its own label folder is rewritten


def test_refuses_to_write_into_a_folder_it_did_not_create(coco):
    root, labels = coco
    labels.mkdir()
    (labels / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="was not written by c2am; refusing to overwrite it"):
        build_coco_manifest(root, CLASSES, ROLES, labels)
    assert (labels / "mine.txt").exists()


def test_coco2014_config_on_a_coco_fixture_lists_the_whole_dag(tmp_path):
    mixed_data.write_coco(tmp_path / "data" / "coco")
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config" / "coco2014.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(job_counts(result.stdout)) == STAGE_RULES | {"eval_c2am", "c2am_boxes", "eval_pseudo", "visualize", "train_affinity", "random_walk",
                                                            "refine_fixed_tau", "all"}
    assert "--kind coco --root data/coco" in result.stdout and "--label-dir artifacts/dataset/coco2014_labels" in \
        result.stdout
    assert "'traffic light'" in result.stdout  # class names with spaces reach the stage whole
    assert "--backbone resnet50" in result.stdout and "--backbone deeplabv3_resnet101" in result.stdout
