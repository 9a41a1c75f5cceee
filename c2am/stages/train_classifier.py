"""Stage 4: train the multi-label classifier whose CAMs give the pseudo labels' classes.

Image-level labels (from the manifest) are the only supervision. Multi-label soft-margin loss, SGD with poly
decay and the head at ``lr * head_lr_mult``; resumable per epoch (c2am.training.fit). After training, the val
split is scored (single scale, whole image): mAP and macro F1 at sigmoid >= 0.5 go to ``--out-txt``.

Multi-GPU: ``torchrun --standalone --nproc_per_node=K -m c2am.stages.train_classifier ...`` trains with
DistributedDataParallel (docs/method.md §7); ``--batch-size`` stays the global batch, split equally over the
processes, and rank 0 alone scores val and writes the report.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from torch import nn

from c2am import defaults, distributed
from c2am.data.datasets import ClassificationDataset, image_train_transform
from c2am.data.voc import Manifest
from c2am.io import save_text
from c2am.metrics import classification_report
from c2am.inference import predict_scores
from c2am.models.classifier import build_classifier
from c2am.runtime import run_stage
from c2am.training import add_training_args, fit, make_poly_scheduler, make_sgd, resume_state_path, train_loader

log = logging.getLogger("c2am.train_classifier")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.train_classifier", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train", help="split role to train on")
    p.add_argument("--val-split", default="val", help="split role scored after training")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--log-csv", type=Path, required=True, help="per-step training log")
    p.add_argument("--out-txt", type=Path, required=True, help="val mAP / F1 text report")
    p.add_argument("--backbone")
    p.add_argument("--weights")
    add_training_args(p)
    p.add_argument("--crop", type=int)
    p.add_argument("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="random resized crop area range (fraction of the image)")
    defaults.apply(p, "classifier", exclude=("train", "infer"))
    defaults.apply(p, "classifier.train")
    defaults.apply(p, "seed")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def classification_step(model: nn.Module, batch):
    images, targets = batch
    return nn.functional.multilabel_soft_margin_loss(model(images), targets)


def main(argv=None) -> None:
    args = parse_args(argv)
    return distributed.launch(train, args)


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> None:
    manifest = Manifest.load(args.manifest)
    fg_names = manifest.classes[1:]

    model = build_classifier(args.backbone, args.weights, len(fg_names))
    dataset = ClassificationDataset(
        manifest, args.split, image_train_transform(args.crop, scale=tuple(args.crop_scale))
    )
    drop_last = len(dataset) >= args.batch_size  # a batch of 1 would break BatchNorm
    loader = train_loader(dataset, args.batch_size, dist, args.seed, args.workers, drop_last=drop_last)
    optimizer = make_sgd(
        model.backbone_parameters(), model.head_parameters(), args.lr, args.head_lr_mult,
        args.momentum, args.weight_decay,
    )
    scheduler = make_poly_scheduler(optimizer, args.epochs * len(loader))
    meta = {
        "kind": "classifier",
        "backbone": args.backbone,
        "weights": str(args.weights),
        "classes": list(manifest.classes),
        "num_foreground": len(fg_names),
        "split": args.split,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr_mult": args.head_lr_mult,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "crop": args.crop,
        "crop_scale": list(args.crop_scale),
        "amp": bool(args.amp),
    }
    state_path = resume_state_path(args.out)
    if not args.resume and dist.is_main and state_path.is_file():
        state_path.unlink()  # --no-resume: an old state must not be picked up by a later resumed run
    distributed.barrier()
    # fit resumes only a state written with the same settings; any other is logged and ignored.
    fit(
        model, loader, optimizer, scheduler, args.epochs, classification_step,
        dist=dist, ckpt_path=args.out, state_path=state_path, resume=args.resume, amp=args.amp,
        log_csv=args.log_csv, meta=meta, seed=args.seed, desc="classifier",
    )
    if not dist.is_main:
        return

    scores, targets = predict_scores(model, manifest, args.val_split, dist.device, args.batch_size, args.amp)
    report = classification_report(scores, targets, fg_names)
    save_text(args.out_txt, report)
    log.info("%s (%d images): %s", args.val_split, len(scores), " ".join(report.splitlines()[:2]))


if __name__ == "__main__":
    sys.exit(run_stage(main))
