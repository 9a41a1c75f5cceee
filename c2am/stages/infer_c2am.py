"""Stage 2: class-agnostic foreground maps from a trained C2AM checkpoint (docs/method.md §4).

Per image: each scale and its horizontal flip go through the network as one batch; each map is oriented as
foreground in probability space (P, or 1 - P when the checkpoint says ``inverted``), the flip is added back, the
sum is upsampled to the image size and accumulated over scales, then divided by its maximum. Written as
``<id>.npy`` maps (c2am.artifacts).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from c2am import defaults
from c2am.artifacts import save_map
from c2am.data.voc import Manifest
from c2am.inference import add_inference_args, check_scales, foreground_maps, iterate_batches, size_batches
from c2am.models.c2am_net import load_c2am
from c2am.runtime import pick_device, run_stage, set_threads, use_amp
from c2am.shards import select_shard

log = logging.getLogger("c2am.infer_c2am")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.infer_c2am", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint", required=True, help="C2AM checkpoint from train_c2am")
    p.add_argument("--out-dir", required=True, help="folder for <id>.npy maps")
    add_inference_args(p)
    defaults.apply(p, "c2am.infer")
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
    model, inverted = load_c2am(args.checkpoint, device)
    if use_amp(device, args.amp):
        model = model.to(memory_format=torch.channels_last)
    ids = select_shard(manifest.ids(args.split), args.shard)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("C2AM maps: %d images, scales %s, inverted=%s, on %s", len(ids), args.scales, inverted, device)
    batches = size_batches(manifest, ids, args.batch_size)
    with tqdm(total=len(ids), desc="c2am maps", mininterval=1.0) as bar:
        for batch_ids, _, images in iterate_batches(manifest, batches, device, args.workers):
            for image_id, fmap in zip(batch_ids, foreground_maps(model, inverted, images, args.scales, args.amp)):
                save_map(out_dir / f"{image_id}.npy", fmap)
            bar.update(len(batch_ids))
    log.info("wrote %d maps to %s", len(ids), out_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
