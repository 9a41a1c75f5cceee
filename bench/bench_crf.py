"""Time per image of the dense CRF wrappers with default parameters.

    python bench/bench_crf.py [--runs 3] [--seed 0]

Sizes: 500x375 (a typical VOC image) and 128x128 (the embedded dataset). The image is synthetic but textured
(smooth shading, a few objects, pixel noise), because the bilateral lattice grows with colour variety and a flat
image would time too optimistically. Both wrappers run single-threaded, as in the pipeline's workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2am.crf import crf_from_labels, crf_two_label  # noqa: E402

SIZES = ((375, 500), (128, 128))  # (height, width)
N_LABELS = 21


def synthetic_scene(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Textured RGB image and a label map of three ellipses (classes 1..3) on background 0."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    image = np.stack([120 + 80 * xx, 100 + 60 * yy, 140 - 50 * xx * yy], axis=-1)
    labels = np.zeros((h, w), np.uint8)
    for cls in (1, 2, 3):
        cy, cx = rng.uniform(0.2, 0.8) * h / max(h, w), rng.uniform(0.2, 0.8) * w / max(h, w)
        ry, rx = rng.uniform(0.08, 0.2, size=2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        image[inside] = rng.uniform(30, 225, size=3)
        labels[inside] = cls
    image += rng.normal(0, 12, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def noisy(labels: np.ndarray, rng: np.random.Generator, n_labels: int, rate: float = 0.1) -> np.ndarray:
    """Labels with a share of pixels replaced at random, so the CRF has work to do."""
    out = labels.copy()
    flip = rng.random(labels.shape) < rate
    out[flip] = rng.integers(0, n_labels, size=int(flip.sum()))
    return out


def time_per_call(fn, runs: int) -> float:
    fn()  # warm-up: first call pays for imports
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="timed calls per case (after one warm-up call)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'size':>9}  {'case':<24} {'s/image':>8}")
    for h, w in SIZES:
        image, labels = synthetic_scene(h, w, rng)
        fg = noisy(labels, rng, 2) > 0
        multi = noisy(labels, rng, 4)
        cases = {
            "crf_two_label": lambda: crf_two_label(image, fg),
            f"crf_from_labels ({N_LABELS})": lambda: crf_from_labels(image, multi, N_LABELS),
        }
        for name, fn in cases.items():
            print(f"{w:>4}x{h:<4}  {name:<24} {time_per_call(fn, args.runs):8.3f}", flush=True)


if __name__ == "__main__":
    main()
