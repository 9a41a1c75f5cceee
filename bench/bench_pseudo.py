"""Time per image of the pseudo-label steps at VOC size (500x375) and at the embedded size (128x128).

    python bench/bench_pseudo.py [--runs 5] [--seed 0]

- label CRF (crf_labels.crf_present_labels, default parameters) on a label map with background + 3 classes;
- refinement with a cue (refine.refine_labels, K = 3 CAMs);
- the CAM-only tau sweep of eval_pseudo (refine.refine_sweep, 15 taus).
Single-threaded, as in the pipeline's workers. The image is textured (shading + noise) because the CRF's
bilateral lattice grows with colour variety; a flat image would time too optimistically.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2am.refine import background_from_cue, refine_labels, refine_sweep  # noqa: E402
from c2am.thresholds import threshold_grid  # noqa: E402
from c2am.crf import crf_present_labels  # noqa: E402

SIZES = ((375, 500), (128, 128))  # (height, width)
CLASSES = [3, 8, 15]


def scene(h: int, w: int, rng: np.random.Generator):
    """Textured image, labels with three ellipse objects, matching CAMs (peaked inside) and a cue."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    image = np.stack([120 + 80 * xx, 100 + 60 * yy, 140 - 50 * xx * yy], axis=-1)
    labels = np.zeros((h, w), np.uint8)
    cams = np.zeros((len(CLASSES), h, w), np.float32)
    for k, cls in enumerate(CLASSES):
        cy, cx = rng.uniform(0.2, 0.8) * h / max(h, w), rng.uniform(0.2, 0.8) * w / max(h, w)
        ry, rx = rng.uniform(0.08, 0.2, size=2)
        r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        image[r2 < 1] = rng.uniform(30, 225, size=3)
        labels[r2 < 1] = cls
        cams[k] = np.exp(-2 * r2)
    image += rng.normal(0, 12, size=image.shape)
    noisy = labels.copy()
    flip = rng.random(labels.shape) < 0.1
    noisy[flip] = rng.choice([0, *CLASSES], size=int(flip.sum()))
    cue = np.where(labels > 0, 255, 0).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), noisy, cams, cue


def seconds_per_call(fn, runs: int) -> float:
    fn()  # warm-up (imports, allocations)
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - t0) / runs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    taus = threshold_grid(0.05, 0.75, 0.05)
    print(f"{'size':>9}  {'label CRF':>10}  {'refine (cue)':>12}  {'tau sweep x15':>13}")
    for h, w in SIZES:
        image, noisy, cams, cue = scene(h, w, rng)
        t_crf = seconds_per_call(lambda i=image, n=noisy: crf_present_labels(i, n), args.runs)
        t_ref = seconds_per_call(lambda c=cams, q=cue: refine_labels(c, CLASSES, background_from_cue(q)), args.runs)
        t_sweep = seconds_per_call(lambda c=cams: refine_sweep(c, CLASSES, taus), args.runs)
        print(f"{w:>4}x{h:<4}  {1e3 * t_crf:>8.1f}ms  {1e3 * t_ref:>10.2f}ms  {1e3 * t_sweep:>11.2f}ms")


if __name__ == "__main__":
    main()
