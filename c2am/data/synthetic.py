"""The embedded VOC-format dataset: a seeded generator of images that pose the problem C2AM solves.

Each object is a BODY plus a BADGE:

- The body's shape (an irregular, star-convex blob) and its appearance (one textured, shaded, dark-rimmed
  "object" family with a random hue) are the same for every class. They say "object", never which one.
- The badge is a small flat part (about 10-18 % of the body's area) whose shape, colour and pattern are fixed
  per class index (:func:`badge_for_class`). Only the badge says which class it is.

So a classifier only needs the badge, and its CAM covers the badge. The mask labels the whole object (body
and badge). Backgrounds come from a different family (crops of skimage's bundled photos, and tinted ground
textures), so "object versus background" can be learnt without classes, from appearance. That is the contrast
C2AM learns.

Layout written by :func:`generate_voc_tree` (the same one that real VOC 2012 + SBD uses)::

    JPEGImages/<id>.jpg            RGB, image_size x image_size
    SegmentationClass/<id>.png     VOC palette; 0 = background, 1..C-1 = classes, 255 = boundary band
    SegmentationClassAug/<id>.png  identical to SegmentationClass
    Annotations/<id>.xml           VOC XML, one <object> per visible object instance
    Distractors/<id>.png           grayscale, 255 = a visible distractor pixel (background in the masks); read by
                                   the distractor score only, never by a stage that trains
    ImageSets/Segmentation/{train,train_aug,val}.txt

Ids: ``syn_NNNNNN``. Training images are numbered ``0 .. n_train-1`` and validation images
``VAL_ID_OFFSET + 0 ..``. Image number ``k`` is drawn from ``np.random.default_rng([seed, k])``, so an
image never depends on ``n_train`` or ``n_val``. The same seed gives byte-identical files on the same
software stack.

Annotation boxes follow VOC: the box is around the VISIBLE pixels of one instance (after occlusion), in 1-based
inclusive pixel coordinates, so a 0-based column range ``[c0, c1]`` is written as ``xmin = c0 + 1, xmax = c1 + 1``.
The band of 255 is ``boundary_width(image_size)`` pixels on each side of every edge between two instances,
or between an instance and background, as in VOC. It is drawn over class pixels, so the class pixels of a mask
lie inside their box and are at most that far from its edges. The image border gets no band.
"""

from __future__ import annotations

import colorsys
import functools
import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from tqdm import tqdm

from c2am.io import IGNORE, InputError, save_gray_png, save_jpeg, save_label_png, save_text

log = logging.getLogger(__name__)

ID_PREFIX = "syn_"
DISTRACTOR_DIR = "Distractors"  # <id>.png, 255 = distractor pixel (labelled background); only scoring reads it
VAL_ID_OFFSET = 500_000  # validation ids start here, so train and val never share a number
MIN_CLASSES, MAX_CLASSES = 3, 21  # including background
MIN_IMAGE_SIZE = 32

# Objects per image (1, 2, 3) and the per-object area range (fraction of the image) for each count.
COUNT_PROBS = (0.45, 0.35, 0.20)
AREA_RANGE = {1: (0.10, 0.40), 2: (0.08, 0.26), 3: (0.06, 0.18)}
BADGE_AREA_RANGE = (0.10, 0.18)  # badge area / body area
TOUCH_BORDER_PROB = 0.2  # share of objects allowed to run over the image border
MIN_VISIBLE = 0.5  # an occluded object keeps at least this share of its area
PLACEMENT_TRIES = 30
DISTRACTOR_COUNT_PROBS = (0.7, 0.3)  # 1 or 2 distractors in an image that has any
DISTRACTOR_AREA_RANGE = (0.04, 0.20)


