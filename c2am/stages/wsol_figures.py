"""WSOL: the report's figures, test images with the GT box, the C2AM box and the localizer box.

Two figures: a sample (``random.Random(seed).sample`` of the test ids, in id order) and the failure cases (the
test images whose localizer box has the lowest IoU with the GT, worst first; a missing box counts as IoU 0).
Each panel is titled with the IoU of the C2AM and the localizer box against the GT box and the classifier's
top-1 class (✓ when right).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from c2am import defaults
from c2am.artifacts import load_boxes
from c2am.data.voc import Manifest
from c2am.data.wsol import load_gt
from c2am.figures import sample_ids, save_figure
from c2am.io import InputError, load_json
from c2am.runtime import run_stage
from c2am.wsol_report import lowest_iou_ids, wsol_boxes_figure


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.wsol_figures", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--gt", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--localizer-boxes", type=Path, required=True)
    p.add_argument("--c2am-boxes", type=Path, required=True)
    p.add_argument("--class-scores", type=Path, required=True)
    p.add_argument("--n-images", type=int, default=12, help="test images shown")
    p.add_argument("--n-failures", type=int, default=8, help="lowest-IoU test images in the failure figure")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path, required=True, help="PNG of the sample")
    p.add_argument("--failures-out", type=Path, required=True, help="PNG of the failure cases")
    defaults.apply(p, "seed")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    for flag, n in (("--n-images", args.n_images), ("--n-failures", args.n_failures)):
        if n < 1:
            raise InputError(f"wsol_figures: {flag} must be >= 1, got {n}")
    manifest = Manifest.load(args.manifest)
    test_ids = manifest.ids(args.split)
    localizer, c2am = load_boxes(args.localizer_boxes), load_boxes(args.c2am_boxes)
    scores = load_json(args.class_scores).get("scores", {})
    for name, table, path in (("localizer", localizer, args.localizer_boxes), ("C2AM", c2am, args.c2am_boxes),
                              ("class scores", scores, args.class_scores)):
        missing = [i for i in test_ids if i not in table]
        if missing:
            raise InputError(f"{path}: no {name} entry for {missing[0]}")
    gt = load_gt(args.gt)
    figures = (
        (args.out, sample_ids(test_ids, args.n_images, args.seed), f"WSOL on the {args.split} split"),
        (args.failures_out, lowest_iou_ids(test_ids, gt, localizer, args.n_failures),
         f"Failure cases: the {args.n_failures} {args.split} images with the lowest localizer IoU"),
    )
    for out, ids, title in figures:
        save_figure(wsol_boxes_figure(manifest, ids, gt, localizer, c2am, scores, manifest.classes, title), out)


if __name__ == "__main__":
    sys.exit(run_stage(main))
