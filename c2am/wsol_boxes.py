"""Class-agnostic boxes from C2AM maps for WSOL, and the one map threshold they use (docs/method.md §10).

The box of an image is the bounding box of the largest 8-connected region of its map, min-max normalised
and binarised at 8 bits as in c2am.wsol_metrics (``uint8(255 s) > int(255 tau)``): the pseudo box of a
training image (what the localizer learns from) and the C2AM box of a test image (scored beside the
localizer's). A map with no pixel above tau (only a constant map, after normalisation) has no box: ``None``.

The threshold spec (config ``wsol.boxes.threshold``):

- ``val``: the tau of the threshold grid with the best GT-known localisation of these boxes on the held-out
  ``val`` split (its GT boxes; never the test split's). The middle of a tie. This is the "train-fullsup" use
  of Choe et al.: a small box-labelled split, disjoint from training and test, for hyperparameters;
- ``otsu`` / ``otsu3``: Otsu over the pooled histogram of the normalised maps of the training split (no GT);
- a number in (0, 1): fixed.

A record (``box_threshold.json``): ``{"method", "threshold", "split", "images", "sweep"?}``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from c2am.artifacts import load_map
from c2am.io import InputError
from c2am.metrics import largest_component_box
from c2am.parallel import map_items
from c2am.thresholds import map_histogram, otsu3_from_histogram, otsu_from_histogram, parse_threshold
from c2am.wsol_metrics import best_iou, best_threshold_index, binarize, normalize_scoremap, threshold_grid

BOX_METHODS = ("val", "otsu", "otsu3")
RECORD_METHODS = BOX_METHODS + ("fixed",)
ITEMS_PER_WORKER = 400  # a worker process costs about 3 s to start (torch import), some 400 maps' work


def pool_size(items: int, threads: int) -> int:
    """Worker processes for ``items`` cheap per-map jobs: at most ``threads``, one per ITEMS_PER_WORKER items."""
    return max(1, min(int(threads or 1), items // ITEMS_PER_WORKER))


def parse_box_threshold(text: str, flag: str = "--threshold") -> str | float:
    return parse_threshold(str(text), flag, methods=BOX_METHODS)


def map_box(score: np.ndarray, tau: float) -> list[int] | None:
    """Largest-region box of the normalised map at ``tau`` (0-based inclusive), None when nothing exceeds it."""
    return largest_component_box(binarize(normalize_scoremap(score), tau))


def _gt_known_row(path: Path, gt_boxes, taus) -> np.ndarray:
    score = normalize_scoremap(load_map(path))
    return np.array([best_iou([b] if (b := largest_component_box(binarize(score, t))) else [], gt_boxes) >= 0.5
                     for t in taus])


def _normalised_histogram(path: Path) -> np.ndarray:
    return map_histogram(normalize_scoremap(load_map(path)))


def resolve_box_threshold(spec, map_paths: list[Path], gt_boxes: list | None, interval: float,
                          split: str, threads: int = 1) -> dict:
    """The record of ``spec`` over the maps of ``split`` (with ``gt_boxes``, one list per map, for ``val``)."""
    if spec == "val":
        if gt_boxes is None or len(gt_boxes) != len(map_paths):
            raise InputError(f"--threshold val: needs the GT boxes of every map of split '{split}'")
        taus = threshold_grid(interval)
        rows = map_items(partial(_gt_known_row_star, taus=taus), list(zip(map_paths, gt_boxes)),
                         threads=pool_size(len(map_paths), threads), desc="box threshold")
        accuracy = np.mean(rows, axis=0)
        k = best_threshold_index(accuracy)
        return {"method": "val", "threshold": float(taus[k]), "split": split, "images": len(map_paths),
                "gt_known_loc": float(accuracy[k]),
                "sweep": {f"{t:g}": float(a) for t, a in zip(taus, accuracy)}}
    if spec in ("otsu", "otsu3"):
        hist = np.sum(map_items(_normalised_histogram, map_paths, threads=pool_size(len(map_paths), threads),
                                desc="map histogram"), axis=0)
        t = otsu3_from_histogram(hist)[1] if spec == "otsu3" else otsu_from_histogram(hist)
        return {"method": spec, "threshold": float(t), "split": split, "images": len(map_paths)}
    return {"method": "fixed", "threshold": float(spec), "split": None, "images": len(map_paths)}


def _gt_known_row_star(item, taus):
    path, gt = item
    return _gt_known_row(path, gt, taus)


def check_box_record(record: dict, path) -> float:
    """The threshold of a record read from ``path``; an InputError when it is not one."""
    if not isinstance(record, dict) or record.get("method") not in RECORD_METHODS:
        raise InputError(f"{path}: not a box threshold record (method must be one of {', '.join(RECORD_METHODS)})")
    t = record.get("threshold")
    if not isinstance(t, (int, float)) or not 0 <= t < 1:
        raise InputError(f"{path}: box threshold record has no threshold in [0, 1)")
    return float(t)