@dataclass(frozen=True)
class World:
    """What makes the embedded world hard (config ``dataset.synthetic``). All zero is this project's first, easy
    world, image for image: no random number is drawn for a feature whose share is 0.

    - ``distractor_prob``: share of images holding 1-2 *distractors*: bodies of the object family (shaded, rimmed,
      textured) without a badge. They belong to no class, so the masks label them background; a class-agnostic
      map still sees them as objects, which is the failure real photos show (VOC's tables, walls, sofas).
    - ``small_object_prob``: share of objects whose area is drawn from ``small_object_area`` (fractions of the image)
      instead of the count's usual range.
    - ``low_contrast_prob``: share of bodies (objects and distractors) painted close to the background behind
      them, with a faint rim, little shading and little texture.
    """

    CONFIG_KEY: ClassVar[str] = "dataset.synthetic"  # where the shares live, named in the errors

    distractor_prob: float = 0.0
    small_object_prob: float = 0.0
    small_object_area: tuple[float, float] = (0.02, 0.05)
    low_contrast_prob: float = 0.0

    def __post_init__(self):
        for key in ("distractor_prob", "small_object_prob", "low_contrast_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise InputError(f"{self.CONFIG_KEY}.{key}: must be in [0, 1], got {getattr(self, key)}")
        lo, hi = self.small_object_area
        if not 0.0 < lo <= hi < 1.0:
            raise InputError(f"{self.CONFIG_KEY}.small_object_area: need 0 < lo <= hi < 1, got {lo} {hi}")


    @classmethod
    def from_config(cls, synthetic: dict) -> "World":
        """The world of a ``dataset.synthetic`` config section (its other keys are the dataset's size)."""
        return cls(synthetic["distractor_prob"], synthetic["small_object_prob"], tuple(synthetic["small_object_area"]),
                   synthetic["low_contrast_prob"])


def _chance(rng: np.random.Generator, p: float) -> bool:
    """True with probability p; draws nothing when p is 0, so a world without the feature is the old one."""
    return p > 0 and rng.random() < p


# ----------------------------------------------------------------------------- badges (the class evidence)

BADGE_SHAPES = ("disc", "square", "triangle", "cross", "ring", "star", "bar")
BADGE_COLOURS = {
    "red": (225, 30, 30),
    "yellow": (250, 215, 20),
    "blue": (30, 70, 235),
    "white": (245, 245, 245),
    "green": (30, 195, 60),
    "magenta": (215, 40, 215),
    "cyan": (30, 215, 230),
}
BADGE_PATTERNS = ("solid", "dot", "stripes")
_DARK = np.array([20, 20, 25], np.float32) / 255.0


@dataclass(frozen=True)
class Badge:
    shape: str
    colour: str
    pattern: str

    @property
    def name(self) -> str:
        return f"{self.colour}_{self.shape}" + ("" if self.pattern == "solid" else f"_{self.pattern}")


def badge_for_class(class_index: int) -> Badge:
    """The badge of foreground class ``class_index`` (1..20); fixed, independent of the seed.

    Classes 1-7 have seven shapes in seven colours (solid); 8-14 and 15-20 repeat the shapes with the colours
    shifted by 3 and 6 (so no shape/colour pair repeats) and add a dark dot or dark stripes.
    """
    if not 1 <= class_index <= MAX_CLASSES - 1:
        raise ValueError(f"class index {class_index} outside 1..{MAX_CLASSES - 1}")
    k = class_index - 1
    group = k // len(BADGE_SHAPES)
    colours = list(BADGE_COLOURS)
    shape = BADGE_SHAPES[k % len(BADGE_SHAPES)]
    colour = colours[(k + 3 * group) % len(colours)]
    return Badge(shape=shape, colour=colour, pattern=BADGE_PATTERNS[group])


def default_class_names(num_classes: int) -> list[str]:
    """``["background", <badge name of class 1>, ...]``: readable names for a synthetic class list."""
    _check_num_classes(num_classes)
    return ["background"] + [badge_for_class(c).name for c in range(1, num_classes)]


# ----------------------------------------------------------------------------- source images (cached)


def _as_float_rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    a = a[..., :3].astype(np.float32) / 255.0
    # Keep sources small: crops are resized down to at most a few hundred pixels anyway.
    scale = 512.0 / min(a.shape[:2])
    if scale < 1.0:
        a = cv2.resize(a, (round(a.shape[1] * scale), round(a.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(a)


@functools.cache
def background_sources() -> tuple[tuple[str, np.ndarray], ...]:
    """Background family: skimage's bundled natural photos (RGB) and ground textures (grey, tinted later)."""
    from skimage import data

    photos = {
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "astronaut": data.astronaut(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    textures = {"brick": data.brick(), "grass": data.grass(), "gravel": data.gravel()}
    out = [(f"photo:{k}", _as_float_rgb(v)) for k, v in photos.items()]
    out += [(f"texture:{k}", _as_float_rgb(v)[..., :1].copy()) for k, v in textures.items()]
    return tuple(out)


@functools.cache
def body_sources() -> tuple[np.ndarray, ...]:
    """Body family: grey detail patterns (none used for backgrounds), zero mean and unit std each."""
    from skimage import data

    sources = [data.moon(), data.coins(), data.cell(), data.immunohistochemistry(), data.hubble_deep_field(),
               data.retina(), data.clock()]
    out = []
    for s in sources:
        g = _as_float_rgb(s).mean(axis=2)
        out.append(((g - g.mean()) / (g.std() + 1e-6)).astype(np.float32))
    return tuple(out)


def _random_crop(rng: np.random.Generator, src: np.ndarray, size: int, min_frac: float) -> np.ndarray:
    """A random square crop (side ``min_frac``..1 of the short side), rotated by k*90 deg, flipped, resized."""
    h, w = src.shape[:2]
    side = max(8, round(rng.uniform(min_frac, 1.0) * min(h, w)))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = src[y0 : y0 + side, x0 : x0 + side]
    crop = np.rot90(crop, k=int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)
    return out.reshape(size, size, -1) if src.ndim == 3 else out


# ----------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float RGB background in [0, 1]: a jittered photo crop or a tinted ground texture."""
    sources = background_sources()
    name, src = sources[int(rng.integers(0, len(sources)))]
    crop = _random_crop(rng, src, size, min_frac=0.3)
    if name.startswith("texture:"):
        grey = crop[..., 0]
        grey = (grey - grey.mean()) * rng.uniform(0.8, 1.4) + rng.uniform(0.35, 0.6)
        tint = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.45), 1.0), np.float32)
        img = grey[..., None] * tint[None, None] * rng.uniform(1.0, 1.4)
    else:
        img = crop
        mean = img.mean(axis=(0, 1), keepdims=True)
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.6, 1.2)  # saturation
        img = mean + (img - mean) * rng.uniform(0.75, 1.2)  # contrast
        img = img * rng.uniform(0.75, 1.15) * rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- geometry


def _fill_polygon(size: int, points: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a polygon given in pixel coordinates (x, y)."""
    canvas = np.zeros((size, size), np.uint8)
    pts = np.round(points * 16.0).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _blob_outline(rng: np.random.Generator, radius: float, n_vertices: int = 64) -> np.ndarray:
    """Offsets (x, y) of an irregular star-convex blob whose area is about pi * radius**2."""
    theta = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0.0, 0.14 / math.sqrt(k - 1)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.55, 1.0)
    x = r * np.cos(theta) * radius / math.sqrt(aspect)
    y = r * np.sin(theta) * radius * math.sqrt(aspect)
    a = rng.uniform(0, np.pi)
    return np.stack([x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)], axis=1)


def _unit_badge_polygons(shape: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(outer polygon, optional hole) of a badge shape with unit 'radius'; areas are all about 2-3 r^2."""
    def circle(rad, n=32):
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)

    if shape == "disc":
        return circle(1.0), None
    if shape == "square":
        s = 0.85
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]], float), None
    if shape == "triangle":
        t = np.deg2rad([-90, 30, 150])
        return 1.3 * np.stack([np.cos(t), np.sin(t)], axis=1) + [0, 0.2], None
    if shape == "cross":
        a, b = 1.15, 0.38
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b],
                         [-a, b], [-a, -b], [-b, -b]], float), None
    if shape == "ring":
        return circle(1.1), circle(0.55)
    if shape == "star":
        t = np.deg2rad(-90 + 36 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, 1.35, 0.6)
        return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1), None
    if shape == "bar":
        return np.array([[-1.3, -0.5], [1.3, -0.5], [1.3, 0.5], [-1.3, 0.5]], float), None
    raise ValueError(f"unknown badge shape {shape!r}")


