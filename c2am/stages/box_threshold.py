"""WSOL: the one map threshold of the class-agnostic boxes (pseudo boxes on train, C2AM boxes on test).

``--threshold val`` sweeps the threshold grid on the held-out ``val`` split and keeps the best GT-known
localisation of the largest-region boxes (its GT boxes are read; the test split's never are); ``otsu`` /
``otsu3`` come from the training maps without GT; a number is used as is (c2am.thresholds, docs/method.md §10).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from c2am import defaults
from c2am.artifacts import require_files
from c2am.data.voc import Manifest
from c2am.data.wsol import load_gt
from c2am.io import InputError, save_json
from c2am.runtime import run_stage, set_threads
from c2am.thresholds import BOX_METHODS, parse_threshold, resolve_box_threshold

log = logging.getLogger("c2am.box_threshold")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.box_threshold", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--threshold", help="val (best GT-known on the held-out val split), otsu / otsu3 (train maps, "
                                      "no GT) or a number in (0, 1)")
    p.add_argument("--val-maps", type=Path, help="maps of the val split (for --threshold val)")
    p.add_argument("--train-maps", type=Path, help="maps of the train split (for --threshold otsu / otsu3)")
    p.add_argument("--gt", type=Path, help="WSOL GT file (for --threshold val; only the val split's boxes are read)")
    p.add_argument("--cam-curve-interval", type=float, help="step of the threshold grid 0, h, 2h, ... < 1")
    p.add_argument("--out", type=Path, required=True, help="threshold record JSON")
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "wsol.boxes")
    defaults.apply(p, "wsol.eval", exclude=("iou_thresholds",))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.threshold = parse_threshold(str(args.threshold), "--threshold", methods=BOX_METHODS)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    if args.threshold == "val":
        if args.val_maps is None or args.gt is None:
            raise InputError("--threshold val needs --val-maps and --gt")
        ids, split, folder = manifest.ids("val"), "val", args.val_maps
        gt = load_gt(args.gt)
        gt_boxes = [gt.boxes_of(i) for i in ids]
    elif args.threshold in ("otsu", "otsu3"):
        if args.train_maps is None:
            raise InputError(f"--threshold {args.threshold} needs --train-maps")
        ids, split, folder, gt_boxes = manifest.ids("train"), "train", args.train_maps, None
    else:
        ids, split, folder, gt_boxes = [], None, None, None
    paths = require_files(folder, ids, ".npy", "map") if ids else []
    record = resolve_box_threshold(args.threshold, paths, gt_boxes, args.cam_curve_interval, split, args.threads)
    save_json(args.out, record)
    log.info("box threshold %.3f (method %s%s)", record["threshold"], record["method"],
             f", GT-known {record['gt_known_loc']:.4f} on {split}" if "gt_known_loc" in record else "")
    return record


if __name__ == "__main__":
    sys.exit(run_stage(main))
