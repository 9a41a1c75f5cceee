"""Map thresholds chosen without GT: Otsu variants over a split's maps, or a fixed number (docs/method.md §4).

A threshold *spec* is what a user writes (config ``c2am.cues.threshold``, ``c2am.boxes.threshold``):

- ``otsu``: Otsu's method on the histogram of ALL map values of the split (one threshold for the dataset);
- ``otsu3``: the upper edge of a three-class Otsu split of that histogram. The maps are stride-16 activations
  upsampled to the image, so besides background and object they hold a third population, the blurred halo
  around each object; three classes give the halo its own class and keep the object cores;
- ``otsu_image``: per-image Otsu (for comparison: it always splits an image in two, so it invents foreground
  in object-free images);
- a number in (0, 1): a fixed t (the paper uses 0.3 with its own calibration).

A *record* is what a resolved spec is written as (``artifacts/c2am/cue_threshold.json``):
``{"method": otsu | otsu3 | otsu_image | fixed, "threshold": float or None (per image), "bins", "maps"}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c2am.artifacts import load_map
from c2am.io import InputError
from c2am.parallel import map_items

HIST_BINS = 256
DATASET_METHODS = ("otsu", "otsu3")
METHODS = DATASET_METHODS + ("otsu_image",)
RECORD_METHODS = METHODS + ("fixed",)


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


def _histogram_of_file(path: Path) -> np.ndarray:
    return map_histogram(load_map(path))


def dataset_otsu(map_paths: list[Path], threads: int = 1, classes: int = 2) -> float:
    """Otsu threshold over the pooled histogram of every map (no GT involved).

    ``classes=3``: the upper edge of a three-class Otsu split (background / blurred halo / object core).
    """
    hists = map_items(_histogram_of_file, map_paths, threads=threads, desc="map histogram")
    hist = np.sum(hists, axis=0)
    if classes == 3:
        return otsu3_from_histogram(hist)[1]
    return otsu_from_histogram(hist)


def parse_threshold(text: str, flag: str = "--threshold", methods=METHODS) -> str | float:
    """One of ``methods`` (computed from the maps, no GT) or a number in (0, 1); else an InputError naming ``flag``."""
    if text in methods:
        return text
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} {text!r}: use one of {', '.join(methods)} or a number in (0, 1)") from None
    if not 0 < value < 1:
        raise InputError(f"{flag} {value}: must lie in (0, 1)")
    return value


def resolve_threshold(spec: str | float, map_paths: list[Path], threads: int = 1) -> dict:
    """The record of ``spec`` over the maps of a split (see the module docstring)."""
    if spec in DATASET_METHODS:
        t = dataset_otsu(map_paths, threads, classes=3 if spec == "otsu3" else 2)
        return {"method": spec, "threshold": t, "bins": HIST_BINS, "maps": len(map_paths)}
    if spec == "otsu_image":
        return {"method": "otsu_image", "threshold": None, "bins": HIST_BINS, "maps": len(map_paths)}
    return {"method": "fixed", "threshold": float(spec), "bins": None, "maps": len(map_paths)}


def check_record(record: dict, path) -> dict:
    """A record read from ``path``: known method, numeric threshold unless per-image; else an InputError."""
    if not isinstance(record, dict) or record.get("method") not in RECORD_METHODS:
        method = record.get("method") if isinstance(record, dict) else None
        raise InputError(f"{path}: unknown threshold method {method!r} (expected one of {', '.join(RECORD_METHODS)})")
    if record["method"] != "otsu_image" and not isinstance(record.get("threshold"), (int, float)):
        raise InputError(f"{path}: threshold record has no numeric 'threshold'")
    return record


def image_threshold(record: dict, fmap: np.ndarray) -> float:
    """The threshold one image uses under ``record``: the record's number, or the image's own Otsu."""
    if record["method"] == "otsu_image":
        return otsu_from_histogram(map_histogram(fmap, record.get("bins") or HIST_BINS))
    return float(record["threshold"])
