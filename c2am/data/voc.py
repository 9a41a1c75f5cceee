"""Reader for a PASCAL VOC 2012 (+ SBD ``SegmentationClassAug``) tree.

The embedded synthetic dataset is written in exactly this layout, so both go through this code.
``build_manifest`` validates a tree once (lists, files, mask sizes and values) and records the ids of each
split role and the image-level labels derived from the masks; every later stage reads that manifest through
:class:`Manifest` instead of re-scanning the tree.

Split roles: ``train`` (what the networks learn from; ``train_aug`` on VOC), ``pseudo_eval`` (the subset of
train whose GT scores the pseudo masks; ``train`` on VOC) and ``val``.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from c2am.artifacts import check_labels
from c2am.io import InputError, load_image, load_json, load_label_png, save_json

SPLIT_ROLES = ("train", "pseudo_eval", "val")


def read_id_list(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: image list not found")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: image list is empty")
    return ids


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    from PIL import Image

    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except OSError as e:
        raise InputError(f"{path}: corrupt or unreadable image ({e})") from None
    return h, w


def labels_from_mask(mask: np.ndarray, num_classes: int) -> list[int]:
    """Foreground classes present in a mask (background 0 and ignore 255 excluded)."""
    present = np.unique(mask)
    return [int(c) for c in present if 0 < c < num_classes]


@dataclass
class Manifest:
    root: Path
    classes: list[str]
    splits: dict[str, list[str]]
    labels: dict[str, list[int]]
    image_dir: str = "JPEGImages"
    mask_dir: str = "SegmentationClassAug"
    annotation_dir: str = "Annotations"
    # Users' own data (c2am.data.folder, c2am.data.coco): the layout's reader, each image's file under root
    # (empty: image_dir/<id>.jpg), the ids that have a GT mask (None: all) and whether GT boxes exist.
    kind: str = "voc"
    image_files: dict[str, str] = field(default_factory=dict)
    masked: list[str] | None = None
    has_boxes: bool = True
    source: Path | None = field(default=None, compare=False)

    # -- persistence

    @classmethod
    def load(cls, path) -> "Manifest":
        path = Path(path)
        data = load_json(path)
        try:
            m = cls(
                root=path.parent / data["root"],  # stored relative to the manifest: any cwd works
                classes=list(data["classes"]),
                splits={k: list(v) for k, v in data["splits"].items()},
                labels={k: list(v) for k, v in data["labels"].items()},
                image_dir=data["image_dir"],
                mask_dir=data["mask_dir"],
                annotation_dir=data["annotation_dir"],
                kind=data.get("kind", "voc"),
                image_files=dict(data.get("image_files", {})),
                masked=None if data.get("masked") is None else list(data["masked"]),
                has_boxes=bool(data.get("has_boxes", True)),
                source=path,
            )
        except KeyError as e:
            raise InputError(f"{path}: not a dataset manifest (missing key {e})") from None
        if not m.root.is_dir():
            raise InputError(f"{path}: dataset root {m.root} not found")
        return m

    def save(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(
            path,
            {
                "root": os.path.relpath(self.root.resolve(), path.parent.resolve()),
                "classes": self.classes,
                "image_dir": self.image_dir,
                "mask_dir": self.mask_dir,
                "annotation_dir": self.annotation_dir,
                "splits": self.splits,
                "labels": self.labels,
                "kind": self.kind,
                "image_files": self.image_files,
                "masked": self.masked,
                "has_boxes": self.has_boxes,
            },
        )

    # -- lookups

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def ids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise InputError(f"{self.source}: no split '{split}' (has {sorted(self.splits)})")
        return self.splits[split]

    def image_path(self, image_id: str) -> Path:
        name = self.image_files.get(image_id)
        return self.root / name if name is not None else self.root / self.image_dir / f"{image_id}.jpg"

    @functools.cached_property
    def _masked(self) -> frozenset[str]:
        return frozenset(self.masked or ())

    def has_mask(self, image_id: str) -> bool:
        """Whether the image has a GT mask (used for scoring only)."""
        return self.masked is None or image_id in self._masked

    def gt_ids(self, split: str) -> list[str]:
        """The split's ids that have a GT mask, in split order: what scoring stages score."""
        ids = self.ids(split)
        return ids if self.masked is None else [i for i in ids if i in self._masked]

    def require_gt_ids(self, split: str) -> list[str]:
        """:meth:`gt_ids`, or an InputError when the split has no GT mask at all."""
        ids = self.gt_ids(split)
        if not ids:
            raise InputError(f"{self.source}: split '{split}' has no ground-truth masks: nothing to score")
        return ids

    def mask_path(self, image_id: str, mask_dir=None) -> Path:
        folder = Path(mask_dir) if mask_dir is not None else self.root / self.mask_dir
        return folder / f"{image_id}.png"

    def annotation_path(self, image_id: str) -> Path:
        return self.root / self.annotation_dir / f"{image_id}.xml"

    def load_image(self, image_id: str) -> np.ndarray:
        return load_image(self.image_path(image_id))

    def load_mask(self, image_id: str, mask_dir=None) -> np.ndarray:
        """GT mask (or, with ``mask_dir``, a label PNG of the same id), validated against its image."""
        path = self.mask_path(image_id, mask_dir)
        mask = load_label_png(path)
        check_labels(mask, path, image_size(self.image_path(image_id)), self.num_classes)
        return mask

    def image_labels(self, split: str) -> dict[str, list[int]]:
        return {i: self.labels[i] for i in self.ids(split)}

    def multi_hot(self, image_id: str) -> np.ndarray:
        """Image-level labels over the foreground classes 1..C-1 (length C-1)."""
        y = np.zeros(self.num_classes - 1, dtype=np.float32)
        for c in self.labels[image_id]:
            y[c - 1] = 1.0
        return y

    def gt_boxes(self, image_id: str) -> list[tuple[int, list[int]]]:
        """(class index, [x1, y1, x2, y2]) per object of the Annotations XML, 0-based inclusive pixels."""
        if not self.has_boxes:
            raise InputError(f"{self.source}: the dataset has no ground-truth boxes (kind {self.kind})")
        path = self.annotation_path(image_id)
        if not path.is_file():
            raise InputError(f"{path}: annotation not found")
        try:
            tree = ET.parse(path)
        except ET.ParseError as e:
            raise InputError(f"{path}: corrupt annotation XML ({e})") from None
        boxes = []
        for obj in tree.getroot().iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in self.classes:
                raise InputError(f"{path}: unknown class '{name}' (not in the class list)")
            bb = obj.find("bndbox")
            if bb is None:
                raise InputError(f"{path}: object '{name}' has no bndbox")
            # VOC boxes are 1-based inclusive; convert to 0-based inclusive pixel indices.
            x1, y1, x2, y2 = (int(round(float(bb.findtext(k)))) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((self.classes.index(name), [x1, y1, x2, y2]))
        return boxes


def build_manifest(
    root,
    classes: list[str],
    split_lists: dict[str, str],
    mask_dir: str = "SegmentationClassAug",
    list_dir: str = "ImageSets/Segmentation",
) -> Manifest:
    """Validate a VOC-layout tree and return its manifest.

    ``split_lists`` maps each role to a list name, e.g. ``{"train": "train_aug", "pseudo_eval": "train", "val": "val"}``.
    Every listed image must decode and every mask must match its image and the class list.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset root not found")
    missing_roles = [r for r in SPLIT_ROLES if r not in split_lists]
    if missing_roles:
        raise InputError(f"dataset.splits: missing role(s) {missing_roles}")
    if len(classes) < 2 or classes[0] != "background":
        raise InputError("dataset.classes: must start with 'background' and name at least one object class")
    m = Manifest(root=root, classes=list(classes), splits={}, labels={}, mask_dir=mask_dir)
    for role in SPLIT_ROLES:
        m.splits[role] = read_id_list(root / list_dir / f"{split_lists[role]}.txt")
    all_ids = sorted({i for ids in m.splits.values() for i in ids})
    for image_id in tqdm(all_ids, desc="validate dataset", unit="img"):
        image = m.load_image(image_id)  # decodes: a corrupt JPEG fails here, naming its path
        path = m.mask_path(image_id)
        mask = load_label_png(path)
        check_labels(mask, path, image.shape[:2], m.num_classes)
        m.labels[image_id] = labels_from_mask(mask, m.num_classes)
    return m
