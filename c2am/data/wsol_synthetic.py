"""The embedded WSOL dataset: the segmentation generator's world, one object per image, written in the CUB layout.

Each image holds exactly one object, as in CUB-200-2011. Objects, badges and backgrounds are those of
:mod:`c2am.data.synthetic` (the segmentation default): a class-shared textured body with a small class badge
(the badge is the only class evidence), on a natural-photo or tinted-texture background; object area 10-40 %
of the image, as that generator's single-object images, a fifth of the objects running over the border.

The hard cases are :class:`WsolWorld`'s shares (config ``wsol.dataset.synthetic``), drawn as the segmentation
generator draws them: badge-less distractor bodies behind the object (background clutter, as branches and
leaves are in CUB; no GT box is theirs), small objects, low-contrast bodies, and a distractor painted over part
of the object (partial occlusion; the box is that of the object's visible pixels, the badge stays visible).
With every share at 0 no random number is drawn for them, and the world is the first one image for image.

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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

# The segmentation generator's painters: one world for both halves of the paper.
from c2am.data.synthetic import (
    AREA_RANGE,
    DISTRACTOR_AREA_RANGE,
    MAX_CLASSES,
    MIN_VISIBLE,
    PLACEMENT_TRIES,
    World,
    _background,
    _Body,
    _chance,
    _paint_badge,
    _paint_body,
    _place_distractors,
    _Placed,
    _try_body,
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


@dataclass(frozen=True)
class WsolWorld(World):
    """The segmentation world's shares (distractors, small and low-contrast bodies) and one of WSOL's own:

    - ``occlusion_prob``: share of images where a distractor is painted over part of the object (10-50 % of it,
      never the badge), after it, as a branch in front of a bird.
    """

    CONFIG_KEY: ClassVar[str] = "wsol.dataset.synthetic"

    occlusion_prob: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.occlusion_prob <= 1.0:
            raise InputError(f"{self.CONFIG_KEY}.occlusion_prob: must be in [0, 1], got {self.occlusion_prob}")


@dataclass(frozen=True)
class WsolSample:
    image: np.ndarray  # RGB uint8
    box: list[int]  # 0-based inclusive [x1, y1, x2, y2] of the object's visible pixels
    visible: np.ndarray  # bool HxW, the object's visible pixels
    distractors: np.ndarray  # bool HxW, distractor pixels (behind or over the object), none of them the object's


def _occluder(rng: np.random.Generator, size: int, obj: _Placed) -> _Body | None:
    """A distractor body over 10-50 % of ``obj`` that leaves its badge disc (badge plus a margin) uncovered."""
    lo, hi = DISTRACTOR_AREA_RANGE
    for _ in range(PLACEMENT_TRIES):
        body = _try_body(rng, size, math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if body is None or (body.mask & obj.badge_disc).any():
            continue
        covered = (body.mask & obj.mask).sum() / obj.mask.sum()
        if 0.1 <= covered <= 1.0 - MIN_VISIBLE:
            return body
    return None


def draw_wsol_sample(seed: int, number: int, class_index: int, image_size: int,
                     world: WsolWorld = WsolWorld()) -> WsolSample:
    """Image ``number`` of the embedded WSOL world: one object of ``class_index``, the world's hard cases."""
    rng = np.random.default_rng([seed, STREAM, number])
    size = image_size
    image = _background(rng, size)
    clutter = _place_distractors(rng, size, world)
    lo, hi = world.small_object_area if _chance(rng, world.small_object_prob) else AREA_RANGE[1]
    obj = None
    for attempt in range(PLACEMENT_TRIES * 4):
        shrink = 0.97 ** max(0, attempt - PLACEMENT_TRIES)  # as the segmentation generator's first object
        area = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) * shrink
        obj = _try_object(rng, size, class_index, area)
        if obj is not None:
            break
    if obj is None:
        raise RuntimeError(f"could not place an object in a {size}px image")  # unreachable for size >= 32
    distractors = np.zeros((size, size), bool)
    for body in clutter:  # behind the object
        _paint_body(rng, image, body, low_contrast=_chance(rng, world.low_contrast_prob))
        distractors |= body.mask
    _paint_body(rng, image, obj, low_contrast=_chance(rng, world.low_contrast_prob))
    _paint_badge(rng, image, obj)
    visible = obj.mask.copy()
    if _chance(rng, world.occlusion_prob):
        body = _occluder(rng, size, obj)
        if body is not None:
            _paint_body(rng, image, body, low_contrast=_chance(rng, world.low_contrast_prob))
            distractors |= body.mask
            visible &= ~body.mask
    distractors &= ~visible
    ys, xs = np.nonzero(visible)
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return WsolSample(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8), box, visible, distractors)


def render_wsol_sample(seed: int, number: int, class_index: int, image_size: int,
                       world: WsolWorld = WsolWorld()) -> tuple[np.ndarray, list[int]]:
    """(RGB uint8 image, 0-based inclusive box [x1, y1, x2, y2] of the one object) of image ``number``."""
    sample = draw_wsol_sample(seed, number, class_index, image_size, world)
    return sample.image, sample.box


def generate_cub_tree(root, num_classes: int, n_train: int, n_test: int, image_size: int, seed: int,
                      world: WsolWorld = WsolWorld()) -> None:
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
    log.info("embedded WSOL data: %d train + %d test images of %d px, %d classes, seed %d, %s -> %s",
             n_train, n_test, image_size, num_classes, seed, world, root)
    images, labels, boxes, split = [], [], [], []
    for k in tqdm(range(n_train + n_test), desc="embedded WSOL", unit="img"):
        c = k % num_classes + 1
        folder = f"{c:03d}.{names[c - 1]}"
        name = f"{folder}/{names[c - 1]}_{k:06d}.jpg"
        image, (x1, y1, x2, y2) = render_wsol_sample(seed, k, c, image_size, world)
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
