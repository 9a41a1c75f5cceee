"""Reader for a user's own dataset (``dataset.kind: folder``): a folder of images, a label file, optional masks.

Layout under ``dataset.root`` (folder names are config keys, ``dataset.folder.*`` and ``dataset.mask_dir``)::

    images/             the images: .jpg, .jpeg or .png (any case), any size; RGB, grayscale, CMYK or palette
                        (converted to RGB on read). No subfolders.
    labels.csv          one row per image, with a header:  image,labels[,split]
    splits/<name>.txt   split lists, one image per line (only when labels.csv has no ``split`` column)
    masks/<id>.png      optional GT masks (indexed PNGs, class indices, 255 = ignore) for any subset of the
                        images; used only for scoring

``labels.csv`` columns (other columns are ignored):

- ``image``: the image's file name in ``images/`` (``cat_01.jpg``) or its id, the file name without extension
  (``cat_01``). The id names every artifact of the image, so ids are unique.
- ``labels``: the image's class names (from ``dataset.classes``, never ``background``), separated by ``;``.
  Empty: the image has no class label; it takes part in C2AM training and is background-only elsewhere.
- ``split`` (optional): the split names the image belongs to, separated by ``;`` (e.g. ``train`` or ``val``).
  Without this column, ``splits/<name>.txt`` lists each split, one file name or id per line.

``dataset.splits`` names the split of each role (train, pseudo_eval, val); pseudo_eval must be a subset of train.

This module imports only the standard library at the top: :func:`scan` and :func:`roles_with_masks` also run
inside the Snakemake process, where the DAG is built from what the data has (workflow/rules/common.smk). Decoding
and validating the pixels (:func:`build_folder_manifest`) imports numpy and PIL when called.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SEPARATOR = ";"
ROLES = ("train", "pseudo_eval", "val")
COLUMNS = ("image", "labels")  # required; "split" is optional


def _fail(message: str):
    """Raise c2am.io.InputError (imported here: c2am.io needs numpy, and this module must not)."""
    from c2am.io import InputError

    raise InputError(message)


@dataclass
class FolderScan:
    """What the label file and the split lists say, checked against the file names (no pixel read yet)."""

    root: Path
    files: dict[str, str]  # id -> file name in the image folder
    labels: dict[str, list[str]]  # id -> class names
    splits: dict[str, list[str]]  # role -> ids, in file order
    masked: list[str] = field(default_factory=list)  # ids (of any role) with a mask file, sorted
    unused: int = 0  # label rows in no split of a role


def list_image_files(folder: Path) -> dict[str, list[str]]:
    """id (file name without extension) -> the image file names with that id in ``folder``."""
    if not folder.is_dir():
        _fail(f"{folder}: image folder not found")
    by_id: dict[str, list[str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTENSIONS and entry.is_file() and stem:
                by_id.setdefault(stem, []).append(entry.name)
    return by_id


def find_images(folder) -> list[str]:
    """The image files (.jpg, .jpeg, .png) directly in ``folder``, sorted; none when it is missing (no error)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(str(folder / name) for names in list_image_files(folder).values() for name in names)


