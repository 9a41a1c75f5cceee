"""Readers of the two WSOL dataset layouts and the WSOL ground truth file (the localizer's training data is
c2am.data.datasets.BoxDataset).

Both layouts become the same two artifacts (docs/method.md §10):

- a :class:`~c2am.data.voc.Manifest` (``manifest.json``) with the split roles ``train`` (what every network
  learns from), ``val`` (held out of training; its GT boxes choose the map threshold) and ``test`` (scored
  only), one image-level label per image (class index 1..K after ``background``), so that the existing stages
  (train_c2am, infer_c2am, train_classifier) read it unchanged;
- the ground truth ``gt.json``: per image its GT boxes and its size, read by the final scoring only; and
  ``gt_train.json`` / ``gt_val.json``, one split each, for the stages that score or choose on train or val.

**CUB-200-2011 as distributed** (``read_cub``), under ``root``::

    images/<class folder>/<file>.jpg
    images.txt              <image_id> <image_name>          (ids 1-based integers, names relative to images/)
    image_class_labels.txt  <image_id> <class_id>            (class ids 1..K as in classes.txt)
    bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (pixels; one box per image)
    train_test_split.txt    <image_id> <is_training_image>   (1 = train, 0 = test)
    classes.txt             <class_id> <class_name>

A box ``x y width height`` is read as the 0-based inclusive pixel box ``[x, y, x + width, y + height]``:
the origin is the top-left pixel (0, 0) and ``width`` is the difference of the first and last column, not a
pixel count. CUB's README does not say; the data does: over its 11,788 boxes ``x = 0`` occurs 73 times and
``x + width = W - 1`` 156 times, but ``x + width = W`` never, which fits this reading and no other (the
"Evaluating WSOL methods right" metadata writes the same boxes as ``x0 = x, x1 = x + width``). Non-integer
values are rounded half up. The ``val`` role is a seeded share (``val_fraction``) of each class's training
images, taken out of ``train``.

**The metadata layout of "Evaluating WSOL methods right"** (Choe et al., CVPR 2020, clovaai/wsolevaluation;
``read_wsol_metadata``): images under ``root`` at ``<root>/<image_id>``, and under ``metadata`` one folder per
split ``train`` (their train-weaksup), ``val`` (train-fullsup: CUBV2, ImageNetV2) and ``test``::

    image_ids.txt      <image_id>                 the image's path under root, e.g. 001.Black_footed_Albatross/x.jpg
    class_labels.txt   <image_id>,<class>         0-based class index
    image_sizes.txt    <image_id>,<width>,<height>
    localization.txt   <image_id>,<x0>,<y0>,<x1>,<y1>   one line per box; an image may have several

Boxes are read as 0-based inclusive pixel boxes ``[x0, y0, x1, y1]``, the convention of that benchmark's IoU
(areas ``(x1 - x0 + 1) (y1 - y0 + 1)``). ``image_sizes.txt`` and ``localization.txt`` are required for ``val``
and ``test`` and optional for ``train`` (ImageNet's train boxes are not used by anything here). Class names are
the images' folder names when every image of a class shares one (CUB species, ImageNet wnids), else
``class_<k>``.

In both layouts an image id of the manifest is the image's path under the image folder without ``.jpg``;
images with another extension (ImageNet's ``.JPEG``, ImageNetV2's ``.jpeg``) keep theirs in the manifest's
``image_files``. Every bad input raises :class:`~c2am.io.InputError` naming the file and the line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c2am.data.voc import Manifest, image_size
from c2am.io import InputError, load_json, save_json

WSOL_SPLITS = ("train", "val", "test")
GT_CONVENTION = "0-based inclusive pixel boxes [x1, y1, x2, y2]; sizes [height, width]"
CUB_FILES = ("images.txt", "image_class_labels.txt", "bounding_boxes.txt", "train_test_split.txt", "classes.txt")
METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


@dataclass
class WsolData:
    """A WSOL dataset in memory: what :func:`save_wsol` writes as manifest + GT file."""

    root: Path
    classes: list[str]  # "background" first; image labels are indices 1..K
    splits: dict[str, list[str]]
    labels: dict[str, int]
    boxes: dict[str, list[list[int]]]  # 0-based inclusive; images without boxes are absent
    sizes: dict[str, tuple[int, int]]  # (height, width), where known
    image_dir: str = ""
    image_files: dict[str, str] = field(default_factory=dict)  # id -> file under root, when not image_dir/<id>.jpg
    source: str = ""

    def manifest(self) -> Manifest:
        m = Manifest(root=self.root, classes=list(self.classes), splits={k: list(v) for k, v in self.splits.items()},
                     labels={i: [c] for i, c in self.labels.items()}, image_dir=self.image_dir, mask_dir="",
                     annotation_dir="")
        if self.image_files:
            m.image_files = dict(self.image_files)
        return m


# ----------------------------------------------------------------------------- line readers


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-empty line; a missing file is an InputError."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]


def _fields(path: Path, n: int, text: str, count: int, sep: str | None) -> list[str]:
    parts = [p.strip() for p in text.split(sep)] if sep else text.split()
    if len(parts) != count:
        raise InputError(f"{path}:{n}: expected {count} fields, got {len(parts)} ({text!r})")
    return parts


def _int(path: Path, n: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path}:{n}: {what} {text!r} is not an integer") from None


def _number(path: Path, n: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}:{n}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{path}:{n}: {what} {text!r} is not finite")
    return value


def round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def check_box(box: list[int], size: tuple[int, int], where: str) -> None:
    """A 0-based inclusive box must have x1 <= x2, y1 <= y2 and lie inside an image of ``size`` (H, W)."""
    x1, y1, x2, y2 = box
    h, w = size
    if x1 > x2 or y1 > y2:
        raise InputError(f"{where}: box {box} has x1 > x2 or y1 > y2")
    if x1 < 0 or y1 < 0 or x2 > w - 1 or y2 > h - 1:
        raise InputError(f"{where}: box {box} lies outside the {w}x{h} image "
                         f"(0-based inclusive pixels: x in 0..{w - 1}, y in 0..{h - 1})")


def _split_image_name(name: str) -> tuple[str, str | None]:
    """(manifest id, file override): ``a/b.jpg`` -> (``a/b``, None); ``a/b.JPEG`` -> (``a/b``, ``a/b.JPEG``)."""
    stem, ext = os.path.splitext(name)
    if not stem or not ext:
        return name, name
    return stem, None if ext == ".jpg" else name


def _bad_name(name: str) -> bool:
    parts = Path(name).parts
    return name.startswith("/") or ".." in parts or "\\" in name or not parts


# ----------------------------------------------------------------------------- CUB-200-2011


def read_cub(root, val_fraction: float, seed: int, num_classes: int | None = None) -> WsolData:
    """CUB-200-2011 as distributed (see the module docstring); ``val`` = a seeded share of each class's train.

    ``num_classes``: when given, classes.txt must list exactly that many classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: CUB dataset root not found")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction: must lie in (0, 1), got {val_fraction}")
    paths = {name: root / name for name in CUB_FILES}

    # classes.txt: ids 1..K in order
    classes: list[str] = []
    for n, text in _lines(paths["classes.txt"]):
        cid, _, name = text.partition(" ")
        cid = _int(paths["classes.txt"], n, cid, "class id")
        if not name.strip():
            raise InputError(f"{paths['classes.txt']}:{n}: class {cid} has no name")
        if cid != len(classes) + 1:
            raise InputError(f"{paths['classes.txt']}:{n}: class id {cid}, expected {len(classes) + 1} "
                             "(ids must run 1..K in order)")
        classes.append(name.strip())
    if not classes:
        raise InputError(f"{paths['classes.txt']}: no classes")
    if num_classes is not None and len(classes) != num_classes:
        raise InputError(f"{paths['classes.txt']}: lists {len(classes)} classes, the config says "
                         f"num_classes {num_classes}")

    # images.txt: integer id -> relative name; the image must exist
    names: dict[int, str] = {}
    where: dict[int, int] = {}
    image_files: dict[str, str] = {}
    manifest_id: dict[int, str] = {}
    taken: set[str] = set()
    for n, text in _lines(paths["images.txt"]):
        iid, name = _fields(paths["images.txt"], n, text, 2, None)
        iid = _int(paths["images.txt"], n, iid, "image id")
        if iid in names:
            raise InputError(f"{paths['images.txt']}:{n}: image id {iid} listed twice (first on line {where[iid]})")
        if _bad_name(name):
            raise InputError(f"{paths['images.txt']}:{n}: image name {name!r} must be a relative path inside images/")
        if not (root / "images" / name).is_file():
            raise InputError(f"{paths['images.txt']}:{n}: image {root / 'images' / name} not found")
        mid, override = _split_image_name(name)
        if mid in taken:
            raise InputError(f"{paths['images.txt']}:{n}: image {name} listed twice")
        taken.add(mid)
        names[iid], where[iid], manifest_id[iid] = name, n, mid
        if override is not None:
            image_files[mid] = f"images/{override}"
    if not names:
        raise InputError(f"{paths['images.txt']}: no images")

    def per_image(file: str, count: int, parse) -> dict[int, object]:
        out, seen = {}, {}
        for n, text in _lines(paths[file]):
            parts = _fields(paths[file], n, text, count, None)
            iid = _int(paths[file], n, parts[0], "image id")
            if iid not in names:
                raise InputError(f"{paths[file]}:{n}: image id {iid} is not in images.txt")
            if iid in out:
                raise InputError(f"{paths[file]}:{n}: image id {iid} listed twice (first on line {seen[iid]})")
            out[iid], seen[iid] = parse(n, parts[1:]), n
        missing = [i for i in names if i not in out]
        if missing:
            raise InputError(f"{paths[file]}: no entry for image id {missing[0]} ({names[missing[0]]}; "
                             f"{len(missing)} of {len(names)} images missing)")
        return out

    def parse_class(n, parts):
        cid = _int(paths["image_class_labels.txt"], n, parts[0], "class id")
        if not 1 <= cid <= len(classes):
            raise InputError(f"{paths['image_class_labels.txt']}:{n}: class id {cid} out of range "
                             f"1..{len(classes)} (classes.txt)")
        return cid

    def parse_split(n, parts):
        if parts[0] not in ("0", "1"):
            raise InputError(f"{paths['train_test_split.txt']}:{n}: is_training_image must be 0 or 1, got {parts[0]!r}")
        return parts[0] == "1"

    def parse_box(n, parts):
        return n, [_number(paths["bounding_boxes.txt"], n, p, k) for p, k in zip(parts, ("x", "y", "width", "height"))]

    labels = per_image("image_class_labels.txt", 2, parse_class)
    is_train = per_image("train_test_split.txt", 2, parse_split)
    raw_boxes = per_image("bounding_boxes.txt", 5, parse_box)

    sizes, boxes = {}, {}
    for iid, (n, (x, y, w, h)) in raw_boxes.items():
        size = image_size(root / "images" / names[iid])
        if w < 0 or h < 0:
            raise InputError(f"{paths['bounding_boxes.txt']}:{n}: negative width or height ({w}, {h})")
        box = [round_half_up(x), round_half_up(y), round_half_up(x + w), round_half_up(y + h)]
        check_box(box, size, f"{paths['bounding_boxes.txt']}:{n}")
        sizes[manifest_id[iid]] = size
        boxes[manifest_id[iid]] = [box]

    order = sorted(names)
    train_all = [i for i in order if is_train[i]]
    test = [manifest_id[i] for i in order if not is_train[i]]
    if not train_all or not test:
        raise InputError(f"{paths['train_test_split.txt']}: needs both training (1) and test (0) images")
    held_out = _held_out(train_all, labels, val_fraction, seed)
    splits = {
        "train": [manifest_id[i] for i in train_all if i not in held_out],
        "val": [manifest_id[i] for i in train_all if i in held_out],
        "test": test,
    }
    if not splits["val"]:
        raise InputError(f"val_fraction {val_fraction}: holds out no training image; raise it")
    return WsolData(
        root=root, classes=["background"] + classes, splits=splits,
        labels={manifest_id[i]: labels[i] for i in order}, boxes=boxes, sizes=sizes, image_dir="images",
        image_files=image_files, source=f"cub:{root}",
    )


