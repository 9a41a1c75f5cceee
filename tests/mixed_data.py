"""Fixture data of mixed sizes and aspect ratios (portrait, landscape, square, odd sides), written in the three
layouts a dataset can come in: VOC (JPEGImages + masks + XML), folder (images + labels.csv) and COCO 2014
(train2014/val2014 + instances JSON with polygons, RLE, a crowd region and an image without annotation).

Each image has a noisy background and one or two filled rectangles of a class colour; the mask labels them and the
boxes bound them, so the three layouts describe the same images.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c2am.io import save_jpeg, save_label_png

CLASSES = ["background", "disc", "square", "bar"]
COLOURS = {1: (230, 40, 40), 2: (40, 200, 60), 3: (40, 70, 230)}
# (height, width): portrait, landscape, square and odd sides, none a multiple of the stride 16.
TRAIN_SIZES = [(61, 40), (37, 70), (48, 48), (53, 29), (33, 47), (45, 66), (59, 59), (41, 35)]
VAL_SIZES = [(50, 31), (29, 52), (44, 44), (39, 57)]
PREDICT_SIZES = [(47, 33), (31, 58), (40, 40)]


@dataclass
class Item:
    image_id: str
    image: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W uint8
    objects: list[tuple[int, list[int]]] = field(default_factory=list)  # (class, [x1, y1, x2, y2] inclusive)


def make_item(image_id: str, size: tuple[int, int], seed: int) -> Item:
    rng = np.random.default_rng(seed)
    h, w = size
    image = rng.integers(60, 140, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    item = Item(image_id, image, mask)
    for k in range(1 + seed % 2):
        cls = 1 + (seed + k) % 3
        bh, bw = max(4, h // 3), max(4, w // 3)
        y1 = int(rng.integers(0, h - bh)) if k == 0 else max(0, h - bh - 1)
        x1 = int(rng.integers(0, w - bw)) if k == 0 else max(0, w - bw - 1)
        image[y1 : y1 + bh, x1 : x1 + bw] = COLOURS[cls]
        mask[y1 : y1 + bh, x1 : x1 + bw] = cls
        item.objects.append((cls, [x1, y1, x1 + bw - 1, y1 + bh - 1]))
    return item


def items(prefix: str, sizes, offset: int) -> list[Item]:
    return [make_item(f"{prefix}{offset + k:03d}", size, offset + k) for k, size in enumerate(sizes)]


def dataset_items() -> tuple[list[Item], list[Item]]:
    return items("img_", TRAIN_SIZES, 0), items("img_", VAL_SIZES, 100)


def voc_xml(objects) -> str:
    parts = ["<annotation>"]
    for cls, (x1, y1, x2, y2) in objects:
        parts.append(f"<object><name>{CLASSES[cls]}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
                     f"<xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>\n"


def write_voc(root: Path) -> dict[str, tuple[int, int]]:
    """The VOC layout at ``root``; returns id -> (height, width)."""
    train, val = dataset_items()
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (root / "Annotations").mkdir()
    for item in train + val:
        save_jpeg(root / "JPEGImages" / f"{item.image_id}.jpg", item.image, quality=95)
        save_label_png(root / "SegmentationClassAug" / f"{item.image_id}.png", item.mask)
        (root / "Annotations" / f"{item.image_id}.xml").write_text(voc_xml(item.objects))
    (lists / "train_aug.txt").write_text("".join(f"{i.image_id}\n" for i in train))
    (lists / "train.txt").write_text("".join(f"{i.image_id}\n" for i in train[:5]))
    (lists / "val.txt").write_text("".join(f"{i.image_id}\n" for i in val))
    return {i.image_id: i.image.shape[:2] for i in train + val}


def save_mode(path: Path, image: np.ndarray, mode: str) -> None:
    """Save an RGB array as ``mode`` (RGB, L, CMYK, P, RGBA) in the format of ``path``'s suffix."""
    from PIL import Image

    im = Image.fromarray(image, mode="RGB")
    if mode == "P":
        im = im.quantize(colors=32)
    elif mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else im.save(path)


