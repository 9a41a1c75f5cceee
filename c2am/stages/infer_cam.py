"""Stage 5: class activation maps of the trained classifier, for each image's own (image-level) classes.

CAM_c = ReLU(conv_c(f4)), summed over scales and horizontal flips, upsampled to the image size, each class
divided by its maximum (c2am.inference.image_cams; docs/method.md §5). One ``<id>.npz`` per image (c2am.artifacts).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from c2am import defaults
from c2am.artifacts import save_cams
from c2am.data.voc import Manifest
from c2am.inference import add_inference_args, batch_cams, check_scales, image_cams, iterate_batches, size_batches
from c2am.models.classifier import load_classifier
from c2am.runtime import pick_device, run_stage, set_threads
from c2am.shards import select_shard

log = logging.getLogger("c2am.infer_cam")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.infer_cam", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint", type=Path, required=True, help="classifier checkpoint (train_classifier)")
    p.add_argument("--out-dir", type=Path, required=True)
    add_inference_args(p)
    defaults.apply(p, "classifier.infer")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_scales(args.scales)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model = load_classifier(args.checkpoint, manifest.classes, device)
    labels = manifest.image_labels(args.split)
    ids = select_shard(manifest.ids(args.split), args.shard)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    batches = size_batches(manifest, ids, args.batch_size)
    with tqdm(total=len(ids), desc="CAMs", mininterval=1.0) as bar:
        for batch_ids, _, images in iterate_batches(manifest, batches, device, args.workers):
            classes = [labels[i] for i in batch_ids]
            if len(batch_ids) == 1:  # one image: only its own classes go through the scales
                cams = [image_cams(model, images, classes[0], args.scales, args.amp)]
            else:
                cams = batch_cams(model, images, classes, args.scales, args.amp)
            for image_id, own, image_cam in zip(batch_ids, classes, cams):
                save_cams(args.out_dir / f"{image_id}.npz", own, image_cam.cpu().numpy())
            bar.update(len(batch_ids))
    log.info("wrote %d CAM files to %s", len(ids), args.out_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
