"""Stage 3c: train the class-agnostic saliency network on the CRF background cues (docs/method.md §4), no labels.

The cues of extract_cues (``<id>.png``, 255 = foreground) are the pseudo ground truth: binary cross-entropy per
pixel, pixels padded by the crop (255) ignored. No GT mask and no image-level label is read. SGD with a 10x head
lr and poly decay; joint image/cue scale jitter, 255-padded crop and flip. The loop (resume, CSV log, AMP +
channels_last on CUDA) is :func:`c2am.training.fit`.

Multi-GPU: ``torchrun --standalone --nproc_per_node=K -m c2am.stages.train_saliency ...`` (docs/method.md §7);
``--batch-size`` stays the global batch, split equally over the processes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from c2am import defaults, distributed
from c2am.artifacts import require_files
from c2am.data.datasets import CueDataset, segmentation_train_transform
from c2am.data.voc import Manifest
from c2am.io import InputError
from c2am.models.backbone import TRUNK_NAMES
from c2am.models.saliency import DECODERS, build_saliency, saliency_loss
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

log = logging.getLogger("c2am.train_saliency")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.train_saliency", __doc__)
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role to train on")
    p.add_argument("--cues-dir", required=True, help="folder of cue PNGs from extract_cues (<id>.png, 255 = foreground)")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--log-csv", required=True, help="per-step CSV log (epoch,step,loss,lr)")
    p.add_argument("--backbone", choices=TRUNK_NAMES)
    p.add_argument("--weights", help="pretrained / imagenet / none / a local checkpoint")
    p.add_argument("--decoder", choices=DECODERS,
                   help="head: one layer on the stride-16 features; pyramid: top-down over the levels to stride 4")
    add_training_args(p)
    p.add_argument("--crop", type=int, help="square training crop (padded with 255 = ignored in the cue)")
    p.add_argument("--scale-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="random resize of the image's shorter side, as a fraction of the crop")
    defaults.apply(p, "saliency", exclude=("train", "infer"))
    defaults.apply(p, "saliency.train")
    defaults.apply(p, "seed")
    return p


def check_args(args: argparse.Namespace) -> None:
    check_crop_training_args(args)
    if not Path(args.cues_dir).is_dir():
        raise InputError(f"{args.cues_dir}: cue folder not found")


def run_meta(args: argparse.Namespace) -> dict:
    """Everything that defines the run (plain values): fit ignores a resume state written with other values."""
    return {
        "kind": "saliency",
        "backbone": args.backbone,
        "weights": str(args.weights),
        "decoder": args.decoder,
        "split": args.split,
        "cues": str(Path(args.cues_dir)),
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
    require_files(args.cues_dir, manifest.ids(args.split), ".png", "cue")
    transform = segmentation_train_transform(args.crop, tuple(args.scale_range))
    dataset = CueDataset(manifest, args.split, args.cues_dir, transform=transform)
    dataset.check_sizes()
    return train_loader(dataset, args.batch_size, dist, args.seed, args.workers)


def step(model, batch):
    images, cues = batch
    return saliency_loss(model(images), cues)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    check_args(args)
    return distributed.launch(train, args)


def train(args: argparse.Namespace, dist: distributed.DistInfo) -> dict:
    manifest = Manifest.load(args.manifest)
    loader = make_loader(args, manifest, dist)
    log.info("train_saliency: %s on %d '%s' images with the cues of %s, %d steps/epoch",
             args.backbone, len(loader.dataset), args.split, args.cues_dir, len(loader))

    model = build_saliency(args.backbone, args.weights, args.decoder)
    backbone, head = model.parameter_groups()
    optimizer = make_sgd(backbone, head, args.lr, args.head_lr_mult, args.momentum, args.weight_decay)
    scheduler = make_poly_scheduler(optimizer, args.epochs * len(loader))

    out = Path(args.out)
    # fit resumes only a state written with the same meta/epochs/seed/steps; any other is logged and ignored.
    return fit(
        model, loader, optimizer, scheduler, args.epochs, step,
        dist=dist, ckpt_path=out, state_path=resume_state_path(out), resume=args.resume, amp=args.amp,
        log_csv=args.log_csv, meta=run_meta(args), seed=args.seed, desc="saliency",
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