# File name and mode of each image of the folder layout: every format and mode a user may bring.
FOLDER_FILES = [("{}.jpg", "RGB"), ("{}.png", "L"), ("{}.jpeg", "CMYK"), ("{}.png", "P"), ("{}.JPG", "RGB"),
                ("{}.png", "RGBA"), ("{}.jpg", "L"), ("{}.jpg", "RGB")]


def write_folder(root: Path, masks_for: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """The folder layout at ``root``: images of every mode, labels.csv with a split column (one train image
    without a class label, one row naming its image by id), masks for the ids in ``masks_for``."""
    train, val = dataset_items()
    rows = [["image", "labels", "split"]]
    for k, item in enumerate(train + val):
        pattern, mode = FOLDER_FILES[k % len(FOLDER_FILES)]
        name = pattern.format(item.image_id)
        save_mode(root / "images" / name, item.image, mode)
        labels = sorted({CLASSES[c] for c, _ in item.objects})
        if k == 2:
            labels = []  # no class label: C2AM trains on it, background-only elsewhere
        cell = item.image_id if k == 3 else name  # a row may name the image by its id
        rows.append([cell, ";".join(labels), "train" if k < len(train) else "val"])
        if item.image_id in masks_for:
            save_label_png(root / "masks" / f"{item.image_id}.png", item.mask)
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return {i.image_id: i.image.shape[:2] for i in train + val}


def write_predict(folder: Path) -> dict[str, tuple[int, int]]:
    """New images for predict: odd sizes, grayscale and palette among them."""
    sizes = {}
    for k, (item, mode) in enumerate(zip(items("new_", PREDICT_SIZES, 200), ("RGB", "L", "P"))):
        save_mode(folder / (f"{item.image_id}.jpg" if mode == "RGB" else f"{item.image_id}.png"), item.image, mode)
        sizes[item.image_id] = item.image.shape[:2]
    return sizes


def polygon(box) -> list[float]:
    """The rectangle's outline in COCO's pixel-edge coordinates (pycocotools fills exactly its pixels)."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]


def uncompressed_rle(region: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a boolean mask: run lengths in column-major order, starting with zeros."""
    flat = region.T.reshape(-1).astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"counts": [int(c) for c in counts], "size": list(region.shape)}


COCO_CATEGORIES = [{"id": 3, "name": "disc"}, {"id": 17, "name": "square"}, {"id": 90, "name": "bar"}]
COCO_ID = {1: 3, 2: 17, 3: 90}  # class index -> category id


def write_coco(root: Path) -> dict[str, tuple[int, int]]:
    """The COCO 2014 layout at ``root``: objects as polygons, the second object of every third image as an RLE, a
    crowd region on one image, one train image without any annotation. Returns id -> (height, width)."""
    train, val = dataset_items()
    sizes = {}
    ann_id = 1
    for split, group in (("train2014", train), ("val2014", val)):
        images, annotations = [], []
        for k, item in enumerate(group):
            file_name = f"COCO_{split}_{k + 1:012d}.jpg"
            save_jpeg(root / split / file_name, item.image, quality=95)
            h, w = item.image.shape[:2]
            images.append({"id": k + 1, "file_name": file_name, "height": h, "width": w})
            sizes[file_name[:-4]] = (h, w)
            if split == "train2014" and k == 4:
                continue  # an image without annotation
            for n, (cls, box) in enumerate(item.objects):
                x1, y1, x2, y2 = box
                if n == 1 and k % 3 == 0:
                    region = np.zeros((h, w), bool)
                    region[y1 : y2 + 1, x1 : x2 + 1] = True
                    seg = uncompressed_rle(region)
                else:
                    seg = [polygon(box)]
                annotations.append({"id": ann_id, "image_id": k + 1, "category_id": COCO_ID[cls], "iscrowd": 0,
                                    "segmentation": seg, "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1],
                                    "area": float((x2 - x1 + 1) * (y2 - y1 + 1))})
                ann_id += 1
            if split == "train2014" and k == 1:
                crowd = np.zeros((h, w), bool)
                crowd[:5, :9] = True
                annotations.append({"id": ann_id, "image_id": k + 1, "category_id": 17, "iscrowd": 1,
                                    "segmentation": uncompressed_rle(crowd), "bbox": [0, 0, 9, 5], "area": 45.0})
                ann_id += 1
        path = root / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": COCO_CATEGORIES}))
    return sizes
