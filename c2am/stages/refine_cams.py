"""Stage 6: pseudo labels from class CAMs and a background score: argmax over [B, CAMs].

Per image (c2am.refine; docs/method.md §5), the background score B is one of:

- ``--cues-dir``: B = 1 - cue (the CRF cues of extract_cues, 255 = foreground);
- ``--saliency-dir``: B = 1 - S (the soft maps of infer_saliency, the official step 4);
- ``--fixed-tau``: a constant B = tau (the CAM-only baseline).

The output is a folder of label maps (c2am.artifacts); ties go to background. The distractor-robust test is a
stage of its own (robust_labels), applied to these labels after the label CRF.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults
from c2am.artifacts import load_background, load_cams, require_files, save_labels
from c2am.data.voc import Manifest
from c2am.parallel import map_items
from c2am.refine import refine_labels
from c2am.runtime import run_stage, set_threads
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.refine_cams")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.refine_cams", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--cams-dir", type=Path, required=True, help="<id>.npz from infer_cam")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cues-dir", type=Path, help="<id>.png cues from extract_cues (255 = foreground)")
    source.add_argument("--saliency-dir", type=Path, help="<id>.npy soft saliency maps from infer_saliency")
    source.add_argument("--fixed-tau", type=float, help="constant background score (the CAM-only baseline)")
    p.add_argument("--out-dir", type=Path, required=True)
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "refine", exclude=("tau_sweep", "robust"))  # --fixed-tau: the baseline's tau, when chosen
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def background_of(image_id: str, size: tuple[int, int], args: argparse.Namespace):
    """The image's background score B: an H x W array, or the constant tau."""
    if args.cues_dir is None and args.saliency_dir is None:
        return args.fixed_tau  # the config gives --fixed-tau a default, so it is set even beside a folder
    return load_background(image_id, size, args.cues_dir, args.saliency_dir)


def refine_one(image_id: str, args: argparse.Namespace) -> None:
    cams, classes = load_cams(args.cams_dir / f"{image_id}.npz")
    background = background_of(image_id, cams.shape[1:], args)
    save_labels(args.out_dir / f"{image_id}.png", refine_labels(cams, classes, background))


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    require_files(args.cams_dir, ids, ".npz", "CAM file")
    if args.cues_dir is not None:
        require_files(args.cues_dir, ids, ".png", "cue")
    if args.saliency_dir is not None:
        require_files(args.saliency_dir, ids, ".npy", "saliency map")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    map_items(partial(refine_one, args=args), ids, threads=threads, desc="refine")
    log.info("wrote %d pseudo labels to %s", len(ids), args.out_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
