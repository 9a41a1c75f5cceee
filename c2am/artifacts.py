"""One reader and one writer for each artifact that passes between stages (docs/method.md §7).

| artifact | file | content |
|---|---|---|
| C2AM map | ``<id>.npy`` | float16 H x W foreground probability in [0, 1] |
| cue | ``<id>.png`` | grayscale, 255 = foreground, 0 = background, nothing else |
| CAMs | ``<id>.npz`` | ``classes`` int64 (K image-level class indices >= 1), ``cams`` float16 K x H x W in [0, 1] |
| label map | ``<id>.png`` | VOC-palette indices 0..C-1, ``IGNORE`` (255) = no label / uncertain |
| boxes | ``boxes.json`` | image id -> [x1, y1, x2, y2] (0-based, inclusive) or null |

Readers check shape, size and value range and raise :class:`c2am.io.InputError` naming the file; writers are
atomic (c2am.io). Sizes in messages are width x height, as image viewers show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from c2am.io import (
    IGNORE,
    InputError,
    load_json,
    load_label_png,
    load_npy,
    load_npz,
    save_gray_png,
    save_json,
    save_label_png,
    save_npy,
    save_npz,
)
from c2am.refine import background_from_cue, background_from_saliency, check_cams


def _wxh(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def check_size(array: np.ndarray, path, size, what: str) -> None:
    """``array``'s last two dimensions must be ``size`` (H, W) when a size is given."""
    if size is not None and tuple(array.shape[-2:]) != tuple(size):
        raise InputError(f"{path}: {what} size {_wxh(array.shape[-2:])} differs from its image's {_wxh(size)}")


def require_files(folder, ids: Iterable[str], suffix: str, what: str) -> list[Path]:
    """``folder/<id><suffix>`` for every id; one InputError naming the first missing file and how many are."""
    paths = [Path(folder) / f"{i}{suffix}" for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: {what} not found ({len(missing)} of {len(paths)} missing)")
    return paths


# ----------------------------------------------------------------------------- C2AM maps


def save_map(path, fmap: np.ndarray) -> None:
    save_npy(path, np.asarray(fmap).astype(np.float16))


def load_map(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A C2AM map as float32 H x W in [0, 1]."""
    fmap = load_npy(path)
    if fmap.ndim != 2:
        raise InputError(f"{path}: expected an H x W map, got shape {fmap.shape}")
    check_size(fmap, path, size, "map")
    fmap = fmap.astype(np.float32)
    if not np.isfinite(fmap).all() or fmap.min() < 0 or fmap.max() > 1:
        raise InputError(f"{path}: map values must be finite and in [0, 1]")
    return fmap


# ----------------------------------------------------------------------------- cues


def save_cue(path, foreground: np.ndarray) -> None:
    save_gray_png(path, np.where(np.asarray(foreground, dtype=bool), 255, 0).astype(np.uint8))


def load_cue(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A cue as a boolean H x W foreground mask."""
    cue = load_label_png(path)
    check_size(cue, path, size, "cue")
    values = np.unique(cue)
    if not set(values.tolist()) <= {0, 255}:
        raise InputError(f"{path}: a cue holds only 0 and 255, found {values[:5].tolist()}")
    return cue == 255


def load_background(image_id: str, size: tuple[int, int], cues_dir=None, saliency_dir=None) -> np.ndarray:
    """A pseudo-label variant's background score B of one image (docs/method.md §5): 1 - cue from
    ``cues_dir/<id>.png``, or 1 - S from ``saliency_dir/<id>.npy``; exactly one of the two folders."""
    if (cues_dir is None) == (saliency_dir is None):
        raise ValueError("give exactly one of cues_dir and saliency_dir")
    if cues_dir is not None:
        return background_from_cue(load_cue(Path(cues_dir) / f"{image_id}.png", size))
    return background_from_saliency(load_map(Path(saliency_dir) / f"{image_id}.npy", size))


# ----------------------------------------------------------------------------- class CAMs


def save_cams(path, classes, cams: np.ndarray) -> None:
    save_npz(path, classes=np.asarray(classes, dtype=np.int64), cams=np.asarray(cams).astype(np.float16))


def load_cams(path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(K x H x W float32 CAMs, K int64 class indices >= 1)."""
    data = load_npz(path)
    if "cams" not in data or "classes" not in data:
        raise InputError(f"{path}: expected arrays 'cams' and 'classes', found {sorted(data)}")
    try:
        cams, classes = check_cams(data["cams"], data["classes"])
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    check_size(cams, path, size, "CAM")
    return cams, classes


# ----------------------------------------------------------------------------- label maps


def check_labels(labels: np.ndarray, path, size: tuple[int, int] | None, num_classes: int, what: str = "mask") -> None:
    """A label map must match its image's size and hold only class indices 0..num_classes-1 or IGNORE."""
    check_size(labels, path, size, what)
    values = np.unique(labels)
    bad = values[(values >= num_classes) & (values != IGNORE)]
    if bad.size:
        raise InputError(
            f"{path}: {what} holds class index {int(bad[0])}, outside the class list "
            f"(0..{num_classes - 1}, {IGNORE} = ignore)"
        )


def save_labels(path, labels: np.ndarray) -> None:
    save_label_png(path, labels)


def load_labels(path, size: tuple[int, int] | None, num_classes: int, what: str = "label map") -> np.ndarray:
    """A label PNG (pseudo labels, predictions, GT masks) as uint8 H x W, checked by :func:`check_labels`."""
    labels = load_label_png(path)
    check_labels(labels, path, size, num_classes, what)
    return labels


# ----------------------------------------------------------------------------- boxes


def save_boxes(path, boxes: dict) -> None:
    save_json(path, boxes)


def load_boxes(path) -> dict:
    boxes = load_json(path)
    if not isinstance(boxes, dict):
        raise InputError(f"{path}: expected an object mapping image id to a box or null")
    for image_id, box in boxes.items():
        if box is not None and (not isinstance(box, list) or len(box) != 4):
            raise InputError(f"{path}: box of {image_id} is {box!r}, expected [x1, y1, x2, y2] or null")
    return boxes