def _badge_reach(shape: str) -> float:
    """Largest distance of a badge point from its centre, for unit radius."""
    outer, _ = _unit_badge_polygons(shape)
    return float(np.max(np.hypot(outer[:, 0], outer[:, 1])))


def _transform(points: np.ndarray, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0] * r, points[:, 1] * r
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


@dataclass
class _Placed:
    """Geometry of one object: body coverage, badge pose, class."""

    class_index: int
    alpha: np.ndarray  # anti-aliased body coverage, float32 HxW
    mask: np.ndarray  # alpha >= 0.5
    area: int
    badge_centre: tuple[float, float]
    badge_radius: float
    badge_angle: float
    badge_disc: np.ndarray  # bool HxW: the disc that contains the badge plus a margin


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """Distance of each mask pixel to the nearest non-mask pixel; outside the image counts as non-mask."""
    padded = np.pad(mask.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def _disc(size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[:size, :size]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


@dataclass
class _Body:
    """Geometry of a badge-less body (a distractor)."""

    alpha: np.ndarray  # anti-aliased coverage, float32 HxW
    mask: np.ndarray  # alpha >= 0.5
    area: int


def _try_body(rng: np.random.Generator, size: int, area_frac: float) -> _Body | None:
    """An irregular blob of about ``area_frac`` of the image; None when it would be tiny."""
    radius = math.sqrt(area_frac * size * size / math.pi)
    outline = _blob_outline(rng, radius)
    half_x, half_y = np.abs(outline).max(axis=0)
    if rng.random() < TOUCH_BORDER_PROB:
        margin_x, margin_y = 0.5 * half_x, 0.5 * half_y  # up to a quarter of the width may leave the image
    else:
        margin_x, margin_y = half_x + 1.0, half_y + 1.0
    cx = rng.uniform(min(margin_x, size / 2), max(size - margin_x, size / 2))
    cy = rng.uniform(min(margin_y, size / 2), max(size - margin_y, size / 2))
    alpha = _fill_polygon(size, outline + [cx, cy])
    mask = alpha >= 0.5
    area = int(mask.sum())
    return None if area < 16 else _Body(alpha, mask, area)


def _try_object(rng: np.random.Generator, size: int, class_index: int, area_frac: float) -> _Placed | None:
    """Sample one object's body and badge; None when the badge does not fit inside the visible body."""
    body = _try_body(rng, size, area_frac)
    if body is None:
        return None
    mask, area = body.mask, body.area

    badge = badge_for_class(class_index)
    reach = _badge_reach(badge.shape)
    badge_r = math.sqrt(rng.uniform(*BADGE_AREA_RANGE) * area / math.pi)
    dist = _distance_inside(mask)
    # Badge centre: a pixel deep enough that the whole badge (plus its outline) sits inside body and image.
    need = reach * badge_r + 1.5
    ys, xs = np.nonzero(dist >= need)
    if ys.size == 0:
        return None
    i = int(rng.integers(0, ys.size))
    bx, by = float(xs[i]) + rng.uniform(-0.5, 0.5), float(ys[i]) + rng.uniform(-0.5, 0.5)
    return _Placed(
        class_index=class_index,
        alpha=body.alpha,
        mask=mask,
        area=area,
        badge_centre=(bx, by),
        badge_radius=badge_r,
        badge_angle=float(rng.uniform(-0.35, 0.35)),  # +-20 deg: keeps square, cross and bar distinct
        badge_disc=_disc(size, bx, by, reach * badge_r + 2.5),
    )


def _fits_over(new: _Placed, placed: list[_Placed], visible: list[np.ndarray]) -> bool:
    """Drawing ``new`` on top must leave every earlier badge untouched and each earlier object mostly visible."""
    for obj, vis in zip(placed, visible):
        if np.any(new.mask & obj.badge_disc):
            return False
        if np.count_nonzero(vis & ~new.mask) < MIN_VISIBLE * obj.area:
            return False
    return True


def _sample_classes(rng: np.random.Generator, count: int, num_classes: int) -> list[int]:
    """First class uniform; each later object repeats a class already drawn 40 % of the time."""
    classes = [int(rng.integers(1, num_classes))]
    for _ in range(count - 1):
        if rng.random() < 0.4:
            classes.append(classes[int(rng.integers(0, len(classes)))])
        else:
            classes.append(int(rng.integers(1, num_classes)))
    return classes


def _place_objects(rng: np.random.Generator, size: int, num_classes: int, world: World) -> list[_Placed]:
    """1-3 objects drawn in order (later ones occlude earlier ones); the first is always placed."""
    count = int(rng.choice([1, 2, 3], p=COUNT_PROBS))
    placed: list[_Placed] = []
    visible: list[np.ndarray] = []
    for k, class_index in enumerate(_sample_classes(rng, count, num_classes)):
        small = _chance(rng, world.small_object_prob)
        lo, hi = world.small_object_area if small else AREA_RANGE[count]
        for attempt in range(PLACEMENT_TRIES * (4 if k == 0 else 1)):
            # Log-uniform area; the first object shrinks on repeated failures so that it always fits.
            shrink = 0.97 ** max(0, attempt - PLACEMENT_TRIES) if k == 0 else 1.0
            area_frac = math.exp(rng.uniform(math.log(lo), math.log(hi))) * shrink
            obj = _try_object(rng, size, class_index, area_frac)
            if obj is not None and _fits_over(obj, placed, visible):
                visible = [v & ~obj.mask for v in visible] + [obj.mask.copy()]
                placed.append(obj)
                break
    if not placed:
        raise RuntimeError(f"could not place any object in a {size}px image")  # unreachable for size >= 32
    return placed


def _place_distractors(rng: np.random.Generator, size: int, world: World) -> list[_Body]:
    """None, or 1-2 badge-less bodies (drawn first, so that objects may hide part of them, never the reverse)."""
    if not _chance(rng, world.distractor_prob):
        return []
    count = int(rng.choice([1, 2], p=DISTRACTOR_COUNT_PROBS))
    lo, hi = DISTRACTOR_AREA_RANGE
    bodies = []
    for _ in range(count):
        for _attempt in range(PLACEMENT_TRIES):
            body = _try_body(rng, size, math.exp(rng.uniform(math.log(lo), math.log(hi))))
            if body is not None:
                bodies.append(body)
                break
    return bodies


# ----------------------------------------------------------------------------- painting


def _paint_body(rng: np.random.Generator, image: np.ndarray, obj: _Placed | _Body, low_contrast: bool = False) -> None:
    """Composite a body: random hue, a grey detail texture, rounded shading, a directional light, a dark rim.

    ``low_contrast``: the base colour is the mean of the background under the body, slightly shifted, and the
    texture, shading and rim are faint, so that only a weak edge tells body from background.
    """
    size = image.shape[0]
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.3, 0.7), rng.uniform(0.5, 0.9)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32)
    if low_contrast:
        under = image[obj.mask].mean(axis=0)
        base = np.clip(under * rng.uniform(0.85, 1.15) + 0.25 * (base - under) * rng.uniform(0.2, 0.6), 0.0, 1.0)
    sources = body_sources()
    tex = _random_crop(rng, sources[int(rng.integers(0, len(sources)))], size, min_frac=0.25)
    amplitude = rng.uniform(0.08, 0.2) * (0.4 if low_contrast else 1.0)
    tex = np.clip(1.0 + amplitude * tex, 0.5, 1.5)

    dist = _distance_inside(obj.alpha >= 0.5)
    depth = np.sqrt(dist / max(float(dist.max()), 1.0))
    ys, xs = np.nonzero(obj.mask)
    cy, cx = ys.mean(), xs.mean()
    radius = math.sqrt(obj.area / math.pi)
    light = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    slope = ((xx - cx) * math.cos(light) + (yy - cy) * math.sin(light)) / radius
    relief, rim_dark = (0.15, 0.9) if low_contrast else (0.45, 0.55)
    shade = (1.0 - relief + relief * depth) * np.clip(1.0 + 0.2 * slope, 0.7, 1.3)
    rim = np.where(dist <= 1.0, rim_dark, 1.0)
    body = base[None, None] * (shade * tex * rim)[..., None]
    a = obj.alpha[..., None]
    image *= 1.0 - a
    image += a * np.clip(body, 0.0, 1.0)


