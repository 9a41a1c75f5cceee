"""WSOL: the localizer's box on each image of a split (the whole image resized to the trained input size).

The predicted edges, in units of the image (averaged with those of the mirrored image under ``--flip``), are
scaled to the image's size and rounded to a 0-based inclusive pixel box ``[x1, y1, x2, y2]``
(c2am.data.datasets.unit_to_box; docs/method.md §10). Written as a boxes JSON (c2am.artifacts).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from c2am import defaults
from c2am.artifacts import save_boxes
from c2am.data.datasets import unit_to_box
from c2am.data.voc import Manifest
from c2am.inference import iterate_images
from c2am.models.localizer import load_localizer, predict_unit_box
from c2am.runtime import pick_device, run_stage, set_threads

log = logging.getLogger("c2am.infer_localizer")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.infer_localizer", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", type=Path, required=True, help="localizer checkpoint (train_localizer)")
    p.add_argument("--out", type=Path, required=True, help="image id -> [x1, y1, x2, y2]")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="average with the mirrored image's box")
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    defaults.apply(p, "wsol.localizer.infer")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model, meta = load_localizer(args.checkpoint, device)
    ids = manifest.ids(args.split)
    boxes = {}
    for image_id, pixels, image in tqdm(iterate_images(manifest, ids, device, args.workers), total=len(ids),
                                        desc="localizer boxes", mininterval=1.0):
        boxes[image_id] = unit_to_box(predict_unit_box(model, image, meta["size"], args.flip), pixels.shape[:2])
    save_boxes(args.out, boxes)
    log.info("wrote %d localizer boxes of split %s to %s", len(boxes), args.split, args.out)
    return boxes


if __name__ == "__main__":
    sys.exit(run_stage(main))
