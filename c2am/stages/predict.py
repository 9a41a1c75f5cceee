"""Prediction on new images: the trained DeepLab on every image of a folder (config ``predict.images``).

Images: ``.jpg``, ``.jpeg``, ``.png`` directly in the folder, of any size; grayscale, CMYK and palette images are
converted to RGB. Per image, the softmax is averaged over ``--scales`` (and horizontal flips with ``--flip``) and,
with ``--crf``, refined by the dense CRF on the softmax: the settings of ``deeplab.infer`` (docs/method.md §6). Writes

- ``--out-masks/<id>.png``: the predicted classes, VOC palette (pixel value = class index), the image's size;
- ``--out-overlays/<id>.jpg``: the classes blended over the image with a legend of the classes it shows, the
  image's size (c2am.figures.prediction_overlay).

``<id>`` is the file name without its extension. A missing or empty folder, or two files with one id, stops the
stage with an error naming the folder, before the network is loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from c2am import defaults
from c2am.artifacts import save_labels
from c2am.crf import SOFTMAX_CRF, add_crf_args, crf_args, crf_probs_job
from c2am.data.folder import ImageFolder
from c2am.data.voc import Manifest
from c2am.figures import prediction_overlay
from c2am.inference import (
    add_inference_args,
    add_scale_reference_arg,
    check_scales,
    iterate_batches,
    predict_probs_batch,
    reference_scales,
    size_batches,
)
from c2am.io import save_jpeg
from c2am.models.deeplab import load_deeplab, training_side
from c2am.parallel import map_items
from c2am.runtime import pick_device, run_stage, set_threads

log = logging.getLogger("c2am.predict")

CRF_CHUNK = 64  # images whose probabilities wait for the CRF at once (bounds memory on large photos)


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.predict", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset): the class names")
    p.add_argument("--checkpoint", required=True, help="train_deeplab checkpoint")
    p.add_argument("--images", help="folder of new images (config predict.images)")
    p.add_argument("--out-masks", required=True, help="folder for <id>.png palette masks")
    p.add_argument("--out-overlays", required=True, help="folder for <id>.jpg overlays with the class legend")
    add_inference_args(p, shard=False)  # a folder of new images, not a split: not sharded
    add_scale_reference_arg(p)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="add horizontal flips")
    p.add_argument("--crf", action=argparse.BooleanOptionalAction, help="dense CRF on the softmax")
    add_crf_args(p, SOFTMAX_CRF)
    defaults.apply(p, "deeplab.infer")
    defaults.apply(p, "predict")
    return p


def write_outputs(results, folder: ImageFolder, classes: list[str], masks: Path, overlays: Path) -> None:
    for image_id, labels in results:
        save_labels(masks / f"{image_id}.png", labels)
        save_jpeg(overlays / f"{image_id}.jpg", prediction_overlay(folder.load_image(image_id), labels, classes))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = ImageFolder(args.images, what="prediction folder (config predict.images)")  # checked first
    threads = set_threads(args.threads)
    check_scales(args.scales)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model = load_deeplab(args.checkpoint, manifest.num_classes, device)
    side = training_side(args.checkpoint) if args.scale_reference == "train" else None
    masks, overlays = Path(args.out_masks), Path(args.out_overlays)
    for d in (masks, overlays):
        d.mkdir(parents=True, exist_ok=True)
    crf_params = crf_args(args, SOFTMAX_CRF)

    pending: list[tuple] = []
    bar = tqdm(total=len(folder.ids), desc="predict", mininterval=1.0)
    batches = size_batches(folder, folder.ids, args.batch_size)  # one size per batch: photos of any size mix
    for batch_ids, batch_pixels, images in iterate_batches(folder, batches, device, args.workers):
        scales = reference_scales(args.scales, images.shape[-2:], side)
        probs_batch = predict_probs_batch(model, images, scales, args.flip, args.amp)
        for image_id, pixels, probs in zip(batch_ids, batch_pixels, probs_batch):
            if not args.crf:
                labels = probs.argmax(dim=0).to(torch.uint8).cpu().numpy()
                write_outputs([(image_id, labels)], folder, manifest.classes, masks, overlays)
                continue
            pending.append((image_id, pixels, probs.cpu().numpy().astype(np.float16), crf_params))
        if len(pending) >= CRF_CHUNK:
            write_outputs(map_items(crf_probs_job, pending, threads=threads, desc="predict crf"), folder,
                          manifest.classes, masks, overlays)
            pending.clear()
        bar.update(len(batch_ids))
    bar.close()
    if pending:
        write_outputs(map_items(crf_probs_job, pending, threads=threads, desc="predict crf"), folder,
                      manifest.classes, masks, overlays)
    log.info("predict: %d images of %s -> %s, %s (scales %s of the %s size, flip %s, crf %s)", len(folder.ids),
             folder.folder, masks, overlays, args.scales, args.scale_reference, args.flip, args.crf)
    return len(folder.ids)


if __name__ == "__main__":
    sys.exit(run_stage(main))
