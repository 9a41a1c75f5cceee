"""Stage 2: class-agnostic foreground maps from a trained C2AM checkpoint.

Per image: for each scale, the image and its horizontal flip go through the network as one batch;
each map is oriented as foreground in probability space (P, or 1 - P when the checkpoint says
``inverted``), the flip is added back, the sum is upsampled bilinearly to the image size and
accumulated over scales; the result is divided by its maximum. Written as ``<id>.npy``, float16
H x W in [0, 1] (allow_pickle=False).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from c2am.data.voc import Manifest
from c2am.inference import iterate_images, multiscale_flip, normalize_by_max
from c2am.io import (
    InputError,
    load_checkpoint,
    load_state_strict,
    pick_device,
    run_stage,
    save_npy,
    set_threads,
)
from c2am.models.backbone import build_trunk
from c2am.models.c2am_net import C2AM
from c2am.shards import add_shard_arg, select_shard
from c2am.training import autocast, use_amp

log = logging.getLogger("c2am.infer_c2am")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.infer_c2am", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint", required=True, help="C2AM checkpoint from train_c2am")
    p.add_argument("--out-dir", required=True, help="folder for <id>.npy maps")
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="fp16 autocast on CUDA")
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    if any(s <= 0 for s in args.scales):
        raise InputError(f"--scales: must all be positive, got {args.scales}")
    return args


def load_c2am(path, device) -> tuple[C2AM, bool]:
    """Model in eval mode on ``device`` (trunk built without downloading: weights come from the checkpoint)
    and its polarity flag."""
    ckpt = load_checkpoint(path)
    meta = ckpt["meta"]
    if meta.get("model") != "c2am" or "backbone" not in meta:
        raise InputError(f"{path}: not a C2AM checkpoint (meta model={meta.get('model')!r})")
    if not isinstance(meta.get("inverted"), bool):
        raise InputError(f"{path}: checkpoint meta has no boolean 'inverted' polarity flag")
    model = C2AM(build_trunk(meta["backbone"], "none"))
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval(), meta["inverted"]


def foreground_map(model: C2AM, inverted: bool, image: torch.Tensor, scales, amp: bool) -> np.ndarray:
    """H x W float32 foreground map in [0, 1] of one 1 x 3 x H x W image."""
    device = image.device

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return model.foreground_map(x, inverted).float()

    summed = multiscale_flip(forward, image, scales)
    return normalize_by_max(summed)[0].cpu().numpy()


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model, inverted = load_c2am(args.checkpoint, device)
    if use_amp(device, args.amp):
        model = model.to(memory_format=torch.channels_last)
    ids = select_shard(manifest.ids(args.split), args.shard)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("C2AM maps: %d images, scales %s, inverted=%s, on %s", len(ids), args.scales, inverted, device)
    images = iterate_images(manifest, ids, device, num_workers=args.workers)
    for image_id, _, image in tqdm(images, total=len(ids), desc="c2am maps", mininterval=1.0):
        fmap = foreground_map(model, inverted, image, args.scales, args.amp)
        save_npy(out_dir / f"{image_id}.npy", fmap.astype(np.float16))
    log.info("wrote %d maps to %s", len(ids), out_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
