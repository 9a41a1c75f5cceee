"""Map thresholds and the boxes they cut, in one place (docs/method.md §4 and §10).

Two kinds of threshold, each a *spec* (what a user writes) resolved into a *record* (what a stage writes as JSON):

**Cue thresholds** (config ``c2am.cues.threshold``, ``c2am.boxes.threshold``), chosen from the maps without GT:

- ``otsu``: Otsu's method on the histogram of ALL map values of the split (one threshold for the dataset);
- ``otsu3``: the upper edge of a three-class Otsu split of that histogram. The maps are stride-16 activations
  upsampled to the image, so besides background and object they hold a third population, the blurred halo
  around each object; three classes give the halo its own class and keep the object cores;
- ``otsu_image``: per-image Otsu (for comparison: it always splits an image in two, so it invents foreground
  in object-free images);
- a number in (0, 1): a fixed t (the paper uses 0.3 with its own calibration).

Record (``artifacts/c2am/cue_threshold.json``):
``{"method": otsu | otsu3 | otsu_image | fixed, "threshold": float or None (per image), "bins", "maps"}``.

**Box thresholds** of WSOL (config ``wsol.boxes.tau``), on the min-max normalised maps (see :func:`map_box`):

- ``val``: the tau of the threshold grid with the best GT-known localisation of the boxes on the held-out
  ``val`` split (its GT boxes; never the test split's). The middle of a tie. This is the "train-fullsup" use
  of Choe et al.: a small box-labelled split, disjoint from training and test, for hyperparameters;
- ``otsu`` / ``otsu3``: Otsu over the pooled histogram of the normalised maps of the training split (no GT);
- a number in (0, 1): fixed.

Record (``box_threshold.json``): ``{"method", "threshold", "split", "images", "gt_known_loc"?, "sweep"?}``.

**The box of a map** (:func:`map_box`): the bounding box of the largest 8-connected region above the threshold.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from c2am.artifacts import load_map
from c2am.io import InputError
from c2am.metrics import largest_component_box
from c2am.parallel import map_items, pool_size
from c2am.wsol_metrics import best_threshold_index, binarize, box_ious, gt_known_loc, normalize_scoremap

HIST_BINS = 256
DATASET_METHODS = ("otsu", "otsu3")  # from the pooled histogram of a split's maps
METHODS = DATASET_METHODS + ("otsu_image",)  # cue thresholds
RECORD_METHODS = METHODS + ("fixed",)
BOX_METHODS = ("val",) + DATASET_METHODS  # box thresholds (WSOL)
BOX_RECORD_METHODS = BOX_METHODS + ("fixed",)
GRID_DECIMALS = 6  # grid values are rounded so that 0.15 is 0.15, not 0.15000000000000002


# ----------------------------------------------------------------------------- threshold grids


def threshold_grid(start: float, stop: float, step: float, closed: bool = True) -> list[float]:
    """``start, start + step, ...`` up to ``stop`` (``closed``) or below it, rounded to GRID_DECIMALS.

    Every sweep of a threshold uses this grid: the CAM-only tau sweep of eval_pseudo, the oracle sweeps of
    :data:`ORACLE_SWEEP` and wsolevaluation's map thresholds (:func:`cam_curve_grid`). ``stop`` is reached when
    it lies on the grid up to float error (1e-6 of a step).
    """
    if step <= 0 or stop < start:
        raise ValueError(f"bad threshold grid start={start} stop={stop} step={step}")
    n = int(math.floor((stop - start) / step + 1e-6)) + 1
    grid = [round(start + i * step, GRID_DECIMALS) for i in range(n)]
    return grid if closed else [t for t in grid if t < stop]


# The oracle sweeps of a raw C2AM map (eval_c2am's foreground IoU, c2am_boxes' GT-known): 0.05, 0.10, ..., 0.95.
ORACLE_SWEEP = tuple(threshold_grid(0.05, 0.95, 0.05))


def cam_curve_grid(interval: float) -> list[float]:
    """wsolevaluation's map thresholds 0, h, 2h, ... < 1 (``cam_curve_interval`` h, 0.01 there)."""
    if not 0 < interval < 1:
        raise InputError(f"--cam-curve-interval: must lie in (0, 1), got {interval}")
    return threshold_grid(0.0, 1.0, interval, closed=False)


# ----------------------------------------------------------------------------- the box of a map


