"""Stage 7d: pseudo labels from the CAMs and the background score after a random walk on learned affinities
(docs/method.md §5b).

Per image: the affinity network's stride-4 features give the row-stochastic transition matrix T = D^-1 a^beta on
the graph of cells closer than ``--radius`` (sparse); the variant's background score B (``--cues-dir``: 1 - cue,
``--saliency-dir``: 1 - S) and the class CAMs are averaged onto the grid, multiplied by T ``--iterations`` times,
upsampled, and labelled by argmax over [B, CAMs] as refine_cams does (c2am.affinity, c2am.refine).
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
from c2am.affinity import walk_scores
from c2am.artifacts import load_background, load_cams, require_files, save_labels
from c2am.data.voc import Manifest
from c2am.inference import add_inference_args, iterate_batches, size_batches
from c2am.models.affinity import load_affinity
from c2am.refine import refine_labels
from c2am.runtime import pick_device, run_stage, set_threads
from c2am.shards import select_shard

log = logging.getLogger("c2am.random_walk")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.random_walk", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role to label")
    p.add_argument("--checkpoint", required=True, help="affinity checkpoint from train_affinity")
    p.add_argument("--cams-dir", type=Path, required=True, help="<id>.npz from infer_cam")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cues-dir", type=Path, help="<id>.png cues from extract_cues: B = 1 - cue")
    source.add_argument("--saliency-dir", type=Path, help="<id>.npy saliency maps from infer_saliency: B = 1 - S")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for <id>.png pseudo labels")
    p.add_argument("--radius", type=int, help="the walk's graph: stride-4 cells closer than this many cells")
    p.add_argument("--beta", type=float, help="affinities raised to this power before row normalisation")
    p.add_argument("--iterations", type=int, help="t: products with the transition matrix")
    add_inference_args(p, scales=False, amp=False)
    defaults.apply(p, "affinity.walk")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    require_files(args.cams_dir, ids, ".npz", "CAM file")
    background = {"cues_dir": args.cues_dir, "saliency_dir": args.saliency_dir}
    suffix, what = (".png", "cue") if args.cues_dir is not None else (".npy", "saliency map")
    require_files(args.cues_dir or args.saliency_dir, ids, suffix, what)
    model = load_affinity(args.checkpoint, device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log.info("random walk: %d images, radius %d, beta %g, t %d, on %s", len(ids), args.radius, args.beta,
             args.iterations, device)
    with tqdm(total=len(ids), desc="random walk", mininterval=1.0) as bar, torch.no_grad():
        for batch_ids, _, images in iterate_batches(manifest, size_batches(manifest, ids, args.batch_size), device,
                                                     args.workers):
            features = model(images).float()
            for image_id, feats in zip(batch_ids, features):
                cams, classes = load_cams(args.cams_dir / f"{image_id}.npz")
                bg = load_background(image_id, cams.shape[1:], **background)
                walked = walk_scores(feats, np.concatenate([bg[None], cams]), args.radius, args.beta, args.iterations)
                save_labels(args.out_dir / f"{image_id}.png", refine_labels(walked[1:], classes, walked[0]))
            bar.update(len(batch_ids))
    log.info("wrote %d pseudo labels to %s", len(ids), args.out_dir)
    return len(ids)


if __name__ == "__main__":
    sys.exit(run_stage(main))
