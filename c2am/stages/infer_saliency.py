"""Stage 3d: soft saliency maps from a trained saliency network (docs/method.md §4).

Per image: S = sigmoid(logit), averaged over ``--scales`` (and their horizontal flips with ``--flip``) at the
image's size, in [0, 1] and not max-normalised. Written as ``<id>.npy`` float16 maps (c2am.artifacts.save_map,
read back with load_map); the refinement takes B = 1 - S as its background score.
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
from c2am.inference import add_inference_args, check_scales, iterate_batches, saliency_maps, size_batches
from c2am.models.saliency import load_saliency
from c2am.runtime import pick_device, run_stage, set_threads, use_amp
from c2am.shards import select_shard

log = logging.getLogger("c2am.infer_saliency")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.infer_saliency", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role to write maps for")
    p.add_argument("--checkpoint", required=True, help="saliency checkpoint from train_saliency")
    p.add_argument("--out-dir", required=True, help="folder for <id>.npy saliency maps")
    add_inference_args(p)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="add horizontal flips")
    defaults.apply(p, "saliency.infer")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    check_scales(args.scales)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model = load_saliency(args.checkpoint, device)
    if use_amp(device, args.amp):
        model = model.to(memory_format=torch.channels_last)
    ids = select_shard(manifest.ids(args.split), args.shard)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("saliency maps: %d images, scales %s, flip %s, on %s", len(ids), args.scales, args.flip, device)
    batches = size_batches(manifest, ids, args.batch_size)
    with tqdm(total=len(ids), desc="saliency maps", mininterval=1.0) as bar:
        for batch_ids, _, images in iterate_batches(manifest, batches, device, args.workers):
            for image_id, smap in zip(batch_ids, saliency_maps(model, images, args.scales, args.flip, args.amp)):
                save_map(out_dir / f"{image_id}.npy", smap)
            bar.update(len(batch_ids))
    log.info("wrote %d saliency maps to %s", len(ids), out_dir)
    return len(ids)


if __name__ == "__main__":
    sys.exit(run_stage(main))
