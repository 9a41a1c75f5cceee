"""Quality report of C2AM maps and cues against the GT foreground (any class > 0; GT 255 ignored).

Scoring only: this is the one C2AM stage that reads GT masks. Output (``--out``), first three lines fixed:

    map_fg_iou: <IoU of map > t, t = the threshold the cue stage used>
    cue_fg_iou: <IoU of the cues the cue stage wrote>
    map_auc: <ROC AUC of the raw map>

then the threshold and its method, map and CRF-cue IoU at ``--fixed-threshold`` (the paper's t), map
IoU of a per-image Otsu threshold, and lines labelled ``oracle``: the best map threshold on this very
split (chosen with GT, so not a fair figure) and the CRF cue at that threshold.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

from c2am import defaults
from c2am.artifacts import load_cue, load_map
from c2am.crf import add_crf_args, crf_args
from c2am.cues import cue_for_image
from c2am.data.voc import Manifest
from c2am.io import load_json, save_json, save_text
from c2am.metrics import BinaryAUC, BinaryIoU
from c2am.parallel import map_items
from c2am.runtime import run_stage, set_threads
from c2am.thresholds import check_record, image_threshold, map_histogram, otsu_from_histogram

log = logging.getLogger("c2am.eval_c2am")

AUC_BINS = 1024
# Thresholds of the oracle sweep of the raw map (IoU from the AUC histograms, so the sweep is free).
SWEEP = tuple(round(0.05 * k, 2) for k in range(1, 20))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.eval_c2am", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train", help="split role scored (its GT masks are read here only)")
    p.add_argument("--maps-dir", required=True)
    p.add_argument("--cues-dir", required=True)
    p.add_argument("--threshold-json", required=True, help="threshold record written by extract_cues")
    p.add_argument("--fixed-threshold", type=float, help="the paper's fixed t, reported beside")
    p.add_argument("--oracle-cues", action=argparse.BooleanOptionalAction, default=False,
                   help="also run the CRF at the oracle map threshold (one more CRF pass)")
    p.add_argument("--out", required=True, help="text report")
    p.add_argument("--out-json", default=None, help="optional: the same figures as JSON")
    add_crf_args(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "c2am.cues", exclude=("threshold",))
    return p.parse_args(argv)


def score_image(image_id: str, manifest: Manifest, maps_dir: Path, cues_dir: Path, record: dict,
                fixed: float) -> dict:
    """Per-image streaming counts (merged by the caller): AUC histograms and IoU counts of each variant."""
    gt = manifest.load_mask(image_id)
    fmap = load_map(maps_dir / f"{image_id}.npy", gt.shape)
    cue = load_cue(cues_dir / f"{image_id}.png", gt.shape)
    t_used = image_threshold(record, fmap)
    t_image = otsu_from_histogram(map_histogram(fmap))
    return {
        "auc": BinaryAUC(AUC_BINS).update_from_mask(fmap, gt),
        "map_used": BinaryIoU().update(fmap > t_used, gt),
        "cue_used": BinaryIoU().update(cue, gt),
        "map_fixed": BinaryIoU().update(fmap > fixed, gt),
        "map_otsu_image": BinaryIoU().update(fmap > t_image, gt),
        "cue_share": float(cue.mean()),
        "map_mean": float(fmap.mean()),
    }


def crf_iou_image(image_id: str, manifest: Manifest, maps_dir: Path, threshold: float, crf: dict) -> BinaryIoU:
    """IoU counts of the CRF cue at a given fixed threshold (for the fixed-t and oracle lines)."""
    record = {"method": "fixed", "threshold": threshold}
    cue = cue_for_image(manifest, image_id, maps_dir, record, crf)
    return BinaryIoU().update(cue, manifest.load_mask(image_id))


def merge(items: list, key: str):
    total = items[0][key]
    for item in items[1:]:
        total.merge(item[key])
    return total


def crf_iou(ids, manifest, maps_dir, threshold, crf, threads, desc) -> float:
    fn = partial(crf_iou_image, manifest=manifest, maps_dir=maps_dir, threshold=threshold, crf=crf)
    parts = map_items(fn, ids, threads=threads, desc=desc)
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total.compute()


def format_report(s: dict) -> str:
    t = s["threshold"]
    t_text = "per-image" if t is None else f"{t:.4f}"
    lines = [
        f"map_fg_iou: {s['map_fg_iou']:.4f}",
        f"cue_fg_iou: {s['cue_fg_iou']:.4f}",
        f"map_auc: {s['map_auc']:.4f}",
        f"threshold: {t_text} (method {s['method']}, chosen from the maps without GT)",
        f"map_fg_iou_fixed_t{s['fixed_threshold']:g}: {s['map_fg_iou_fixed']:.4f}",
        f"cue_fg_iou_fixed_t{s['fixed_threshold']:g}: {s['cue_fg_iou_fixed']:.4f}",
        f"map_fg_iou_otsu_image: {s['map_fg_iou_otsu_image']:.4f}",
        f"map_mean: {s['map_mean']:.4f}  cue_fg_share: {s['cue_fg_share']:.4f}  gt_fg_share: {s['gt_fg_share']:.4f}",
        f"oracle map threshold (chosen on this split's GT): {s['oracle_threshold']:.2f}",
        f"oracle map_fg_iou: {s['oracle_map_fg_iou']:.4f}",
    ]
    if s.get("oracle_cue_fg_iou") is not None:
        lines.append(f"oracle cue_fg_iou (CRF at the oracle threshold): {s['oracle_cue_fg_iou']:.4f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    maps_dir, cues_dir = Path(args.maps_dir), Path(args.cues_dir)
    record = check_record(load_json(args.threshold_json), args.threshold_json)
    ids = manifest.require_gt_ids(args.split)  # the images with a GT mask (all, unless a folder dataset's subset)
    crf = crf_args(args)

    fn = partial(score_image, manifest=manifest, maps_dir=maps_dir, cues_dir=cues_dir, record=record,
                 fixed=args.fixed_threshold)
    per_image = map_items(fn, ids, threads=args.threads, desc="score c2am")
    auc = merge(per_image, "auc")
    sweep = {t: auc.iou_at(t) for t in SWEEP}
    oracle_t = max(sweep, key=sweep.get)
    scores = {
        "map_fg_iou": merge(per_image, "map_used").compute(),
        "cue_fg_iou": merge(per_image, "cue_used").compute(),
        "map_auc": auc.compute(),
        "method": record["method"],
        "threshold": record.get("threshold"),
        "fixed_threshold": args.fixed_threshold,
        "map_fg_iou_fixed": merge(per_image, "map_fixed").compute(),
        "cue_fg_iou_fixed": crf_iou(ids, manifest, maps_dir, args.fixed_threshold, crf, args.threads, "cues fixed t"),
        "map_fg_iou_otsu_image": merge(per_image, "map_otsu_image").compute(),
        "map_mean": float(np.mean([p["map_mean"] for p in per_image])),
        "cue_fg_share": float(np.mean([p["cue_share"] for p in per_image])),
        "gt_fg_share": float(auc.pos.sum() / (auc.pos.sum() + auc.neg.sum())),
        "oracle_threshold": oracle_t,
        "oracle_map_fg_iou": sweep[oracle_t],
        "oracle_sweep": {f"{t:.2f}": v for t, v in sweep.items()},
        "oracle_cue_fg_iou": None,
    }
    if args.oracle_cues:
        scores["oracle_cue_fg_iou"] = crf_iou(ids, manifest, maps_dir, oracle_t, crf, args.threads, "cues oracle t")
    text = format_report(scores)
    save_text(args.out, text)
    if args.out_json:
        save_json(args.out_json, scores)
    sys.stderr.write(text)
    return scores


if __name__ == "__main__":
    sys.exit(run_stage(main))
