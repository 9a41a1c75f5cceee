"""Reader for MS COCO 2014 (``dataset.kind: coco``): semantic label PNGs rasterised once from the instances.

Layout under ``dataset.root`` (the official one)::

    train2014/COCO_train2014_<n>.jpg      images of split ``train2014`` (any split name works: <name>/ ...)
    val2014/COCO_val2014_<n>.jpg
    annotations/instances_train2014.json  instances of each split (images, annotations, categories)
    annotations/instances_val2014.json

``dataset.splits`` names the COCO split of each role (``train2014`` / ``train2014`` / ``val2014``). An image's id
is its file name without extension.

:func:`build_coco_manifest` validates every instances file before anything is written (each annotation names an
image of its file and a category of its file, each category is a class of ``dataset.classes``, each image exists
with the size the file says), then writes, under ``dataset.coco.label_dir`` (outside the data root, which may be
read-only):

- ``SegmentationClass/<id>.png``: the semantic mask, VOC palette (docs/method.md §7, "Datasets"):
  a category's class index is its name's position in ``dataset.classes`` (COCO's 80 ids 1..90, in id order,
  map to 1..80 after background); non-crowd instances are painted in order of decreasing area (pixel count of
  their rasterised region; ties by annotation id), so **where instances overlap the smaller one wins** (it is
  usually in front); pixels of a crowd region (``iscrowd: 1``) that no non-crowd instance covers are 255
  (ignored); the rest is background 0. Polygons, uncompressed and compressed RLE are decoded by pycocotools.
- ``Annotations/<id>.xml``: the boxes of the non-crowd instances as VOC XML, so GT-known localisation
  (c2am_boxes) reads them as on VOC.

Image-level labels are the classes of every annotation of the image whose region is not empty (crowd regions
included: a crowd of people is evidence of the class ``person``). Everything downstream is as for VOC.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import numpy as np

from c2am.data.voc import SPLIT_ROLES, Manifest, image_size
from c2am.io import IGNORE, InputError, save_label_png, save_text
from c2am.parallel import map_items

log = logging.getLogger("c2am.data.coco")

# Written into the label folder, so that rewriting it may delete it, and never a user's own folder.
LABELS_MARKER = ".c2am-coco-labels"
MASK_SUBDIR = "SegmentationClass"
BOX_SUBDIR = "Annotations"


def instances_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}.json"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_segmentation(seg, ann_id, h: int, w: int, path: Path):
    """The annotation's segmentation in a form pycocotools takes: a list of polygons, or an RLE dict."""
    where = f"{path}: annotation {ann_id}"
    if isinstance(seg, list):
        polygons = []
        for poly in seg:
            if not isinstance(poly, list) or not all(_number(v) for v in poly) or len(poly) % 2:
                raise InputError(f"{where}: a polygon must be a flat list of x, y numbers")
            if len(poly) >= 6:  # fewer than 3 points enclose nothing
                polygons.append([float(v) for v in poly])
        return polygons
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise InputError(f"{where}: RLE size {seg['size']} differs from its image's [height, width] [{h}, {w}]")
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
                raise InputError(f"{where}: uncompressed RLE counts must be non-negative and sum to {h} x {w}")
        elif not isinstance(counts, str):
            raise InputError(f"{where}: RLE counts must be a list (uncompressed) or a string (compressed)")
        return seg
    raise InputError(f"{where}: segmentation must be a list of polygons or an RLE {{counts, size}}")


