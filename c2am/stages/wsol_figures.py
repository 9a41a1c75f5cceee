"""WSOL: the figure for the report, sampled test images with the GT box, the C2AM box and the localizer box.

Each panel is titled with the IoU of the C2AM and the localizer box against the GT box and the classifier's
top-1 class (✓ when right). The sample is ``random.Random(seed).sample`` of the test ids, shown in id order.
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
from c2am.wsol_report import wsol_boxes_figure


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.wsol_figures", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--gt", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--localizer-boxes", type=Path, required=True)
    p.add_argument("--c2am-boxes", type=Path, required=True)
    p.add_argument("--class-scores", type=Path, required=True)
    p.add_argument("--n-images", type=int, default=12, help="test images shown")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path, required=True, help="PNG")
    defaults.apply(p, "seed")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    manifest = Manifest.load(args.manifest)
    ids = sample_ids(manifest.ids(args.split), args.n_images, args.seed)
    localizer, c2am = load_boxes(args.localizer_boxes), load_boxes(args.c2am_boxes)
    scores = load_json(args.class_scores).get("scores", {})
    for name, table, path in (("localizer", localizer, args.localizer_boxes), ("C2AM", c2am, args.c2am_boxes),
                              ("class scores", scores, args.class_scores)):
        missing = [i for i in ids if i not in table]
        if missing:
            raise InputError(f"{path}: no {name} entry for {missing[0]}")
    fig = wsol_boxes_figure(manifest, ids, load_gt(args.gt), localizer, c2am, scores, manifest.classes)
    save_figure(fig, args.out)


if __name__ == "__main__":
    sys.exit(run_stage(main))
