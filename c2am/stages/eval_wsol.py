"""WSOL: scores on the test split for both box sources: the localizer and the C2AM map (docs/method.md §10).

GT-known, top-1 / top-5 localisation (class among the classifier's top k and IoU >= 0.5), top-1 / top-5
classification and MaxBoxAccV2 (IoU 0.3 / 0.5 / 0.7) of the localizer's boxes and of the C2AM boxes; for the
C2AM maps also MaxBoxAccV2 with map thresholds chosen on the held-out val split, and the test-split ORACLE.
Writes ``results/wsol.txt`` (first line ``gt_known_loc: 0.xxxx`` of the localizer) and ``results/wsol.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

from c2am import defaults
from c2am.artifacts import load_boxes, load_map, require_files
from c2am.data.voc import Manifest
from c2am.data.wsol import class_index, load_gt
from c2am.io import InputError, load_json, save_json, save_text
from c2am.parallel import map_items, pool_size
from c2am.runtime import run_stage, set_threads
from c2am.thresholds import cam_curve_grid, check_box_record
from c2am.wsol_metrics import iou_curve
from c2am.wsol_report import format_report, score_maps, score_source

log = logging.getLogger("c2am.eval_wsol")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.eval_wsol", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--gt", type=Path, required=True, help="WSOL GT file (prepare_wsol)")
    p.add_argument("--split", default="test", help="the scored split")
    p.add_argument("--held-out-split", default="val", help="the split whose GT boxes choose the map thresholds")
    p.add_argument("--localizer-boxes", type=Path, required=True)
    p.add_argument("--c2am-boxes", type=Path, required=True)
    p.add_argument("--threshold-json", type=Path, required=True, help="record of box_threshold")
    p.add_argument("--class-scores", type=Path, required=True, help="infer_classes output for the scored split")
    p.add_argument("--maps-dir", type=Path, required=True, help="C2AM maps of the scored split")
    p.add_argument("--held-out-maps", type=Path, required=True, help="C2AM maps of the held-out split")
    p.add_argument("--iou-thresholds", type=float, nargs="+")
    p.add_argument("--cam-curve-interval", type=float)
    p.add_argument("--out-txt", type=Path, required=True)
    p.add_argument("--out-json", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "wsol.eval")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if not args.iou_thresholds or any(not 0 < d < 1 for d in args.iou_thresholds):
        raise InputError(f"--iou-thresholds: each must lie in (0, 1), got {args.iou_thresholds}")
    return args


def _curve(item, taus):
    path, gt_boxes = item
    return iou_curve(load_map(path), gt_boxes, taus)


def curves(folder: Path, ids: list[str], gt, taus, threads: int, desc: str) -> np.ndarray:
    paths = require_files(folder, ids, ".npy", "map")
    items = list(zip(paths, [gt.boxes_of(i) for i in ids]))
    return np.stack(map_items(partial(_curve, taus=taus), items, threads=pool_size(len(items), threads), desc=desc))


def class_scores(path: Path, ids: list[str], classes: list[str]) -> np.ndarray:
    """N x K scores of ``ids``, columns in the order of ``classes`` (the manifest's, background excluded)."""
    data = load_json(path)
    scores = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(scores, dict):
        raise InputError(f"{path}: not a class-scores file (needs 'scores')")
    if data.get("classes") != classes:
        raise InputError(f"{path}: scores are for classes {str(data.get('classes'))[:80]}, not the dataset's")
    num_classes = len(classes)
    rows = []
    for i in ids:
        row = scores.get(i)
        if not isinstance(row, list) or len(row) != num_classes:
            raise InputError(f"{path}: scores of {i} must be a list of {num_classes} numbers")
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def boxes_for(path: Path, ids: list[str]) -> list:
    boxes = load_boxes(path)
    missing = [i for i in ids if i not in boxes]
    if missing:
        raise InputError(f"{path}: no entry for {len(missing)} of {len(ids)} images (e.g. {missing[0]})")
    return [boxes[i] for i in ids]


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    gt = load_gt(args.gt)
    ids = manifest.ids(args.split)
    k = manifest.num_classes - 1
    labels = np.array([class_index(manifest, i) - 1 for i in ids])
    gt_boxes = [gt.boxes_of(i) for i in ids]
    scores = class_scores(args.class_scores, ids, manifest.classes[1:])
    deltas = tuple(args.iou_thresholds)
    taus = cam_curve_grid(args.cam_curve_interval)
    record = load_json(args.threshold_json)
    check_box_record(record, args.threshold_json)

    result = {
        "split": args.split, "held_out_split": args.held_out_split, "num_classes": k,
        "iou_thresholds": list(deltas), "cam_curve_interval": args.cam_curve_interval,
        "box_threshold": {key: record.get(key) for key in ("method", "threshold", "split")},
        "localizer": score_source(boxes_for(args.localizer_boxes, ids), gt_boxes, scores, labels, deltas),
        "c2am": score_source(boxes_for(args.c2am_boxes, ids), gt_boxes, scores, labels, deltas),
    }
    held = manifest.ids(args.held_out_split)
    result["c2am_maps"] = score_maps(curves(args.held_out_maps, held, gt, taus, args.threads, "held-out curves"),
                                     curves(args.maps_dir, ids, gt, taus, args.threads, "test curves"), taus, deltas)
    text = format_report(result)
    save_json(args.out_json, result)
    save_text(args.out_txt, text)
    sys.stderr.write(text)
    return result


if __name__ == "__main__":
    sys.exit(run_stage(main))
