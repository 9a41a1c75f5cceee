"""Class-agnostic boxes (WSOL) from C2AM maps and their GT-known localisation accuracy.

Box of an image = bounding box of the largest 8-connected region of map > tau (the stored map, not
normalised: c2am.thresholds.map_box), as 0-based inclusive pixel coordinates [x1, y1, x2, y2] (null when no
pixel exceeds tau; such an image counts as a miss).
GT-known localisation = share of images whose box has IoU >= 0.5 with any GT box (Annotations XML), over the
images that have a GT box (a COCO image may have none; a folder dataset has no boxes at all: the report then says
``gt_known_loc: no ground truth: not scored``, and the boxes are written all the same).
``--threshold otsu`` / ``otsu3`` take the two- / three-class Otsu threshold over the split's pooled map histogram
(no GT; c2am.thresholds, docs/method.md §4).
A tau sweep follows in the text report, labelled oracle: it is chosen on the scored split.
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
from c2am.io import save_text
from c2am.parallel import map_items
from c2am.runtime import run_stage, set_threads
from c2am.summary import NOT_SCORED
from c2am.thresholds import DATASET_METHODS, ORACLE_SWEEP, map_box, parse_threshold, resolve_threshold
from c2am.wsol_metrics import box_ious, gt_known_loc

log = logging.getLogger("c2am.c2am_boxes")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.c2am_boxes", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--maps-dir", required=True)
    p.add_argument("--threshold", help="otsu / otsu3 (from the maps, no GT) or a number in (0, 1)")
    p.add_argument("--out", required=True, help="image id -> [x1, y1, x2, y2] or null")
    p.add_argument("--out-txt", required=True, help="report; first line gt_known_loc: 0.xxxx")
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "c2am.boxes")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.threshold = parse_threshold(str(args.threshold), "--threshold", methods=DATASET_METHODS)
    return args


def boxes_for_image(image_id: str, manifest: Manifest, maps_dir: Path, taus: tuple[float, ...]) -> dict:
    """Boxes at every tau in ``taus`` and their IoUs with the image's GT boxes (None: no GT box to score)."""
    fmap = load_map(maps_dir / f"{image_id}.npy")
    gt = [b for _, b in manifest.gt_boxes(image_id)] if manifest.has_boxes else []
    boxes = [map_box(fmap, t, normalise=False) for t in taus]
    return {"boxes": boxes, "ious": box_ious(boxes, [gt] * len(boxes)) if gt else None}


def format_report(acc: float | None, tau: float, method: str, n: int, empty: int, sweep: dict[float, float],
                  scored: int | None = None) -> str:
    """The text report; ``acc`` None: no image has a GT box (the first line says not scored)."""
    head = [
        f"gt_known_loc: {NOT_SCORED}" if acc is None else f"gt_known_loc: {acc:.4f}",
        f"tau: {tau:.4f} (method {method}, chosen from the maps without GT)",
        f"images: {n}  without any pixel above tau: {empty}",
    ]
    if scored is not None and scored != n:
        head.append(f"images with a GT box (scored): {scored}")
    if acc is None:
        return "\n".join(head) + "\n"
    best = max(sweep, key=sweep.get)
    lines = head + [
        f"oracle tau (chosen on this split's GT): {best:.2f}  oracle gt_known_loc: {sweep[best]:.4f}",
        "oracle sweep (tau: gt_known_loc): " + ", ".join(f"{t:.2f}: {v:.4f}" for t, v in sweep.items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    maps_dir = Path(args.maps_dir)
    ids = manifest.ids(args.split)
    record = resolve_threshold(args.threshold, require_files(maps_dir, ids, ".npy", "map"), args.threads)
    tau, method = record["threshold"], record["method"]
    taus = (tau,) + ORACLE_SWEEP
    fn = partial(boxes_for_image, manifest=manifest, maps_dir=maps_dir, taus=taus)
    results = map_items(fn, ids, threads=args.threads, desc="c2am boxes")
    boxes = {i: r["boxes"][0] for i, r in zip(ids, results)}
    scored = [r["ious"] for r in results if r["ious"] is not None]
    acc, sweep = None, {}
    if scored:
        loc = gt_known_loc(np.stack(scored))  # column 0: the chosen tau; then the oracle sweep
        acc, sweep = float(loc[0]), {t: float(a) for t, a in zip(ORACLE_SWEEP, loc[1:])}
    empty = sum(b is None for b in boxes.values())
    save_boxes(args.out, boxes)
    text = format_report(acc, tau, method, len(ids), empty, sweep, scored=len(scored))
    save_text(args.out_txt, text)
    sys.stderr.write(text)
    return {"gt_known_loc": acc, "tau": tau, "method": method, "oracle_sweep": sweep}


if __name__ == "__main__":
    sys.exit(run_stage(main))
