"""Stage 7c: train the affinity network on the confident parts of a pseudo-label variant (docs/method.md §5b).

The labels of ``--labels-dir`` (a pseudo-label variant, e.g. cam_sal_crf) with a neutral band of ``--band``
pixels cut along every boundary (c2am.affinity.neutral_band) are the targets; pairs of stride-4 cells closer than
``--radius`` cells train the balanced affinity loss (c2am.affinity.affinity_loss). No GT mask is read. SGD with a
10x head lr and poly decay; joint image/label scale jitter, 255-padded crop and flip. The loop is
:func:`c2am.training.fit`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults, distributed
from c2am.affinity import affinity_loss, grid_labels, neutral_band
from c2am.artifacts import require_files
from c2am.data.datasets import SegmentationDataset, segmentation_train_transform
from c2am.data.voc import Manifest
from c2am.io import InputError
from c2am.models.affinity import build_affinity
from c2am.models.backbone import TRUNK_NAMES
from c2am.runtime import run_stage
from c2am.training import (
    add_training_args,
    check_crop_training_args,
    fit,
    make_poly_scheduler,
    make_sgd,
    resume_state_path,
    train_loader,
)

log = logging.getLogger("c2am.train_affinity")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.train_affinity", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role to train on")
    p.add_argument("--labels-dir", required=True, help="pseudo-label PNGs of the base variant (<id>.png)")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--log-csv", required=True, help="per-step CSV log (epoch,step,loss,lr)")
    p.add_argument("--backbone", choices=TRUNK_NAMES)
    p.add_argument("--weights", help="pretrained / imagenet / none / a local checkpoint")
    p.add_argument("--dim", type=int, help="feature channels whose L1 distance gives the affinity")
    p.add_argument("--band", type=int, help="pixels within this distance of another label are neutral")
    p.add_argument("--radius", type=int, help="training pairs: stride-4 cells closer than this many cells")
    add_training_args(p)
    p.add_argument("--crop", type=int, help="square training crop (padded with 255 = neutral)")
    p.add_argument("--scale-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="random resize of the image's shorter side, as a fraction of the crop")
    defaults.apply(p, "affinity", exclude=("base", "train", "walk"))
    defaults.apply(p, "affinity.train")
    defaults.apply(p, "seed")
    return p


def check_args(args: argparse.Namespace) -> None:
    check_crop_training_args(args)
    if args.band < 0:
        raise InputError(f"affinity.band (--band) must be >= 0, got {args.band}")
    if args.radius < 2:
        raise InputError(f"affinity.radius (--radius) must be >= 2, got {args.radius}")
    if args.dim < 1:
        raise InputError(f"affinity.dim (--dim) must be positive, got {args.dim}")
    if not Path(args.labels_dir).is_dir():
        raise InputError(f"{args.labels_dir}: labels directory not found")


def run_meta(args: argparse.Namespace) -> dict:
    """Everything that defines the run (plain values): fit ignores a resume state written with other values."""
    return {
        "kind": "affinity",
        "backbone": args.backbone,
        "weights": str(args.weights),
        "dim": args.dim,
        "split": args.split,
        "labels": str(Path(args.labels_dir)),
        "band": args.band,
        "radius": args.radius,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr_mult": args.head_lr_mult,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "crop": args.crop,
        "scale_range": [float(s) for s in args.scale_range],
    }


def make_loader(args: argparse.Namespace, manifest: Manifest, dist: distributed.DistInfo):
    require_files(args.labels_dir, manifest.ids(args.split), ".png", "pseudo label")
    transform = segmentation_train_transform(args.crop, tuple(args.scale_range))
    dataset = SegmentationDataset(manifest, args.split, transform=transform, mask_dir=Path(args.labels_dir),
                                  mask_fn=partial(neutral_band, width=args.band))
    return train_loader(dataset, args.batch_size, dist, args.seed, args.workers)


def step(model, batch, radius: int):
    images, labels = batch
    features = model(images)
    return affinity_loss(features, grid_labels(labels, features.shape[-2:]), radius)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    check_args(args)
    return distributed.launch(train, args)


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> dict:
    manifest = Manifest.load(args.manifest)
    loader = make_loader(args, manifest, dist)
    log.info("train_affinity: %s on %d '%s' images with the labels of %s (band %d px, radius %d), %d steps/epoch",
             args.backbone, len(loader.dataset), args.split, args.labels_dir, args.band, args.radius, len(loader))

    model = build_affinity(args.backbone, args.weights, dim=args.dim)
    backbone, head = model.parameter_groups()
    optimizer = make_sgd(backbone, head, args.lr, args.head_lr_mult, args.momentum, args.weight_decay)
    scheduler = make_poly_scheduler(optimizer, args.epochs * len(loader))

    out = Path(args.out)
    return fit(
        model, loader, optimizer, scheduler, args.epochs, partial(step, radius=args.radius),
        dist=dist, ckpt_path=out, state_path=resume_state_path(out), resume=args.resume, amp=args.amp,
        log_csv=args.log_csv, meta=run_meta(args), seed=args.seed, desc="affinity",
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
