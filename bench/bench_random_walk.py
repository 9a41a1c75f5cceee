"""Time and memory of the affinity random walk per image (c2am.affinity.walk_scores), on a CPU.

    python bench/bench_random_walk.py [--runs 3] [--iterations 32] [--radius 5] [--threads 1]

Sizes: 500x375 (a typical VOC image: a 125 x 94 stride-4 grid, 11750 cells) and 128x128 (the embedded dataset).
The features are random (the walk's cost does not depend on their values); four score maps (B and three CAMs).
Prints seconds per image and the process's peak RSS after each size, so the sparse graph's memory shows (a dense
N x N float32 matrix of the VOC size would need 552 MB, and its t-th power far more time).
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2am.affinity import walk_scores  # noqa: E402

SIZES = ((375, 500), (128, 128))  # (height, width)
FEATURE_DIM = 64
SCORE_MAPS = 4


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--iterations", type=int, default=32)
    p.add_argument("--radius", type=int, default=5)
    p.add_argument("--beta", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"radius {args.radius}, beta {args.beta}, t {args.iterations}, {args.threads} thread(s); "
          f"peak RSS after the imports {peak_rss_mb():.0f} MB")
    for h, w in SIZES:
        grid = (math.ceil(h / 4), math.ceil(w / 4))
        features = torch.randn(FEATURE_DIM, *grid)
        scores = rng.random((SCORE_MAPS, h, w)).astype(np.float32)
        walk_scores(features, scores, args.radius, args.beta, args.iterations)  # warm-up
        start = time.perf_counter()
        for _ in range(args.runs):
            walk_scores(features, scores, args.radius, args.beta, args.iterations)
        seconds = (time.perf_counter() - start) / args.runs
        print(f"{w}x{h} (grid {grid[1]}x{grid[0]}, {grid[0] * grid[1]} cells): {seconds:.3f} s/image, "
              f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
