"""Do the CRF stages scale with cores? The label-CRF stage on the same VOC-size images with 1, 2, ... all cores.

    python bench/bench_crf_scaling.py [--images 48] [--size 375 500]

Writes a small VOC-layout set of textured images and noisy label maps (bench_crf.synthetic_scene), then runs
``python -m c2am.stages.crf_labels`` (default CRF parameters, as the DAG runs it) with ``--threads`` 1, 2, ...,
all CPUs, and prints wall seconds, images/s and the speed-up over one core. Stage start-up (imports, spawning
the worker pool) is included, as a user pays it. The other CRF stages (extract_cues, infer_deeplab --crf) use
the same process pool (c2am.parallel.map_items).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_crf import noisy, synthetic_scene  # noqa: E402
from c2am.artifacts import save_labels  # noqa: E402
from c2am.data.voc import Manifest  # noqa: E402
from c2am.io import save_jpeg  # noqa: E402
from c2am.runtime import available_cpus  # noqa: E402

CLASSES = ["background", "a", "b", "c"]


def write_set(root: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    ids = [f"im{i:04d}" for i in range(n)]
    for image_id in ids:
        image, labels = synthetic_scene(*size, rng)
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image)
        save_labels(root / "labels" / f"{image_id}.png", noisy(labels, rng, len(CLASSES)))
    manifest = Manifest(root=root, classes=CLASSES, splits={"train": ids}, labels={i: [1, 2, 3] for i in ids})
    manifest.save(root / "manifest.json")
    return root / "manifest.json"


def run_stage(manifest: Path, out: Path, threads: int) -> float:
    cmd = [sys.executable, "-m", "c2am.stages.crf_labels", "--manifest", str(manifest), "--labels-dir",
           str(manifest.parent / "labels"), "--out-dir", str(out), "--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--size", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cpus = available_cpus()
    counts = sorted({1, 2, cpus} & set(range(1, cpus + 1))) if cpus > 1 else [1]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_set(Path(tmp), args.images, tuple(args.size), args.seed)
        print(f"crf_labels on {args.images} images of {args.size[1]}x{args.size[0]}, {cpus} CPUs available")
        print(f"{'cores':>5} {'wall s':>8} {'img/s':>7} {'speed-up':>9}")
        base = None
        for threads in counts:
            wall = run_stage(manifest, Path(tmp) / f"out{threads}", threads)
            base = base or wall
            print(f"{threads:>5} {wall:8.2f} {args.images / wall:7.2f} {base / wall:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