class ImageFolder:
    """The images of a folder by id (file name without extension), for prediction on new images.

    ``load_image(id)`` reads any mode as RGB, as the datasets do; a missing or empty folder, or two files with one
    id (``a.jpg`` and ``a.png``: their outputs would collide), is an InputError naming it.
    """

    def __init__(self, folder, what: str = "image folder"):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            _fail(f"{self.folder}: {what} not found")
        by_id = list_image_files(self.folder)
        if not by_id:
            _fail(f"{self.folder}: {what} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        clash = next((sorted(names) for names in by_id.values() if len(names) > 1), None)
        if clash:
            _fail(f"{self.folder}: {' and '.join(clash)} have the same id (their outputs would collide); rename one")
        self.files = {image_id: names[0] for image_id, names in sorted(by_id.items())}
        self.ids = list(self.files)

    def image_path(self, image_id: str) -> Path:
        return self.folder / self.files[image_id]

    def load_image(self, image_id: str):
        from c2am.io import load_image

        return load_image(self.image_path(image_id))


def resolve_image(cell: str, by_id: dict[str, list[str]], folder: Path, where: str) -> tuple[str, str]:
    """(id, file name) of a label-file or split-list entry: a file name in ``folder`` or an id."""
    name = cell.strip()
    if not name:
        _fail(f"{where}: empty image name")
    if "/" in name or "\\" in name:
        _fail(f"{where}: image {name!r}: give a file name in {folder}, without folders")
    stem, ext = os.path.splitext(name)
    if ext.lower() in IMAGE_EXTENSIONS and name in by_id.get(stem, ()):
        return stem, name
    found = by_id.get(name, [])
    if len(found) == 1:
        return name, found[0]
    if len(found) > 1:
        _fail(f"{where}: image id {name!r} is ambiguous in {folder} ({', '.join(sorted(found))}); "
              "name the file with its extension")
    _fail(f"{where}: image {name!r} not found in {folder}")


def split_cell(cell: str | None) -> list[str]:
    return [part.strip() for part in (cell or "").split(SEPARATOR) if part.strip()]


def read_label_file(path: Path, classes: list[str], by_id: dict[str, list[str]], folder: Path):
    """(files, labels, split names per id or None when there is no split column), in row order."""
    if not path.is_file():
        _fail(f"{path}: label file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            _fail(f"{path}: header {header} lacks column(s) {missing} (expected image,labels[,split])")
        reader.fieldnames = header
        has_split = "split" in header
        known = set(classes[1:])
        files: dict[str, str] = {}
        labels: dict[str, list[str]] = {}
        splits: dict[str, list[str]] | None = {} if has_split else None
        line_of: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            where = f"{path} line {line}"
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            image_id, name = resolve_image(row["image"] or "", by_id, folder, where)
            if image_id in files:
                _fail(f"{where}: duplicate image id {image_id!r} (line {line_of[image_id]} has it too)")
            names = []
            for cls in split_cell(row["labels"]):
                if cls == classes[0]:
                    _fail(f"{where}: {cls!r} is not an image-level label (leave the cell empty for an image "
                          "without objects)")
                if cls not in known:
                    _fail(f"{where}: unknown class {cls!r} (dataset.classes: {', '.join(classes[1:])}; "
                          f"separate several with '{SEPARATOR}')")
                if cls not in names:
                    names.append(cls)
            files[image_id], labels[image_id], line_of[image_id] = name, names, line
            if splits is not None:
                own = split_cell(row.get("split"))
                repeated = sorted({s for s in own if own.count(s) > 1})
                if repeated:
                    _fail(f"{where}: image {image_id!r} is listed twice in split {repeated[0]!r}")
                splits[image_id] = own
    if not files:
        _fail(f"{path}: no image rows")
    return files, labels, splits


def read_split_list(path: Path, by_id, folder: Path, files: dict[str, str], label_file: Path) -> list[str]:
    if not path.is_file():
        _fail(f"{path}: split list not found (or give labels.csv a 'split' column)")
    ids: list[str] = []
    line_of: dict[str, int] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path} line {line}"
        image_id, _ = resolve_image(text, by_id, folder, where)
        if image_id not in files:
            _fail(f"{where}: image {image_id!r} has no row in {label_file}")
        if image_id in line_of:
            _fail(f"{where}: image {image_id!r} is listed twice in this split (line {line_of[image_id]} too)")
        line_of[image_id] = line
        ids.append(image_id)
    return ids


def scan(root, classes: list[str], split_names: dict[str, str], image_dir: str = "images",
         labels_csv: str = "labels.csv", split_dir: str = "splits", mask_dir: str = "masks") -> FolderScan:
    """Read the label file and split lists of a folder dataset and find its masks; no image is decoded."""
    root = Path(root)
    if not root.is_dir():
        _fail(f"{root}: dataset root not found")
    if len(classes) < 2 or classes[0] != "background":
        _fail("dataset.classes: must start with 'background' and name at least one object class")
    folder = root / image_dir
    by_id = list_image_files(folder)
    label_file = root / labels_csv
    files, labels, split_of = read_label_file(label_file, classes, by_id, folder)
    splits: dict[str, list[str]] = {}
    for role in ROLES:
        name = split_names[role]
        if split_of is not None:
            ids = [i for i in files if name in split_of[i]]
            source = f"{label_file} (no row has split {name!r})"
        else:
            path = root / split_dir / f"{name}.txt"
            ids = read_split_list(path, by_id, folder, files, label_file)
            source = str(path)
        if not ids:
            _fail(f"dataset.splits.{role}: split {name!r} is empty: {source}")
        splits[role] = ids
    train = set(splits["train"])
    outside = [i for i in splits["pseudo_eval"] if i not in train]
    if outside:
        _fail(f"dataset.splits.pseudo_eval: image {outside[0]!r} of split {split_names['pseudo_eval']!r} is not in "
              f"the train split {split_names['train']!r} (pseudo masks are made for train images only)")
    used = sorted({i for ids in splits.values() for i in ids})
    masks = root / mask_dir
    masked = [i for i in used if (masks / f"{i}.png").is_file()] if masks.is_dir() else []
    return FolderScan(root=root, files=files, labels=labels, splits=splits, masked=masked,
                      unused=len(files) - len(used))


def roles_with_masks(dataset: dict) -> dict[str, bool]:
    """Per split role, whether any of its images has a GT mask, for the workflow to leave out what cannot be scored.

    Only a ``folder`` dataset may lack masks; every other kind has them. A folder dataset that cannot be read is
    reported as fully masked: prepare_dataset then fails on it with the precise error.
    """
    everything = {role: True for role in ROLES}
    if dataset.get("kind") != "folder":
        return everything
    layout = dataset.get("folder") or {}
    try:
        found = scan(dataset["root"], dataset["classes"], dataset["splits"], mask_dir=dataset["mask_dir"],
                     **{k: layout[k] for k in ("image_dir", "labels_csv", "split_dir") if k in layout})
    except Exception:  # noqa: BLE001 - any fault is prepare_dataset's to report
        return everything
    masked = set(found.masked)
    return {role: any(i in masked for i in ids) for role, ids in found.splits.items()}


def build_folder_manifest(root, classes: list[str], split_names: dict[str, str], image_dir: str = "images",
                          labels_csv: str = "labels.csv", split_dir: str = "splits", mask_dir: str = "masks"):
    """Validate a folder dataset (every image decodes, every mask fits its image and the classes) -> Manifest."""
    import logging

    from tqdm import tqdm

    from c2am.artifacts import check_labels
    from c2am.data.voc import Manifest, image_size, labels_from_mask
    from c2am.io import load_image, load_label_png

    log = logging.getLogger("c2am.data.folder")
    found = scan(root, classes, split_names, image_dir, labels_csv, split_dir, mask_dir)
    root = Path(root)
    used = sorted({i for ids in found.splits.values() for i in ids})
    masked = set(found.masked)
    manifest = Manifest(
        root=root, classes=list(classes), splits=found.splits,
        labels={i: sorted(classes.index(c) for c in found.labels[i]) for i in used},
        image_dir=image_dir, mask_dir=mask_dir, annotation_dir="", kind="folder",
        image_files={i: f"{image_dir}/{found.files[i]}" for i in used},
        masked=sorted(masked), has_boxes=False,
    )
    disagree = 0
    for image_id in tqdm(used, desc="validate dataset", unit="img"):
        if image_id in masked:
            path = manifest.mask_path(image_id)
            mask = load_label_png(path)
            check_labels(mask, path, image_size(manifest.image_path(image_id)), manifest.num_classes)
            disagree += set(labels_from_mask(mask, manifest.num_classes)) != set(manifest.labels[image_id])
        load_image(manifest.image_path(image_id))  # decodes: a corrupt file fails here, naming its path
    if found.unused:
        log.info("%s: %d labelled image(s) belong to no split of a role and are left out", root, found.unused)
    for role, ids in found.splits.items():
        log.info("split %s (%s): %d images, %d with a GT mask", role, split_names[role], len(ids),
                 sum(i in masked for i in ids))
    if disagree:
        log.warning("%d mask(s) hold other classes than their image's labels (the labels are what trains)",
                    disagree)
    return manifest
