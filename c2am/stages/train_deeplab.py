"""Stage 9: train the final segmentation network (DeepLab) on pseudo labels, or on GT masks as the reference.

``--labels-dir`` trains on the label PNGs of a pseudo-label stage (one ``<id>.png`` per train image, 255 =
ignore); ``--gt-labels`` trains on the GT masks of the train split instead: the fully supervised reference
that WSSS results are divided by. Cross-entropy ignores 255; SGD (head at ``lr * head_lr_mult``) with a linear
warm-up and poly decay; joint image/mask scale jitter, 255-padded crop and flip. The loop (resume, CSV log,
AMP + channels_last on CUDA) is :func:`c2am.training.fit`.

Multi-GPU: ``torchrun --standalone --nproc_per_node=K -m c2am.stages.train_deeplab ...`` trains with
DistributedDataParallel and synchronised BatchNorm (docs/method.md §7); ``--batch-size`` stays the global
batch, split equally over the processes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from c2am import defaults, distributed
from c2am.artifacts import require_files
from c2am.data.datasets import SegmentationDataset, segmentation_train_transform
from c2am.data.voc import Manifest
from c2am.io import InputError
from c2am.models.deeplab import MODEL_NAMES, build_deeplab, segmentation_loss
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

log = logging.getLogger("c2am.train_deeplab")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.train_deeplab", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role to train on")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels-dir", help="folder of pseudo-label PNGs (<id>.png, 255 = ignore)")
    source.add_argument("--gt-labels", action="store_true", help="train on the GT masks (fully supervised reference)")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--log-csv", required=True, help="per-step CSV log (epoch,step,loss,lr)")
    p.add_argument("--backbone", choices=MODEL_NAMES, help="the segmentation network: DeepLab head on a trunk")
    p.add_argument("--weights", help="the trunk's: pretrained / imagenet / none / a local checkpoint")
    add_training_args(p)
    p.add_argument("--warmup-iters", type=int, help="optimiser steps of linear lr warm-up before the poly decay")
    p.add_argument("--crop", type=int, help="square training crop (padded with 255 labels)")
    p.add_argument("--scale-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="random resize of the image's shorter side, as a fraction of the crop")
    defaults.apply(p, "deeplab", exclude=("labels", "train", "infer"))
    defaults.apply(p, "deeplab.train")
    defaults.apply(p, "seed")
    return p


def check_args(args: argparse.Namespace) -> None:
    check_crop_training_args(args)
    if args.warmup_iters < 0:
        raise InputError(f"deeplab.train.warmup_iters (--warmup-iters) must be >= 0, got {args.warmup_iters}")
    if args.labels_dir is not None and not Path(args.labels_dir).is_dir():
        raise InputError(f"{args.labels_dir}: labels directory not found")


def label_source(args: argparse.Namespace) -> str:
    """What the masks are, recorded in the checkpoint: 'gt' or the labels folder."""
    return "gt" if args.gt_labels else str(Path(args.labels_dir))


def run_meta(args: argparse.Namespace, manifest: Manifest) -> dict:
    """Everything that defines the run (plain values): fit ignores a resume state written with other values."""
    return {
        "kind": "deeplab",
        "arch": args.backbone,
        "num_classes": manifest.num_classes,
        "classes": list(manifest.classes),
        "weights_backbone": str(args.weights),
        "split": args.split,
        "labels": label_source(args),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr_mult": args.head_lr_mult,
        "warmup_iters": args.warmup_iters,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "crop": args.crop,
        "scale_range": [float(s) for s in args.scale_range],
    }


def make_loader(args: argparse.Namespace, manifest: Manifest, dist: distributed.DistInfo):
    mask_dir = None if args.gt_labels else Path(args.labels_dir)
    if mask_dir is not None:
        require_files(mask_dir, manifest.ids(args.split), ".png", "pseudo label")
    transform = segmentation_train_transform(args.crop, tuple(args.scale_range))
    # The reference trains on the images that have a GT mask (all of them, unless a folder dataset has a subset).
    ids = manifest.require_gt_ids(args.split) if mask_dir is None else None
    dataset = SegmentationDataset(manifest, args.split, transform=transform, mask_dir=mask_dir, ids=ids)
    return train_loader(dataset, args.batch_size, dist, args.seed, args.workers)


def step(model, batch):
    images, masks = batch
    return segmentation_loss(model(images), masks)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    check_args(args)
    return distributed.launch(train, args)


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> dict:
    manifest = Manifest.load(args.manifest)
    loader = make_loader(args, manifest, dist)
    log.info("train_deeplab: %s on %d '%s' images with %s labels, %d steps/epoch",
             args.backbone, len(loader.dataset), args.split, label_source(args), len(loader))

    total_steps = args.epochs * len(loader)
    warmup = min(args.warmup_iters, total_steps // 2)  # a run shorter than its warm-up still reaches the full lr
    if warmup < args.warmup_iters:
        log.warning("train_deeplab: warm-up capped at %d of %d steps (deeplab.train.warmup_iters = %d)",
                    warmup, total_steps, args.warmup_iters)
    model = build_deeplab(args.backbone, manifest.num_classes, args.weights)
    backbone, head = model.parameter_groups()
    optimizer = make_sgd(backbone, head, args.lr, args.head_lr_mult, args.momentum, args.weight_decay)
    scheduler = make_poly_scheduler(optimizer, total_steps, warmup_steps=warmup)

    out = Path(args.out)
    # fit resumes only a state written with the same meta/epochs/seed/steps; any other is logged and ignored.
    return fit(
        model, loader, optimizer, scheduler, args.epochs, step,
        dist=dist, ckpt_path=out, state_path=resume_state_path(out), resume=args.resume, amp=args.amp,
        log_csv=args.log_csv, meta=run_meta(args, manifest), seed=args.seed, desc="deeplab",
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
