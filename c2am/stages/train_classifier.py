"""Stage 4: train the multi-label classifier whose CAMs give the pseudo labels' classes.

Image-level labels (from the manifest) are the only supervision. Multi-label soft-margin loss, SGD with poly
decay and the head at ``lr * head_lr_mult``; resumable per epoch (c2am.training.fit). After training, the val
split is scored (single scale, whole image): mAP and macro F1 at sigmoid >= 0.5 go to ``--report``.

Multi-GPU: ``torchrun --standalone --nproc_per_node=K -m c2am.stages.train_classifier ...`` trains with
DistributedDataParallel (see c2am.distributed and the train_c2am docstring); ``--batch-size`` stays the
global batch, split equally over the processes, and rank 0 alone scores val and writes the report.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from c2am import distributed
from c2am.data.datasets import ClassificationDataset, image_train_transform
from c2am.data.voc import Manifest, image_size
from c2am.io import run_stage, save_text, seed_everything, set_threads
from c2am.metrics import average_precision, f1_multilabel, mean_average_precision
from c2am.models.classifier import Classifier, build_classifier
from c2am.training import (
    autocast,
    epoch_generator,
    fit,
    make_poly_scheduler,
    make_sgd,
    resume_state_path,
)

log = logging.getLogger("c2am.train_classifier")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.train_classifier", description=__doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train", help="split role to train on")
    p.add_argument("--val-split", default="val", help="split role scored after training")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--log-csv", type=Path, required=True, help="per-step training log")
    p.add_argument("--report", type=Path, required=True, help="val mAP / F1 text report")
    p.add_argument("--backbone", default="lite0")
    p.add_argument("--weights", default="pretrained")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--head-lr-mult", type=float, default=10.0)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.8, 1.0], metavar=("MIN", "MAX"),
                   help="random resized crop area range (fraction of the image)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="fp16 autocast (CUDA only)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def classification_step(model: nn.Module, batch, device) -> torch.Tensor:
    images, targets = batch
    return nn.functional.multilabel_soft_margin_loss(model(images), targets)


@torch.no_grad()
def predict_scores(model: Classifier, manifest: Manifest, split: str, device, batch_size: int, amp: bool):
    """(sigmoid scores, multi-hot targets), N x K each, single scale on whole images."""
    model.to(device).eval()
    ds = ClassificationDataset(manifest, split)
    same_size = len({image_size(manifest.image_path(i)) for i in ds.ids}) == 1
    # Whole images of different sizes (real VOC) cannot be stacked: one at a time then.
    loader = DataLoader(ds, batch_size=batch_size if same_size else 1, shuffle=False)
    scores, targets = [], []
    for images, y in tqdm(loader, desc=f"score {split}", leave=False):
        with autocast(device, amp):
            logits = model(images.to(device))
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(y.numpy())
    return np.concatenate(scores), np.concatenate(targets)


def format_report(scores: np.ndarray, targets: np.ndarray, class_names: list[str]) -> str:
    """``mAP: x``, ``F1: x`` (macro F1 at sigmoid >= 0.5), then ``<class>: <AP>`` per class (nan: no positives)."""
    lines = [
        f"mAP: {mean_average_precision(scores, targets):.4f}",
        f"F1: {f1_multilabel(scores, targets, 0.5):.4f}",
    ]
    for k, name in enumerate(class_names):
        lines.append(f"{name}: {average_precision(scores[:, k], targets[:, k]):.4f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    dist = distributed.init_from_env(args.device)
    try:
        train(args, dist)
    finally:
        distributed.cleanup()


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> None:
    distributed.quiet_non_main(dist)
    set_threads(distributed.threads_per_process(args.threads))
    seed_everything(args.seed)
    device = dist.device
    manifest = Manifest.load(args.manifest)
    fg_names = manifest.classes[1:]

    model = build_classifier(args.backbone, args.weights, len(fg_names))
    dataset = ClassificationDataset(
        manifest, args.split, image_train_transform(args.crop, scale=tuple(args.crop_scale))
    )
    drop_last = len(dataset) >= args.batch_size  # a batch of 1 would break BatchNorm
    sampler = distributed.train_sampler(dataset, dist, args.seed, drop_last=drop_last)
    loader = DataLoader(
        dataset,
        batch_size=distributed.per_process_batch(args.batch_size, dist.world_size),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=args.workers,
        generator=epoch_generator(args.seed, 0),
        pin_memory=device.type == "cuda",
    )
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
        ckpt_path=args.out, state_path=state_path, resume=args.resume, device=device, amp=args.amp,
        log_csv=args.log_csv, meta=meta, seed=args.seed, desc="classifier", dist=dist,
    )
    if not dist.is_main:
        return

    scores, targets = predict_scores(model, manifest, args.val_split, device, args.batch_size, args.amp)
    report = format_report(scores, targets, fg_names)
    save_text(args.report, report)
    log.info("%s (%d images): %s", args.val_split, len(scores), " ".join(report.splitlines()[:2]))


if __name__ == "__main__":
    sys.exit(run_stage(main))