def _held_out(train_ids: list[int], labels: dict[int, int], fraction: float, seed: int) -> set[int]:
    """round(fraction * n_c) training images of each class c, drawn with rng [seed, c] (stratified, seeded)."""
    held = set()
    for c in sorted({labels[i] for i in train_ids}):
        ids = [i for i in train_ids if labels[i] == c]
        k = min(len(ids) - 1, round_half_up(fraction * len(ids)))  # keep at least one training image per class
        if k > 0:
            picked = np.random.default_rng([int(seed), int(c)]).choice(len(ids), size=k, replace=False)
            held.update(ids[j] for j in picked)
    return held


# ----------------------------------------------------------------------------- wsolevaluation metadata


def read_wsol_metadata(root, metadata, num_classes: int) -> WsolData:
    """The metadata layout of Choe et al. (see the module docstring); ``num_classes``: labels lie in 0..N-1."""
    root, metadata = Path(root), Path(metadata)
    if not root.is_dir():
        raise InputError(f"{root}: image root not found")
    if not metadata.is_dir():
        raise InputError(f"{metadata}: metadata folder not found")
    if num_classes < 1:
        raise InputError(f"num_classes: must be >= 1, got {num_classes}")
    splits, labels, boxes, sizes, image_files = {}, {}, {}, {}, {}
    first_split: dict[str, str] = {}
    for split in WSOL_SPLITS:
        folder = metadata / split
        ids_path = folder / "image_ids.txt"
        ids, seen = [], {}
        for n, name in _lines(ids_path):
            if name in seen:
                raise InputError(f"{ids_path}:{n}: image {name} listed twice (first on line {seen[name]})")
            if name in first_split:
                raise InputError(f"{ids_path}:{n}: image {name} is also in split '{first_split[name]}'; "
                                 "splits must be disjoint")
            if _bad_name(name):
                raise InputError(f"{ids_path}:{n}: image id {name!r} must be a relative path under the image root")
            if not (root / name).is_file():
                raise InputError(f"{ids_path}:{n}: image {root / name} not found")
            seen[name] = n
            first_split[name] = split
            ids.append(name)
        if not ids:
            raise InputError(f"{ids_path}: no images")
        known = set(ids)

        def rows(file: str, count: int, required: bool):
            path = folder / file
            if not path.is_file() and not required:
                return None
            out = []
            for n, text in _lines(path):
                parts = _fields(path, n, text, count, ",")
                if parts[0] not in known:
                    raise InputError(f"{path}:{n}: image {parts[0]} is not in {ids_path.name} of split '{split}'")
                out.append((path, n, parts))
            return out

        split_labels = {}
        for path, n, (name, cls) in rows("class_labels.txt", 2, True):
            c = _int(path, n, cls, "class")
            if not 0 <= c < num_classes:
                raise InputError(f"{path}:{n}: class {c} out of range 0..{num_classes - 1} (num_classes {num_classes})")
            if name in split_labels:
                raise InputError(f"{path}:{n}: image {name} labelled twice")
            split_labels[name] = c
        missing = [i for i in ids if i not in split_labels]
        if missing:
            raise InputError(f"{folder / 'class_labels.txt'}: no class for image {missing[0]} "
                             f"({len(missing)} of {len(ids)} missing)")

        needs_boxes = split != "train"
        size_rows = rows("image_sizes.txt", 3, needs_boxes)
        split_sizes = {}
        for path, n, (name, w, h) in size_rows or []:
            w, h = _int(path, n, w, "width"), _int(path, n, h, "height")
            actual = image_size(root / name)
            if actual != (h, w):
                raise InputError(f"{path}:{n}: size {w}x{h} of {name}, but the image is {actual[1]}x{actual[0]}")
            split_sizes[name] = (h, w)
        box_rows = rows("localization.txt", 5, needs_boxes)
        split_boxes: dict[str, list[list[int]]] = {}
        for path, n, (name, *coords) in box_rows or []:
            if name not in split_sizes:
                raise InputError(f"{path}:{n}: image {name} has a box but no size in image_sizes.txt")
            box = [_int(path, n, v, k) for v, k in zip(coords, ("x0", "y0", "x1", "y1"))]
            check_box(box, split_sizes[name], f"{path}:{n}")
            split_boxes.setdefault(name, []).append(box)
        if box_rows is not None:
            missing = [i for i in ids if i not in split_boxes]
            if missing:
                raise InputError(f"{folder / 'localization.txt'}: no box for image {missing[0]} "
                                 f"({len(missing)} of {len(ids)} missing)")

        mids = []
        for name in ids:
            mid, override = _split_image_name(name)
            if override is not None:
                image_files[mid] = override
            mids.append(mid)
            labels[mid] = split_labels[name] + 1
            if name in split_boxes:
                boxes[mid] = split_boxes[name]
            if name in split_sizes:
                sizes[mid] = split_sizes[name]
        if len(set(mids)) != len(mids):
            raise InputError(f"{ids_path}: two images differ only in their extension")
        splits[split] = mids
    names = _class_names(splits["train"], labels, image_files, num_classes)
    return WsolData(root=root, classes=["background"] + names, splits=splits, labels=labels, boxes=boxes,
                    sizes=sizes, image_dir="", image_files=image_files, source=f"wsolmeta:{metadata}")


