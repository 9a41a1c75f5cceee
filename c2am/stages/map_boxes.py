"""WSOL: the class-agnostic box of each image of a split from its C2AM map, at the recorded threshold.

Box = bounding box of the largest 8-connected region of the min-max normalised map above the threshold of
``--threshold-json`` (box_threshold), 0-based inclusive ``[x1, y1, x2, y2]`` or null (c2am.thresholds). On
the train split these are the localizer's pseudo boxes; on the test split the C2AM boxes that are scored
beside the localizer's. With ``--gt`` and ``--out-txt`` their GT-known localisation on the split is reported
(on train a transductive diagnostic of the pseudo boxes: those GT boxes are read for that report only).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

from c2am import defaults
from c2am.artifacts import load_map, require_files, save_boxes
from c2am.data.voc import Manifest
from c2am.data.wsol import load_gt
from c2am.io import InputError, load_json, save_text
from c2am.parallel import map_items, pool_size
from c2am.runtime import run_stage, set_threads
from c2am.thresholds import check_box_record, map_box
from c2am.wsol_metrics import box_ious, gt_known_loc

log = logging.getLogger("c2am.map_boxes")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.map_boxes", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--maps-dir", type=Path, required=True)
    p.add_argument("--threshold-json", type=Path, required=True, help="record of box_threshold")
    p.add_argument("--out", type=Path, required=True, help="image id -> [x1, y1, x2, y2] or null")
    p.add_argument("--gt", type=Path, help="WSOL GT file: report GT-known localisation of these boxes")
    p.add_argument("--out-txt", type=Path, help="that report (first line gt_known_loc: 0.xxxx)")
    p.add_argument("--threads", type=int, default=1)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if (args.gt is None) != (args.out_txt is None):
        raise InputError("--gt and --out-txt go together")
    return args


def box_of(path: Path, tau: float):
    return map_box(load_map(path), tau, normalise=True)


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    tau = check_box_record(load_json(args.threshold_json), args.threshold_json)
    ids = manifest.ids(args.split)
    paths = require_files(args.maps_dir, ids, ".npy", "map")
    boxes = dict(zip(ids, map_items(partial(box_of, tau=tau), paths, threads=pool_size(len(paths), args.threads),
                                          desc="map boxes")))
    empty = sum(b is None for b in boxes.values())
    save_boxes(args.out, boxes)
    log.info("%d boxes of split %s at tau %.3f (%d maps without a pixel above it)", len(ids), args.split, tau, empty)
    out = {"tau": tau, "images": len(ids), "empty": empty}
    if args.gt is not None:
        gt = load_gt(args.gt)
        ious = box_ious([boxes[i] for i in ids], [gt.boxes_of(i) for i in ids])
        out["gt_known_loc"] = float(gt_known_loc(ious))
        text = (f"gt_known_loc: {out['gt_known_loc']:.4f}\n"
                f"split: {args.split} ({len(ids)} images; {empty} without a box)\n"
                f"tau: {tau:.4f} (from {args.threshold_json})\n"
                f"mean_iou: {float(np.mean(ious)):.4f}\n")
        save_text(args.out_txt, text)
        sys.stderr.write(text)
    return out


if __name__ == "__main__":
    sys.exit(run_stage(main))
