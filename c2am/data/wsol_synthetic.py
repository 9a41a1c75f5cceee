"""The embedded WSOL dataset: the segmentation generator's world, one object per image, written in the CUB layout.

Each image holds exactly one object, as in CUB-200-2011. Objects, badges and backgrounds are those of
:mod:`c2am.data.synthetic` (the segmentation default): a class-shared textured body with a small class badge
(the badge is the only class evidence), on a natural-photo or tinted-texture background; object area 10-40 %
of the image, as that generator's single-object images, a fifth of the objects running over the border.
That generator draws no distractors (unlabelled salient objects), so neither does this one.

Image number ``k`` (0-based; train images first, then test) has class ``k % K + 1`` and is drawn from
``np.random.default_rng([seed, STREAM, k])``: an image depends on neither the split sizes nor the class count.
Written with :func:`generate_cub_tree` exactly as CUB-200-2011 is distributed (c2am.data.wsol), so the
embedded data goes through the reader of the real one::

    images/<NNN>.<class>/<class>_<kkkkkk>.jpg
    images.txt  image_class_labels.txt  bounding_boxes.txt  train_test_split.txt  classes.txt

The box is that of the object's visible pixels (coverage >= 0.5), written as CUB's ``x y width height`` with
``width = x2 - x1`` of the 0-based inclusive box (the convention c2am.data.wsol reads).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

# The segmentation generator's painters: one world for both halves of the paper.
from c2am.data.synthetic import (
    AREA_RANGE,
    MAX_CLASSES,
    PLACEMENT_TRIES,
    _background,
    _paint_badge,
    _paint_body,
    _try_object,
    default_class_names,
)
from c2am.io import InputError, save_jpeg, save_text

log = logging.getLogger(__name__)

STREAM = 13  # keeps these images apart from the segmentation generator's (rng [seed, number])
MIN_IMAGE_SIZE = 32


def class_names(num_classes: int) -> list[str]:
    """The K foreground class names (badge names), without background."""
    if not 2 <= num_classes <= MAX_CLASSES - 1:
        raise InputError(f"num_classes: the embedded WSOL data supports 2..{MAX_CLASSES - 1} classes, got {num_classes}")
    return default_class_names(num_classes + 1)[1:]


def render_wsol_sample(seed: int, number: int, class_index: int, image_size: int) -> tuple[np.ndarray, list[int]]:
    """(RGB uint8 image, 0-based inclusive box [x1, y1, x2, y2] of the one object) of image ``number``."""
    rng = np.random.default_rng([seed, STREAM, number])
    image = _background(rng, image_size)
    lo, hi = AREA_RANGE[1]
    obj = None
    for attempt in range(PLACEMENT_TRIES * 4):
        shrink = 0.97 ** max(0, attempt - PLACEMENT_TRIES)  # as the segmentation generator's first object
        area = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) * shrink
        obj = _try_object(rng, image_size, class_index, area)
        if obj is not None:
            break
    if obj is None:
        raise RuntimeError(f"could not place an object in a {image_size}px image")  # unreachable for size >= 32
    _paint_body(rng, image, obj)
    _paint_badge(rng, image, obj)
    ys, xs = np.nonzero(obj.mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8), box


def generate_cub_tree(root, num_classes: int, n_train: int, n_test: int, image_size: int, seed: int) -> None:
    """Write the embedded WSOL dataset under ``root`` in the CUB-200-2011 layout (see the module docstring).

    Images first, the five list files last (each atomically), so a killed run leaves no complete-looking tree.
    """
    names = class_names(num_classes)
    if n_train < 2 * num_classes or n_test < num_classes:
        raise InputError(f"n_train {n_train} / n_test {n_test}: need at least two training and one test image "
                         f"per class ({num_classes} classes)")
    if image_size < MIN_IMAGE_SIZE:
        raise InputError(f"image_size: must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    root = Path(root)
    log.info("embedded WSOL data: %d train + %d test images of %d px, %d classes, seed %d -> %s",
             n_train, n_test, image_size, num_classes, seed, root)
    images, labels, boxes, split = [], [], [], []
    for k in tqdm(range(n_train + n_test), desc="embedded WSOL", unit="img"):
        c = k % num_classes + 1
        folder = f"{c:03d}.{names[c - 1]}"
        name = f"{folder}/{names[c - 1]}_{k:06d}.jpg"
        image, (x1, y1, x2, y2) = render_wsol_sample(seed, k, c, image_size)
        save_jpeg(root / "images" / name, image)
        images.append(f"{k + 1} {name}")
        labels.append(f"{k + 1} {c}")
        boxes.append(f"{k + 1} {float(x1):.1f} {float(y1):.1f} {float(x2 - x1):.1f} {float(y2 - y1):.1f}")
        split.append(f"{k + 1} {int(k < n_train)}")
    save_text(root / "classes.txt", "".join(f"{c} {c:03d}.{n}\n" for c, n in enumerate(names, start=1)))
    save_text(root / "image_class_labels.txt", "\n".join(labels) + "\n")
    save_text(root / "bounding_boxes.txt", "\n".join(boxes) + "\n")
    save_text(root / "train_test_split.txt", "\n".join(split) + "\n")
    save_text(root / "images.txt", "\n".join(images) + "\n")