def map_box(fmap: np.ndarray, tau: float, *, normalise: bool) -> list[int] | None:
    """Inclusive ``[x1, y1, x2, y2]`` box of the largest 8-connected region of ``fmap`` above ``tau``; None if
    no pixel is above it.

    The region is taken where the threshold was chosen, so each caller says which map it thresholds:

    - ``normalise=False``: ``fmap > tau`` on the map as stored (c2am_boxes). Its tau is a cue threshold: Otsu
      over the raw maps' histogram, as for the cues, so an image's box and its cue cut the map at one level;
    - ``normalise=True``: the min-max normalised map binarised at 8 bits, ``uint8(255 s) > int(255 tau)``
      (WSOL's pseudo and test boxes). Its tau is chosen on wsolevaluation's grid, where MaxBoxAccV2 binarises
      the maps the same way; only a constant map (all zeros after normalisation) has no box.
    """
    region = binarize(normalize_scoremap(fmap), tau) if normalise else np.asarray(fmap) > tau
    return largest_component_box(region)


# ----------------------------------------------------------------------------- histograms and Otsu


def map_histogram(fmap: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Counts of map values in ``bins`` equal bins over [0, 1] (value 1.0 in the last bin)."""
    fmap = np.asarray(fmap, dtype=np.float32).ravel()
    idx = np.clip((fmap * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins)


def otsu_from_histogram(hist: np.ndarray) -> float:
    """Otsu threshold of a histogram over [0, 1] in equal bins: the bin edge maximising between-class variance.

    Returns the upper edge of the last "low" bin, so ``value >= t`` (equivalently ``> t`` up to bin width)
    selects the high class. Ties go to the lowest such edge; a histogram with one occupied bin gives 0.5.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = hist.size
    total = hist.sum()
    if total <= 0:
        raise ValueError("otsu_from_histogram: empty histogram")
    centers = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(hist)[:-1]  # weight of bins 0..k
    w1 = total - w0
    m0 = np.cumsum(hist * centers)[:-1]
    mu_t = (hist * centers).sum()
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        return 0.5
    between = np.zeros(bins - 1)
    # sigma_b^2 * total^2 = (mu_t * w0 - m0 * total)^2 / (w0 * w1): same argmax, no division by total.
    between[valid] = (mu_t * w0[valid] - m0[valid] * total) ** 2 / (w0[valid] * w1[valid])
    k = int(np.argmax(between))
    return (k + 1) / bins


def otsu3_from_histogram(hist: np.ndarray) -> tuple[float, float]:
    """Three-class Otsu over a histogram on [0, 1]: the two bin edges maximising the between-class variance.

    Maximising sum_c S_c^2 / W_c (S_c = value sum, W_c = count of class c) is equivalent, since the total mean
    is fixed. Ties go to the lowest (t1, t2) in row-major order. Edges are (k + 1) / bins as in the 2-class case.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = hist.size
    if hist.sum() <= 0:
        raise ValueError("otsu3_from_histogram: empty histogram")
    centers = (np.arange(bins) + 0.5) / bins
    cw = np.concatenate([[0.0], np.cumsum(hist)])  # cw[k] = count of bins < k
    cs = np.concatenate([[0.0], np.cumsum(hist * centers)])
    k1 = np.arange(1, bins - 1)[:, None]  # class 0 = bins [0, k1), class 1 = [k1, k2), class 2 = [k2, bins)
    k2 = np.arange(2, bins)[None, :]

    def term(lo, hi):
        w = cw[hi] - cw[lo]
        s = cs[hi] - cs[lo]
        return np.where(w > 0, s * s / np.where(w > 0, w, 1.0), 0.0), w > 0

    a, ok_a = term(0, k1)
    b, ok_b = term(k1, k2)
    c, ok_c = term(k2, bins)
    score = np.where((k2 > k1) & ok_a & ok_b & ok_c, a + b + c, -np.inf)
    if not np.isfinite(score).any():
        return 0.5, 0.5
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(k1[i, 0]) / bins, float(k2[0, j]) / bins


def _histogram_of_file(path: Path, normalise: bool = False) -> np.ndarray:
    fmap = load_map(path)
    return map_histogram(normalize_scoremap(fmap) if normalise else fmap)


def dataset_otsu(map_paths: list[Path], threads: int = 1, classes: int = 2, normalise: bool = False) -> float:
    """Otsu threshold over the pooled histogram of every map (no GT involved); ``normalise``: of the min-max
    normalised maps (the box thresholds).

    ``classes=3``: the upper edge of a three-class Otsu split (background / blurred halo / object core).
    """
    hists = map_items(partial(_histogram_of_file, normalise=normalise), map_paths, threads=threads,
                      desc="map histogram")
    hist = np.sum(hists, axis=0)
    if classes == 3:
        return otsu3_from_histogram(hist)[1]
    return otsu_from_histogram(hist)


def parse_threshold(text: str, flag: str = "--threshold", methods=METHODS) -> str | float:
    """One of ``methods`` (computed from the maps) or a number in (0, 1); else an InputError naming ``flag``."""
    if text in methods:
        return text
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} {text!r}: use one of {', '.join(methods)} or a number in (0, 1)") from None
    if not 0 < value < 1:
        raise InputError(f"{flag} {value}: must lie in (0, 1)")
    return value


# ----------------------------------------------------------------------------- cue thresholds


def resolve_threshold(spec: str | float, map_paths: list[Path], threads: int = 1) -> dict:
    """The cue record of ``spec`` over the maps of a split (see the module docstring)."""
    if spec in DATASET_METHODS:
        t = dataset_otsu(map_paths, threads, classes=3 if spec == "otsu3" else 2)
        return {"method": spec, "threshold": t, "bins": HIST_BINS, "maps": len(map_paths)}
    if spec == "otsu_image":
        return {"method": "otsu_image", "threshold": None, "bins": HIST_BINS, "maps": len(map_paths)}
    return {"method": "fixed", "threshold": float(spec), "bins": None, "maps": len(map_paths)}


def check_record(record: dict, path) -> dict:
    """A cue record read from ``path``: known method, numeric threshold unless per-image; else an InputError."""
    _check_method(record, path, RECORD_METHODS)
    if record["method"] != "otsu_image" and not isinstance(record.get("threshold"), (int, float)):
        raise InputError(f"{path}: threshold record has no numeric 'threshold'")
    return record


def image_threshold(record: dict, fmap: np.ndarray) -> float:
    """The threshold one image uses under ``record``: the record's number, or the image's own Otsu."""
    if record["method"] == "otsu_image":
        return otsu_from_histogram(map_histogram(fmap, record.get("bins") or HIST_BINS))
    return float(record["threshold"])


def _check_method(record: dict, path, methods: tuple[str, ...]) -> None:
    if not isinstance(record, dict) or record.get("method") not in methods:
        method = record.get("method") if isinstance(record, dict) else None
        raise InputError(f"{path}: unknown threshold method {method!r} (expected one of {', '.join(methods)})")


# ----------------------------------------------------------------------------- box thresholds (WSOL)


def _box_ious_row(item, taus) -> np.ndarray:
    """Worker: per tau, the IoU of the normalised map's box with the image's GT boxes (0 without a box)."""
    path, gt_boxes = item
    fmap = load_map(path)
    return box_ious([map_box(fmap, t, normalise=True) for t in taus], [gt_boxes] * len(taus))


def resolve_box_threshold(spec, map_paths: list[Path], gt_boxes: list | None, interval: float,
                          split: str, threads: int = 1) -> dict:
    """The box record of ``spec`` over the maps of ``split`` (with ``gt_boxes``, one list per map, for ``val``)."""
    workers = pool_size(len(map_paths), threads)
    if spec == "val":
        if gt_boxes is None or len(gt_boxes) != len(map_paths):
            raise InputError(f"--tau val: needs the GT boxes of every map of split '{split}'")
        taus = cam_curve_grid(interval)
        rows = map_items(partial(_box_ious_row, taus=taus), list(zip(map_paths, gt_boxes)), threads=workers,
                         desc="box threshold")
        accuracy = gt_known_loc(np.stack(rows))
        k = best_threshold_index(accuracy)
        return {"method": "val", "threshold": float(taus[k]), "split": split, "images": len(map_paths),
                "gt_known_loc": float(accuracy[k]),
                "sweep": {f"{t:g}": float(a) for t, a in zip(taus, accuracy)}}
    if spec in DATASET_METHODS:
        t = dataset_otsu(map_paths, workers, classes=3 if spec == "otsu3" else 2, normalise=True)
        return {"method": spec, "threshold": float(t), "split": split, "images": len(map_paths)}
    return {"method": "fixed", "threshold": float(spec), "split": None, "images": len(map_paths)}


def check_box_record(record: dict, path) -> float:
    """The threshold of a box record read from ``path``; an InputError when it is not one."""
    _check_method(record, path, BOX_RECORD_METHODS)
    t = record.get("threshold")
    if not isinstance(t, (int, float)) or not 0 <= t < 1:
        raise InputError(f"{path}: box threshold record has no threshold in [0, 1)")
    return float(t)
