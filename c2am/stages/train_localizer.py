"""WSOL: train the class-agnostic box regressor on C2AM's pseudo boxes of the train split (PSOL-style).

The only supervision is the pseudo boxes (map_boxes on the train split): no class label and no GT box is
read. Each step sees random crops that contain the whole pseudo box, resized to ``--size`` and flipped; the
loss is smooth-L1 on the box edges plus 1 - GIoU (c2am.models.localizer, docs/method.md §10). SGD with poly
decay and the head at ``lr * head_lr_mult``, resumable per epoch (c2am.training.fit). Images whose map gave
no box are left out, and counted in the log.

Multi-GPU: ``torchrun --standalone --nproc_per_node=K -m c2am.stages.train_localizer ...`` (DDP, as the other
training stages; ``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults, distributed
from c2am.artifacts import load_boxes
from c2am.data.datasets import BoxDataset
from c2am.data.voc import Manifest
from c2am.io import InputError
from c2am.models.backbone import TRUNK_NAMES
from c2am.models.localizer import HEADS, box_loss, build_localizer
from c2am.runtime import run_stage
from c2am.training import add_training_args, fit, make_poly_scheduler, make_sgd, resume_state_path, train_loader

log = logging.getLogger("c2am.train_localizer")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.train_localizer", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train", help="split role to train on")
    p.add_argument("--boxes", type=Path, required=True, help="pseudo boxes of that split (map_boxes)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--log-csv", type=Path, required=True, help="per-step training log")
    p.add_argument("--backbone", choices=TRUNK_NAMES)
    p.add_argument("--weights", help="pretrained / imagenet / none / a local checkpoint")
    p.add_argument("--head", choices=HEADS,
                   help="edges: soft-argmax edge maps (stride 16); edges8: the same at stride 8; pooled: PSOL MLP")
    add_training_args(p)
    p.add_argument("--size", type=int, help="input side: crops (and test images) are resized to size x size")
    p.add_argument("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="side ratio range of the box-preserving random crop")
    p.add_argument("--l1-weight", type=float, help="weight of the smooth-L1 loss on the box edges")
    p.add_argument("--giou-weight", type=float, help="weight of the 1 - GIoU loss")
    defaults.apply(p, "wsol.localizer", exclude=("train", "infer"))
    defaults.apply(p, "wsol.localizer.train")
    defaults.apply(p, "seed")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key in ("epochs", "batch_size", "size"):
        if getattr(args, key) < 1:
            raise InputError(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    lo, hi = args.crop_scale
    if not 0 < lo <= hi <= 1:
        raise InputError(f"--crop-scale: need 0 < MIN <= MAX <= 1, got {lo} {hi}")
    if args.l1_weight < 0 or args.giou_weight < 0 or args.l1_weight + args.giou_weight == 0:
        raise InputError("--l1-weight / --giou-weight: non-negative, not both zero")
    return args


def localization_step(model, batch, l1_weight: float, giou_weight: float):
    images, targets = batch
    return box_loss(model(images), targets, l1_weight, giou_weight)


def main(argv=None) -> None:
    args = parse_args(argv)
    return distributed.launch(train, args)


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> dict:
    manifest = Manifest.load(args.manifest)
    boxes = load_boxes(args.boxes)
    ids = manifest.ids(args.split)
    missing = [i for i in ids if i not in boxes]
    if missing:
        raise InputError(f"{args.boxes}: no entry for {len(missing)} of the {len(ids)} '{args.split}' images "
                         f"(e.g. {missing[0]})")
    kept = [i for i in ids if boxes[i] is not None]
    if len(kept) < len(ids):
        log.warning("%d of %d training images have no pseudo box (constant map) and are left out",
                    len(ids) - len(kept), len(ids))
    dataset = BoxDataset(manifest, kept, boxes, args.size, tuple(args.crop_scale), train=True)
    loader = train_loader(dataset, args.batch_size, dist, args.seed, args.workers)
    model = build_localizer(args.backbone, args.weights, args.head)
    optimizer = make_sgd(model.backbone_parameters(), model.head_parameters(), args.lr, args.head_lr_mult,
                         args.momentum, args.weight_decay)
    scheduler = make_poly_scheduler(optimizer, args.epochs * len(loader))
    meta = {"kind": "localizer", "backbone": args.backbone, "weights": str(args.weights), "head": args.head,
            "split": args.split, "images": len(kept), "size": args.size, "crop_scale": list(args.crop_scale),
            "batch_size": args.batch_size, "lr": args.lr, "head_lr_mult": args.head_lr_mult,
            "momentum": args.momentum, "weight_decay": args.weight_decay, "l1_weight": args.l1_weight,
            "giou_weight": args.giou_weight, "amp": bool(args.amp)}
    log.info("localizer: %d images, %d steps/epoch, %d epochs, %s on %s", len(dataset), len(loader), args.epochs,
             args.backbone, dist.device)
    return fit(model, loader, optimizer, scheduler, args.epochs,
               partial(localization_step, l1_weight=args.l1_weight, giou_weight=args.giou_weight),
               dist=dist, ckpt_path=args.out, state_path=resume_state_path(args.out), resume=args.resume,
               amp=args.amp, log_csv=args.log_csv, meta=meta, seed=args.seed, desc="localizer")


if __name__ == "__main__":
    sys.exit(run_stage(main))
