"""Background cues: a C2AM map thresholded (c2am.thresholds), then refined by a 2-label dense CRF (docs/method.md §4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c2am.artifacts import load_map
from c2am.crf import crf_two_label
from c2am.thresholds import image_threshold


def cue_from_map(image: np.ndarray, fmap: np.ndarray, record: dict, crf: dict) -> np.ndarray:
    """Boolean H x W foreground cue: map > t (t from the threshold ``record``), refined by the CRF over ``image``."""
    return crf_two_label(image, fmap > image_threshold(record, fmap), **crf)


def cue_for_image(manifest, image_id: str, maps_dir: Path, record: dict, crf: dict) -> np.ndarray:
    """:func:`cue_from_map` of one image of the manifest and its map ``maps_dir/<id>.npy``."""
    image = manifest.load_image(image_id)
    fmap = load_map(Path(maps_dir) / f"{image_id}.npy", image.shape[:2])
    return cue_from_map(image, fmap, record, crf)
