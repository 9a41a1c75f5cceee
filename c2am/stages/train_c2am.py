"""Stage 1: train C2AM on unlabelled images (contrastive fg/bg pooling; docs/method.md §3).

No labels of any kind are read: the dataset yields images only. After epoch 1 the border test (c2am.polarity)
decides the polarity; the flag is stored as ``inverted`` in the checkpoint meta and ``--polarity`` overrides it.
A per-epoch resume state beside the checkpoint lets a killed run continue after its last finished epoch.

Multi-GPU: the same command under torchrun runs DistributedDataParallel, one process per GPU::

    torchrun --standalone --nproc_per_node=K -m c2am.stages.train_c2am --manifest ... --out ...

``--batch-size`` stays the GLOBAL batch; the pooled vectors are gathered over the processes with gradients,
so the loss sees all N^2 pairs of the global batch (docs/method.md §7). ``--device cpu`` under torchrun uses gloo.
"""

from __future__ import annotations

import argparse
import logging
import sys

from c2am import defaults, distributed
from c2am.data.datasets import UnlabeledImages, image_train_transform
from c2am.data.voc import Manifest
from c2am.io import InputError
from c2am.losses import c2am_step
from c2am.models.backbone import TRUNK_NAMES, build_trunk
from c2am.models.c2am_net import C2AM
from c2am.polarity import polarity_callback, polarity_images
from c2am.runtime import run_stage, use_amp
from c2am.training import (
    add_training_args,
    fit,
    make_poly_scheduler,
    make_sgd,
    resume_state_path,
    train_loader,
)

log = logging.getLogger("c2am.train_c2am")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.train_c2am", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role whose images train C2AM")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--log-csv", required=True, help="per-step CSV log")
    p.add_argument("--backbone", choices=TRUNK_NAMES)
    p.add_argument("--weights", help="pretrained / imagenet / none / a local checkpoint")
    add_training_args(p)
    p.add_argument("--alpha", type=float, help="rank-weight decay of the positive terms")
    p.add_argument("--resize", type=int, help="images are resized to resize x resize ...")
    p.add_argument("--crop", type=int, help="... then randomly cropped to crop x crop")
    p.add_argument("--polarity", choices=("auto", "normal", "inverted"))
    p.add_argument("--border", type=float, help="border strip width (fraction of the side)")
    defaults.apply(p, "c2am", exclude=("train", "infer", "cues", "boxes"))
    defaults.apply(p, "c2am.train")
    defaults.apply(p, "seed")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    for key in ("epochs", "batch_size", "resize", "crop"):
        if getattr(args, key) < 1:
            raise InputError(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    if args.crop > args.resize:
        raise InputError(f"--crop {args.crop} is larger than --resize {args.resize}")
    if not 0 < args.border < 0.5:
        raise InputError(f"--border: must be in (0, 0.5), got {args.border}")
    if args.lr <= 0:
        raise InputError(f"--lr: must be positive, got {args.lr}")


def run_meta(args: argparse.Namespace) -> dict:
    """Plain metadata that defines the run; the resume state must have been written with the same."""
    keys = ("split", "batch_size", "lr", "head_lr_mult", "momentum", "weight_decay", "alpha", "resize", "crop",
            "polarity", "border")
    return {"kind": "c2am", "backbone": args.backbone, "weights": str(args.weights),
            **{k: getattr(args, k) for k in keys}, "amp": bool(args.amp)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    return distributed.launch(train, args)


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> dict:
    manifest = Manifest.load(args.manifest)
    data = UnlabeledImages(manifest, args.split, image_train_transform(args.crop, resize=args.resize))
    loader = train_loader(data, args.batch_size, dist, args.seed, args.workers)

    model = C2AM(build_trunk(args.backbone, args.weights))
    optimizer = make_sgd(model.backbone_parameters(), model.head_parameters(), lr=args.lr,
                         head_lr_mult=args.head_lr_mult, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = make_poly_scheduler(optimizer, args.epochs * len(loader))
    on_epoch_end = polarity_callback(polarity_images(manifest, args.split, args.resize), args.border,
                                     args.polarity, dist.device)

    log.info("C2AM: %d images, %d steps/epoch, %d epochs, %s on %s (amp=%s, %d process(es))", len(data),
             len(loader), args.epochs, args.backbone, dist.device, use_amp(dist.device, args.amp), dist.world_size)
    final = fit(
        model, loader, optimizer, scheduler, args.epochs, c2am_step(args.alpha), dist=dist,
        ckpt_path=args.out, state_path=resume_state_path(args.out), resume=args.resume, amp=args.amp,
        log_csv=args.log_csv, meta=run_meta(args), seed=args.seed, on_epoch_end=on_epoch_end, desc="c2am",
    )
    log.info("C2AM done: inverted=%s, final loss %.4f", final.get("inverted"), final["final_loss"])
    return final


if __name__ == "__main__":
    sys.exit(run_stage(main))