def decode_region(seg, h: int, w: int) -> np.ndarray:
    """Boolean H x W region of a checked segmentation (pycocotools; several polygons are merged)."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        if not seg:
            return np.zeros((h, w), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = {"size": [h, w], "counts": seg["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def rasterize(h: int, w: int, instances: list[dict]) -> tuple[np.ndarray, list[int]]:
    """(H x W uint8 semantic mask, sorted classes of the non-empty regions) from ``instances``.

    Each instance: ``id``, ``cls`` (class index), ``crowd`` (bool), ``seg`` (checked segmentation). Non-crowd
    regions are painted by decreasing pixel area (ties: smaller annotation id first), so the smaller one wins
    where they overlap; crowd pixels that no non-crowd region covers become IGNORE.
    """
    mask = np.zeros((h, w), dtype=np.uint8)
    covered = np.zeros((h, w), dtype=bool)
    crowd = np.zeros((h, w), dtype=bool)
    regions, classes = [], set()
    for inst in instances:
        region = decode_region(inst["seg"], h, w)
        if not region.any():
            continue
        classes.add(inst["cls"])
        if inst["crowd"]:
            crowd |= region
        else:
            regions.append((-int(region.sum()), inst["id"], inst["cls"], region))
    for _, _, cls, region in sorted(regions, key=lambda r: (r[0], r[1])):
        mask[region] = cls
        covered |= region
    mask[crowd & ~covered] = IGNORE
    return mask, sorted(classes)


def voc_box(bbox, h: int, w: int) -> list[int] | None:
    """COCO [x, y, width, height] (pixel edges) -> 0-based inclusive [x1, y1, x2, y2] in the image, or None."""
    x, y, bw, bh = (float(v) for v in bbox)
    x1, y1 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x2, y2 = min(w - 1, int(np.ceil(x + bw)) - 1), min(h - 1, int(np.ceil(y + bh)) - 1)
    return [x1, y1, x2, y2] if x2 >= x1 and y2 >= y1 and bw > 0 and bh > 0 else None


def boxes_xml(boxes: list[tuple[str, list[int]]], h: int, w: int) -> str:
    """VOC XML of (class name, 0-based inclusive box) pairs; VOC boxes are 1-based."""
    root = ET.Element("annotation")
    size = ET.SubElement(root, "size")
    for key, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for name, (x1, y1, x2, y2) in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        bb = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, key).text = str(value + 1)
    return ET.tostring(root, encoding="unicode") + "\n"


def read_instances(root: Path, split: str, classes: list[str]) -> dict[str, dict]:
    """Checked images of one COCO split: id -> {file, h, w, instances}; nothing is written."""
    path = instances_path(root, split)
    if not path.is_file():
        raise InputError(f"{path}: COCO instances file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{path}: no '{key}' list")
    category_class = {}
    for cat in data["categories"]:
        name = cat.get("name")
        if name not in classes[1:]:
            raise InputError(f"{path}: category {cat.get('id')} {name!r} is not in dataset.classes")
        category_class[cat["id"]] = classes.index(name)
    images, by_coco_id = {}, {}
    for im in data["images"]:
        file_name, coco_id = im.get("file_name"), im.get("id")
        if not isinstance(file_name, str) or not file_name or "/" in file_name:
            raise InputError(f"{path}: image {coco_id} has no plain 'file_name'")
        if coco_id in by_coco_id:
            raise InputError(f"{path}: image id {coco_id} appears twice in 'images'")
        image_id = os.path.splitext(file_name)[0]
        if image_id in images:
            raise InputError(f"{path}: file name {file_name!r} appears twice in 'images'")
        h, w = int(im.get("height", 0)), int(im.get("width", 0))
        actual = image_size(root / split / file_name)  # missing file: "image not found", naming it
        if actual != (h, w):
            raise InputError(f"{root / split / file_name}: image is {actual[1]}x{actual[0]}, {path.name} says "
                             f"{w}x{h}")
        images[image_id] = {"file": f"{split}/{file_name}", "h": h, "w": w, "instances": [], "boxes": []}
        by_coco_id[coco_id] = image_id
    for ann in data["annotations"]:
        ann_id = ann.get("id")
        if ann.get("image_id") not in by_coco_id:
            raise InputError(f"{path}: annotation {ann_id} points at image {ann.get('image_id')}, "
                             "which is not in 'images'")
        if ann.get("category_id") not in category_class:
            raise InputError(f"{path}: annotation {ann_id} has category {ann.get('category_id')}, "
                             "which is not in 'categories'")
        image = images[by_coco_id[ann["image_id"]]]
        cls = category_class[ann["category_id"]]
        crowd = bool(ann.get("iscrowd", 0))
        seg = check_segmentation(ann.get("segmentation"), ann_id, image["h"], image["w"], path)
        image["instances"].append({"id": ann_id, "cls": cls, "crowd": crowd, "seg": seg})
        if not crowd and isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4:
            box = voc_box(ann["bbox"], image["h"], image["w"])
            if box is not None:
                image["boxes"].append((classes[cls], box))
    if not images:
        raise InputError(f"{path}: no images")
    return images


def write_labels(item: tuple[str, dict], label_dir: Path) -> list[int]:
    """Write one image's mask and boxes; return its image-level labels (worker of :func:`build_coco_manifest`)."""
    image_id, image = item
    mask, labels = rasterize(image["h"], image["w"], image["instances"])
    save_label_png(label_dir / MASK_SUBDIR / f"{image_id}.png", mask)
    save_text(label_dir / BOX_SUBDIR / f"{image_id}.xml", boxes_xml(image["boxes"], image["h"], image["w"]))
    return labels


def prepare_label_dir(label_dir: Path) -> None:
    if label_dir.exists():
        if not (label_dir / LABELS_MARKER).exists():
            raise InputError(f"{label_dir}: exists and was not written by c2am; refusing to overwrite it "
                             "(point dataset.coco.label_dir elsewhere)")
        shutil.rmtree(label_dir)  # labels of another class list or split must not survive
    (label_dir / MASK_SUBDIR).mkdir(parents=True)
    (label_dir / BOX_SUBDIR).mkdir()
    (label_dir / LABELS_MARKER).write_text("written by c2am.stages.prepare_dataset from the COCO instances\n")


def build_coco_manifest(root, classes: list[str], split_names: dict[str, str], label_dir,
                        threads: int = 1) -> Manifest:
    """Validate a COCO tree, rasterise its semantic masks and boxes into ``label_dir``, and return its manifest."""
    root, label_dir = Path(root), Path(label_dir)
    if not root.is_dir():
        raise InputError(f"{root}: dataset root not found")
    if len(classes) < 2 or classes[0] != "background":
        raise InputError("dataset.classes: must start with 'background' and name at least one object class")
    images: dict[str, dict] = {}
    splits: dict[str, list[str]] = {}
    for split in dict.fromkeys(split_names[role] for role in SPLIT_ROLES):  # each COCO split read once
        found = read_instances(root, split, classes)
        clash = next((i for i in found if i in images), None)
        if clash is not None:
            raise InputError(f"{instances_path(root, split)}: image {clash!r} is also in another split")
        images.update(found)
        splits[split] = sorted(found)
    prepare_label_dir(label_dir)
    ids = sorted(images)
    labels = map_items(partial(write_labels, label_dir=label_dir), [(i, images[i]) for i in ids],
                       threads=threads, desc="coco masks")
    rel = os.path.relpath(label_dir.resolve(), root.resolve())
    manifest = Manifest(
        root=root, classes=list(classes), splits={role: splits[split_names[role]] for role in SPLIT_ROLES},
        labels=dict(zip(ids, labels)), image_dir="", mask_dir=f"{rel}/{MASK_SUBDIR}",
        annotation_dir=f"{rel}/{BOX_SUBDIR}", kind="coco", image_files={i: images[i]["file"] for i in ids},
        masked=None, has_boxes=True,
    )
    log.info("COCO: %d images in %s, masks and boxes in %s", len(ids), ", ".join(splits), label_dir)
    return manifest
