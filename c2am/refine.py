"""Pseudo labels from class CAMs and a background score (pure numpy; docs/method.md §5).

label(p) = argmax over [B(p), CAM_c1(p), ..., CAM_ck(p)], mapped back to class indices (0 = background).

* With C2AM cues, B(p) = 1 - cue_fg(p): the cue is a grayscale PNG, 255 = foreground. A binary cue makes B
  1 on cue background (every normalised CAM is <= 1, so the pixel stays background: ties go to background)
  and 0 on cue foreground (the strongest class wins, if any CAM there is above 0).
* The CAM-only baseline uses a constant B(p) = tau.
* With the saliency network's soft map S, B(p) = 1 - S(p) (the official step 4).

The official rule gives every foreground pixel a class as soon as any CAM there is above 0, so a salient thing of
no class (a distractor) takes the class of whichever CAM spills onto it. :func:`robust_labels` adds an evidence
test per colour region to any pseudo-label map: labelled pixels of a region whose mean strongest CAM stays under
``region_floor`` become uncertain (IGNORE). A distractor is its own colour region, touched only by the CAM's
blurred edge; an object's region holds the CAM peak. Testing the mean over a region, not each pixel, keeps an
object's weakly activated parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from c2am.io import IGNORE


def check_cams(cams: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """K x H x W float CAMs and K class indices (each >= 1); returns (cams as float32, classes as int64)."""
    cams = np.asarray(cams)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if cams.ndim != 3:
        raise ValueError(f"cams must be K x H x W, got shape {cams.shape}")
    if cams.shape[0] != classes.size:
        raise ValueError(f"{cams.shape[0]} CAMs but {classes.size} class indices")
    if classes.size and classes.min() < 1:
        raise ValueError(f"class indices must be foreground (>= 1), got {classes.tolist()}")
    return cams.astype(np.float32, copy=False), classes


def background_from_cue(cue: np.ndarray) -> np.ndarray:
    """B = 1 - cue_fg from a boolean cue (True = foreground) or a uint8 one (255 = foreground; soft cues give
    soft B)."""
    cue = np.asarray(cue)
    if cue.ndim != 2 or cue.dtype not in (np.bool_, np.uint8):
        raise ValueError(f"cue must be a boolean or uint8 H x W map, got {cue.dtype} {cue.shape}")
    fg = cue.astype(np.float32) if cue.dtype == np.bool_ else cue.astype(np.float32) / 255.0
    return 1.0 - fg


def background_from_saliency(saliency: np.ndarray) -> np.ndarray:
    """B = 1 - S from the saliency network's soft H x W map S in [0, 1] (read with c2am.artifacts.load_map);
    the dtype is kept."""
    saliency = np.asarray(saliency)
    if saliency.ndim != 2:
        raise ValueError(f"saliency must be an H x W map, got shape {saliency.shape}")
    return 1.0 - saliency


def refine_labels(cams: np.ndarray, classes: Sequence[int], background) -> np.ndarray:
    """H x W uint8 labels = class of argmax over [background, cams...]; ties go to background.

    ``background``: a scalar (the tau baseline) or an H x W array (:func:`background_from_cue`,
    :func:`background_from_saliency`).
    With no classes (K = 0) every pixel is background.
    """
    cams, classes = check_cams(cams, classes)
    h, w = cams.shape[1:]
    bg = np.broadcast_to(np.asarray(background, dtype=np.float32), (h, w))
    if classes.size == 0:
        return np.zeros((h, w), dtype=np.uint8)
    best = cams.argmax(axis=0)  # first max among the classes
    peak = np.take_along_axis(cams, best[None], axis=0)[0]
    # Strictly greater: a tie with the background score leaves the pixel background.
    return np.where(peak > bg, classes[best], 0).astype(np.uint8)


def colour_regions(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """H x W int region labels 0..R-1 of an RGB image: Felzenszwalb-Huttenlocher graph segmentation (skimage), so
    that one region rarely spans two things of different colour, such as an object and the distractor behind it."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(np.asarray(image), scale=scale, sigma=sigma, min_size=int(min_size)).astype(np.int64)


def robust_labels(labels: np.ndarray, cams: np.ndarray, classes: Sequence[int], regions: np.ndarray,
                  region_floor: float) -> np.ndarray:
    """``labels`` (a pseudo-label map) after the evidence test against distractors (module docstring).

    ``regions``: H x W int labels of colour regions (:func:`colour_regions`). Inside each region, the pixels that
    ``labels`` gives a class keep it only when the image's strongest CAM, averaged over those pixels, reaches
    ``region_floor`` (CAMs are normalised to peak 1 per class and image); otherwise they become uncertain
    (IGNORE), which DeepLab skips. Background and IGNORE pixels are left as they are; ``region_floor`` 0 changes
    nothing.
    """

    if not 0.0 <= region_floor <= 1.0:
        raise ValueError(f"region_floor must be in [0, 1], got {region_floor}")
    labels, regions = np.asarray(labels), np.asarray(regions)
    cams, classes = check_cams(cams, classes)
    if not labels.shape == regions.shape == cams.shape[1:]:
        raise ValueError(f"shapes differ: labels {labels.shape}, regions {regions.shape}, CAMs {cams.shape[1:]}")
    labelled = (labels > 0) & (labels != IGNORE)
    if not labelled.any() or classes.size == 0:
        return labels.astype(np.uint8)
    peak = cams.max(axis=0)
    ids = np.unique(regions, return_inverse=True)[1].reshape(regions.shape)  # any ints -> 0..R-1
    n = int(ids.max()) + 1
    total = np.bincount(ids[labelled], weights=peak[labelled], minlength=n)
    count = np.bincount(ids[labelled], minlength=n)
    mean = np.divide(total, count, out=np.zeros(n), where=count > 0)
    return np.where(labelled & (mean[ids] < region_floor), IGNORE, labels).astype(np.uint8)


def refine_sweep(cams: np.ndarray, classes: Sequence[int], taus: Sequence[float]) -> np.ndarray:
    """``refine_labels`` at each constant tau; T x H x W uint8 (argmax is computed once)."""
    cams, classes = check_cams(cams, classes)
    h, w = cams.shape[1:]
    taus = np.asarray(taus, dtype=np.float32)
    if classes.size == 0:
        return np.zeros((taus.size, h, w), dtype=np.uint8)
    best = cams.argmax(axis=0)
    peak = np.take_along_axis(cams, best[None], axis=0)[0]
    cls = classes[best].astype(np.uint8)
    return np.where(peak[None] > taus[:, None, None], cls[None], np.uint8(0)).astype(np.uint8)
