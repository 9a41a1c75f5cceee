"""Stage 10: predict segmentation masks with the trained DeepLab; one palette PNG (argmax) per image.

``--scales`` and ``--flip`` average softmax probabilities over scales (and horizontal flips); ``--crf`` then
runs a dense CRF whose unary is the averaged softmax (c2am.crf.crf_from_probs, docs/method.md §6).
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
from c2am.data.voc import Manifest
from c2am.inference import (
    add_inference_args,
    add_scale_reference_arg,
    check_scales,
    iterate_batches,
    predict_probs_batch,
    reference_scales,
    size_batches,
)
from c2am.models.deeplab import load_deeplab, training_side
from c2am.parallel import map_items
from c2am.runtime import pick_device, run_stage, set_threads
from c2am.shards import select_shard

log = logging.getLogger("c2am.infer_deeplab")

# Images whose probabilities wait for the CRF at once: bounds memory on real VOC (21 x 500 x 375 float16 each).
CRF_CHUNK = 128


def run_crf_jobs(jobs: list[tuple], out_dir: Path, threads: int) -> None:
    """CRF the pending images on ``threads`` processes, write their PNGs, and empty ``jobs``."""
    if jobs:
        for image_id, labels in map_items(crf_probs_job, jobs, threads=threads, desc="deeplab crf"):
            save_labels(out_dir / f"{image_id}.png", labels)
        jobs.clear()


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.infer_deeplab", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="val", help="split role to predict")
    p.add_argument("--checkpoint", required=True, help="train_deeplab checkpoint")
    p.add_argument("--out-dir", required=True, help="folder for <id>.png palette predictions")
    add_inference_args(p)
    add_scale_reference_arg(p)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="add horizontal flips")
    p.add_argument("--crf", action=argparse.BooleanOptionalAction, help="dense CRF on the softmax")
    add_crf_args(p, SOFTMAX_CRF)
    defaults.apply(p, "deeplab.infer")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = set_threads(args.threads)
    check_scales(args.scales)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    model = load_deeplab(args.checkpoint, manifest.num_classes, device)
    side = training_side(args.checkpoint) if args.scale_reference == "train" else None
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    crf_params = crf_args(args, SOFTMAX_CRF)

    crf_jobs: list[tuple] = []
    batches = size_batches(manifest, ids, args.batch_size)
    bar = tqdm(total=len(ids), desc="deeplab predict", mininterval=1.0)
    for batch_ids, batch_pixels, images in iterate_batches(manifest, batches, device, args.workers):
        scales = reference_scales(args.scales, images.shape[-2:], side)
        probs_batch = predict_probs_batch(model, images, scales, args.flip, args.amp)
        for image_id, pixels, probs in zip(batch_ids, batch_pixels, probs_batch):
            if not args.crf:
                save_labels(out_dir / f"{image_id}.png", probs.argmax(dim=0).to(torch.uint8).cpu().numpy())
                continue
            # float16 halves what travels to the CRF workers; the CRF takes logs of clipped values anyway.
            crf_jobs.append((image_id, pixels, probs.cpu().numpy().astype(np.float16), crf_params))
        if len(crf_jobs) >= CRF_CHUNK:
            run_crf_jobs(crf_jobs, out_dir, threads)
        bar.update(len(batch_ids))
    bar.close()
    run_crf_jobs(crf_jobs, out_dir, threads)
    log.info("infer_deeplab: wrote %d predictions to %s (scales %s of the %s size, flip %s, crf %s)",
             len(ids), out_dir, args.scales, args.scale_reference, args.flip, args.crf)
    return len(ids)


if __name__ == "__main__":
    sys.exit(run_stage(main))
