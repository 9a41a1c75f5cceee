"""Stage 11: score predicted label PNGs against the GT masks of a split: mIoU and per-class IoU (c2am.scoring).

Outputs (written atomically):

- text: first line ``mIoU: <percent, 2 decimals>``, then ``<class>: <percent>`` per class; a class absent from
  both GT and predictions is written ``nan`` and left out of the mean;
- JSON: the same numbers (unrounded percent, ``null`` for absent classes), the class names, the ``C x C``
  confusion matrix (rows GT, columns prediction), the per-class count of uncertain pixels, and the inputs.

Only the split's images that have a GT mask are scored (``num_images`` of ``split_images``): all of them on VOC
and COCO, those with a mask in a folder dataset; a split without any mask is an error (nothing to score).
"""

from __future__ import annotations

import argparse
import logging
import sys

from c2am import defaults
from c2am.data.voc import Manifest
from c2am.io import save_json, save_text
from c2am.runtime import run_stage, set_threads
from c2am.scoring import format_scores, score_folder, scores_dict

log = logging.getLogger("c2am.evaluate")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.evaluate", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", required=True, help="split role whose ids are scored: train, pseudo_eval or val")
    p.add_argument("--pred-dir", required=True, help="folder of predicted label PNGs, <id>.png")
    p.add_argument("--gt-dir", default=None, help="folder of GT label PNGs (default: the manifest's mask folder)")
    p.add_argument("--out-txt", required=True, help="text report: 'mIoU: ..' then one line per class")
    p.add_argument("--out-json", required=True, help="JSON report with the confusion matrix")
    p.add_argument("--threads", type=int, default=1, help="worker processes reading and scoring PNGs")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    threads = set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    cm = score_folder(manifest, args.split, args.pred_dir, args.gt_dir, threads=threads)
    result = scores_dict(cm, manifest.classes)
    scored = manifest.gt_ids(args.split) if args.gt_dir is None else manifest.ids(args.split)
    result.update(split=args.split, num_images=len(scored), split_images=len(manifest.ids(args.split)),
                  pred_dir=str(args.pred_dir),
                  gt_dir=None if args.gt_dir is None else str(args.gt_dir))
    save_text(args.out_txt, format_scores(cm, manifest.classes))
    save_json(args.out_json, result)
    log.info("%s on %s (%d images): mIoU %.2f", args.pred_dir, args.split, result["num_images"], 100.0 * cm.miou())
    return result


if __name__ == "__main__":
    sys.exit(run_stage(main))
