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

from c2am import defaults
from c2am.crf import add_crf_args, crf_args
from c2am.data.voc import Manifest
from c2am.io import load_json, save_json, save_text
from c2am.runtime import run_stage, set_threads
from c2am.scoring import score_c2am
from c2am.thresholds import check_record

log = logging.getLogger("c2am.eval_c2am")

def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.eval_c2am", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train", help="split role scored (its GT masks are read here only)")
    p.add_argument("--maps-dir", required=True)
    p.add_argument("--cues-dir", required=True)
    p.add_argument("--threshold-json", required=True, help="threshold record written by extract_cues")
    p.add_argument("--fixed-threshold", type=float, help="the paper's fixed t, reported beside")
    p.add_argument("--oracle-cues", action=argparse.BooleanOptionalAction, default=False,
                   help="also run the CRF at the oracle map threshold (one more CRF pass)")
    p.add_argument("--out-txt", required=True, help="text report")
    p.add_argument("--out-json", default=None, help="optional: the same figures as JSON")
    add_crf_args(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "c2am.cues", exclude=("threshold",))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


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
    record = check_record(load_json(args.threshold_json), args.threshold_json)
    scores = score_c2am(manifest, args.split, args.maps_dir, args.cues_dir, record, args.fixed_threshold,
                        crf_args(args), threads=args.threads, oracle_cues=args.oracle_cues)
    text = format_report(scores)
    save_text(args.out_txt, text)
    if args.out_json:
        save_json(args.out_json, scores)
    sys.stderr.write(text)
    return scores


if __name__ == "__main__":
    sys.exit(run_stage(main))