def _composite(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    a = alpha[..., None]
    image *= 1.0 - a
    image += a * colour[None, None]


def _paint_badge(rng: np.random.Generator, image: np.ndarray, obj: _Placed) -> None:
    """Composite the class badge: a dark outline, the flat colour shape, then its dark dot or stripes."""
    size = image.shape[0]
    badge = badge_for_class(obj.class_index)
    outer, hole = _unit_badge_polygons(badge.shape)
    (bx, by), r, angle = obj.badge_centre, obj.badge_radius, obj.badge_angle
    outline_px = max(1.0, size / 128.0)

    def coverage(points: np.ndarray, grow: float) -> np.ndarray:
        scale = r + grow
        return _fill_polygon(size, _transform(points, bx, by, scale, angle))

    fill = coverage(outer, 0.0)
    edge = coverage(outer, outline_px)
    if hole is not None:
        fill = np.clip(fill - coverage(hole, 0.0), 0.0, 1.0)
        edge = np.clip(edge - coverage(hole, -outline_px), 0.0, 1.0)
    colour = np.array(BADGE_COLOURS[badge.colour], np.float32) / 255.0 * rng.uniform(0.88, 1.05)
    _composite(image, edge, _DARK)
    _composite(image, fill, np.clip(colour, 0.0, 1.0))
    if badge.pattern == "dot":
        dot = _fill_polygon(size, _transform(_unit_badge_polygons("disc")[0], bx, by, 0.35 * r, 0.0))
        _composite(image, np.minimum(dot, fill if hole is None else 1.0), _DARK)
    elif badge.pattern == "stripes":
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        # Two stripes across the badge, perpendicular to its rotated x axis.
        u = ((xx - bx) * math.cos(angle) + (yy - by) * math.sin(angle)) / r
        stripes = (np.abs(np.abs(u) - 0.45) < 0.16).astype(np.float32)
        _composite(image, stripes * fill, _DARK)


# ----------------------------------------------------------------------------- labels and boxes


def boundary_width(image_size: int) -> int:
    """Pixels of the 255 band on each side of an edge: 1 up to 383 px, then about 1 per 256 px."""
    return max(1, round(image_size / 256))


def boundary_band(instances: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of an edge between different instance ids (background = 0 is one id)."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    inst = instances.astype(np.uint8)
    hi = cv2.dilate(inst, kernel, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(inst, kernel, borderType=cv2.BORDER_REPLICATE)
    return hi != lo


@dataclass(frozen=True)
class SyntheticObject:
    """One visible object instance, as written to the Annotations XML."""

    class_index: int
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: 1-based inclusive VOC pixel coordinates
    truncated: bool  # touches the image border
    occluded: bool  # partly hidden by a later object
    badge_centre: tuple[float, float]  # (x, y), 0-based pixels; the badge is never occluded
    badge_radius: float  # the badge's unit radius in pixels (its area is about 2-3 times radius**2)


def render_sample(
    seed: int, number: int, num_classes: int, image_size: int, world: World = World()
) -> tuple[np.ndarray, np.ndarray, list[SyntheticObject], np.ndarray]:
    """Image number ``number``: (RGB uint8 HxWx3, label uint8 HxW with the 255 band, visible objects, distractor
    mask bool HxW).

    The distractor mask holds the visible distractor pixels that the label calls background (0): the pixels a
    pseudo label should leave background. Depends only on its arguments (``np.random.default_rng([seed, number])``).
    """
    _check_num_classes(num_classes)
    rng = np.random.default_rng([seed, number])
    size = image_size
    image = _background(rng, size)
    distractors = _place_distractors(rng, size, world)
    placed = _place_objects(rng, size, num_classes, world)
    distractor_mask = np.zeros((size, size), bool)
    for body in distractors:
        _paint_body(rng, image, body, low_contrast=_chance(rng, world.low_contrast_prob))
        distractor_mask |= body.mask
    instances = np.zeros((size, size), np.int32)
    for k, obj in enumerate(placed, start=1):
        _paint_body(rng, image, obj, low_contrast=_chance(rng, world.low_contrast_prob))
        _paint_badge(rng, image, obj)
        instances[obj.mask] = k
    image_u8 = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)

    class_of = np.array([0] + [o.class_index for o in placed], np.uint8)
    label = class_of[instances]
    label[boundary_band(instances, boundary_width(size))] = IGNORE
    distractor_mask &= label == 0

    objects = []
    for k, obj in enumerate(placed, start=1):
        ys, xs = np.nonzero(instances == k)
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        truncated = bool(box[0] == 1 or box[1] == 1 or box[2] == size or box[3] == size)
        occluded = bool(ys.size < obj.area)
        objects.append(
            SyntheticObject(obj.class_index, box, truncated, occluded, obj.badge_centre, obj.badge_radius)
        )
    return image_u8, label, objects, distractor_mask


def annotation_xml(image_id: str, image_size: int, objects: list[SyntheticObject], classes: list[str]) -> str:
    """VOC-style annotation XML text for one image."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "c2am-wsss synthetic"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(image_size)
    ET.SubElement(size, "height").text = str(image_size)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "1"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = classes[obj.class_index]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "occluded").text = str(int(obj.occluded))
        ET.SubElement(node, "difficult").text = "0"
        box = ET.SubElement(node, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


# ----------------------------------------------------------------------------- the tree


def _check_num_classes(num_classes: int) -> None:
    if not MIN_CLASSES <= num_classes <= MAX_CLASSES:
        raise InputError(
            f"dataset.classes: the synthetic dataset supports {MIN_CLASSES}..{MAX_CLASSES} classes "
            f"(background included), got {num_classes}"
        )


def _check_arguments(classes: list[str], n_train: int, n_val: int, image_size: int) -> None:
    _check_num_classes(len(classes))
    if classes[0] != "background":
        raise InputError(f"dataset.classes: the first class must be 'background', got {classes[0]!r}")
    if len(set(classes)) != len(classes):
        raise InputError(f"dataset.classes: names must be unique, got {classes}")
    bad = [c for c in classes if not c or c != c.strip() or any(ch.isspace() for ch in c) or "<" in c or "&" in c]
    if bad:
        raise InputError(f"dataset.classes: names must be non-empty without spaces or markup, got {bad}")
    if not 1 <= n_train <= VAL_ID_OFFSET:
        raise InputError(f"n_train: must be 1..{VAL_ID_OFFSET}, got {n_train}")
    if not 1 <= n_val <= 999_999 - VAL_ID_OFFSET:
        raise InputError(f"n_val: must be 1..{999_999 - VAL_ID_OFFSET}, got {n_val}")
    if image_size < MIN_IMAGE_SIZE:
        raise InputError(f"image_size: must be at least {MIN_IMAGE_SIZE}, got {image_size}")


def synthetic_ids(n_train: int, n_val: int) -> tuple[list[str], list[str]]:
    """(train ids, val ids), each sorted: ``syn_000000..`` and ``syn_500000..``."""
    train = [f"{ID_PREFIX}{i:06d}" for i in range(n_train)]
    val = [f"{ID_PREFIX}{VAL_ID_OFFSET + i:06d}" for i in range(n_val)]
    return train, val


def generate_voc_tree(
    root: Path, classes: list[str], n_train: int, n_val: int, image_size: int, seed: int, world: World = World()
) -> None:
    """Write the synthetic VOC2012-layout tree under ``root`` (see the module docstring), in ``world``.

    Every file is written atomically; the image lists come last, so a killed run leaves no complete-looking
    list. Files of a previous, larger run are not removed, but no list names them.
    """
    classes = list(classes)
    _check_arguments(classes, n_train, n_val, image_size)
    root = Path(root)
    train_ids, val_ids = synthetic_ids(n_train, n_val)
    log.info("synthetic VOC: %d train + %d val images of %d px, %d classes, seed %d, %s -> %s",
             n_train, n_val, image_size, len(classes), seed, world, root)
    for image_id in tqdm(train_ids + val_ids, desc="synthetic VOC", unit="img"):
        number = int(image_id[len(ID_PREFIX):])
        image, label, objects, distractors = render_sample(seed, number, len(classes), image_size, world)
        save_gray_png(root / DISTRACTOR_DIR / f"{image_id}.png", np.where(distractors, 255, 0).astype(np.uint8))
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image)
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", label)
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", label)
        save_text(root / "Annotations" / f"{image_id}.xml", annotation_xml(image_id, image_size, objects, classes))
    lists = root / "ImageSets" / "Segmentation"
    save_text(lists / "train.txt", "\n".join(train_ids) + "\n")
    save_text(lists / "train_aug.txt", "\n".join(train_ids) + "\n")
    save_text(lists / "val.txt", "\n".join(val_ids) + "\n")
