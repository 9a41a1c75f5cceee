"""WSOL: class scores of the classifier on each image of a split (single scale, the whole image).

The classifier is the multi-label one of train_classifier, trained on one-hot labels (one class per WSOL
image): its sigmoid scores rank the classes, and the top-k of that ranking give top-k classification and
localisation (c2am.wsol_metrics). Written as JSON ``{"classes": [...], "scores": {id: [score per class]}}``
(classes 1..K of the manifest, in order).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from c2am import defaults
from c2am.data.voc import Manifest
from c2am.io import save_json
from c2am.inference import predict_scores
from c2am.models.classifier import load_classifier
from c2am.runtime import pick_device, run_stage, set_threads

log = logging.getLogger("c2am.infer_classes")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.infer_classes", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", type=Path, required=True, help="classifier checkpoint (train_classifier)")
    p.add_argument("--out", type=Path, required=True, help="class scores JSON")
    p.add_argument("--batch-size", type=int, help="images per forward pass (images of one size only)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="fp16 autocast on CUDA")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    defaults.apply(p, "classifier.infer", exclude=("scales",))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model = load_classifier(args.checkpoint, manifest.classes, device)
    scores, _ = predict_scores(model, manifest, args.split, device, args.batch_size, args.amp)
    ids = manifest.ids(args.split)
    out = {"classes": manifest.classes[1:], "split": args.split,
           "scores": {i: [round(float(v), 6) for v in row] for i, row in zip(ids, scores)}}
    save_json(args.out, out)
    log.info("wrote class scores of %d images of split %s", len(ids), args.split)
    return out


if __name__ == "__main__":
    sys.exit(run_stage(main))