def _class_names(train_ids: list[str], labels: dict[str, int], image_files: dict[str, str], k: int) -> list[str]:
    """Per class, the folder name shared by all its training images, else ``class_<c>`` (c 0-based)."""
    folders: dict[int, set[str]] = {}
    for i in train_ids:
        folders.setdefault(labels[i] - 1, set()).add(Path(image_files.get(i, i)).parent.name)
    names = []
    for c in range(k):
        found = folders.get(c, set())
        names.append(next(iter(found)) if len(found) == 1 and next(iter(found)) else f"class_{c:03d}")
    if len(set(names)) != len(names):  # two classes in one folder: fall back to numbers
        names = [f"class_{c:03d}" for c in range(k)]
    return names


# ----------------------------------------------------------------------------- the GT file


def save_wsol(data: WsolData, manifest_path, gt_path, split_gt: dict | None = None) -> None:
    """Write the manifest (what training and inference read), the GT file of every split (what the final scoring
    reads) and, for each ``split -> path`` of ``split_gt``, a GT file of that split alone: what a stage that
    chooses or scores on train or val reads, so that no stage before the final scoring opens the test boxes."""
    data.manifest().save(manifest_path)
    for ids, path in [(list(data.boxes), gt_path)] + [(data.splits[k], p) for k, p in (split_gt or {}).items()]:
        ids = [i for i in ids if i in data.boxes]  # a split may have no boxes (ImageNet's train in the metadata)
        save_json(path, {
            "convention": GT_CONVENTION,
            "source": data.source,
            "boxes": {i: data.boxes[i] for i in ids},
            "sizes": {i: list(data.sizes[i]) for i in ids},
        })


