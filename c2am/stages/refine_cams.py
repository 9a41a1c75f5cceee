"""Stage 6: pseudo labels from class CAMs, refined with the C2AM background cues, plus the tau baseline.

Per image (c2am.refine.refine_labels): ``--out-cues-dir`` gets argmax over [1 - cue_fg, CAMs] (the cue is the
grayscale PNG of extract_cues, 255 = foreground); ``--out-tau-dir`` gets argmax over [tau, CAMs] with the
constant ``--fixed-tau``. Both are VOC-palette PNGs, so the same evaluator scores them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

from c2am.data.voc import Manifest
from c2am.io import InputError, load_label_png, load_npz, run_stage, save_label_png, set_threads
from c2am.parallel import map_items
from c2am.refine import background_from_cue, check_cams, refine_labels
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.refine_cams")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.refine_cams", description=__doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--cams-dir", type=Path, required=True, help="<id>.npz from infer_cam")
    p.add_argument("--cues-dir", type=Path, required=True, help="<id>.png cues from extract_cues (255 = foreground)")
    p.add_argument("--fixed-tau", type=float, default=0.15, help="constant background score of the baseline")
    p.add_argument("--out-cues-dir", type=Path, required=True)
    p.add_argument("--out-tau-dir", type=Path, required=True)
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def load_cams(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(K x H x W float32 CAMs, K class indices) from an infer_cam ``.npz``; a malformed file is an InputError."""
    data = load_npz(path)
    if "cams" not in data or "classes" not in data:
        raise InputError(f"{path}: expected arrays 'cams' and 'classes', found {sorted(data)}")
    try:
        return check_cams(data["cams"], data["classes"])
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def load_cue(path: Path, size: tuple[int, int]) -> np.ndarray:
    cue = load_label_png(path)
    if cue.shape != tuple(size):
        raise InputError(f"{path}: cue size {cue.shape[1]}x{cue.shape[0]} differs from the CAMs' {size[1]}x{size[0]}")
    return cue


def refine_one(image_id: str, cams_dir: Path, cues_dir: Path, tau: float, out_cues: Path, out_tau: Path) -> None:
    cams, classes = load_cams(cams_dir / f"{image_id}.npz")
    cue = load_cue(cues_dir / f"{image_id}.png", cams.shape[1:])
    save_label_png(out_cues / f"{image_id}.png", refine_labels(cams, classes, background_from_cue(cue)))
    save_label_png(out_tau / f"{image_id}.png", refine_labels(cams, classes, tau))


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    for d in (args.out_cues_dir, args.out_tau_dir):
        d.mkdir(parents=True, exist_ok=True)
    work = partial(
        refine_one, cams_dir=args.cams_dir, cues_dir=args.cues_dir, tau=args.fixed_tau,
        out_cues=args.out_cues_dir, out_tau=args.out_tau_dir,
    )
    map_items(work, ids, threads=threads, desc="refine")
    log.info("wrote %d pseudo labels to %s and %s", len(ids), args.out_cues_dir, args.out_tau_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