@dataclass
class WsolGT:
    boxes: dict[str, list[list[int]]]
    sizes: dict[str, tuple[int, int]]
    source: Path

    def boxes_of(self, image_id: str) -> list[list[int]]:
        if image_id not in self.boxes:
            raise InputError(f"{self.source}: no GT box for image {image_id}")
        return self.boxes[image_id]

    def size_of(self, image_id: str) -> tuple[int, int]:
        if image_id not in self.sizes:
            raise InputError(f"{self.source}: no image size for image {image_id}")
        return self.sizes[image_id]


def load_gt(path) -> WsolGT:
    """The GT file written by :func:`save_wsol`, checked: boxes are 4 integers inside their image."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), dict) or not isinstance(data.get("sizes"), dict):
        raise InputError(f"{path}: not a WSOL GT file (needs 'boxes' and 'sizes')")
    sizes = {}
    for i, s in data["sizes"].items():
        if not (isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and v > 0 for v in s)):
            raise InputError(f"{path}: size of {i} is {s!r}, expected [height, width]")
        sizes[i] = (s[0], s[1])
    boxes = {}
    for i, bs in data["boxes"].items():
        if not isinstance(bs, list) or not bs or i not in sizes:
            raise InputError(f"{path}: boxes of {i} must be a non-empty list, with the image's size")
        for b in bs:
            if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) for v in b)):
                raise InputError(f"{path}: box {b!r} of {i} is not [x1, y1, x2, y2]")
            check_box(b, sizes[i], f"{path}: {i}")
        boxes[i] = bs
    return WsolGT(boxes=boxes, sizes=sizes, source=path)


def class_index(manifest: Manifest, image_id: str) -> int:
    """The one image-level class (1..K) of a WSOL image."""
    labels = manifest.labels.get(image_id)
    if not labels or len(labels) != 1:
        raise InputError(f"{manifest.source}: image {image_id} needs exactly one class label, has {labels}")
    return int(labels[0])
