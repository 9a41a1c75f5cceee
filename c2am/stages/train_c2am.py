"""Stage 1: train C2AM on unlabelled images (contrastive fg/bg pooling; DESIGN.md section 3).

No labels of any kind are read: the dataset below yields images only. After epoch 1 the border test
decides the polarity (P marks background when its mean over a border strip exceeds 0.5); the flag is
stored as ``inverted`` (plain bool) in the checkpoint meta and a ``--polarity`` override wins.
A per-epoch resume state beside the checkpoint lets a killed run continue after its last finished
epoch; a state written with other hyperparameters is ignored (logged) and training starts afresh.

Multi-GPU: the same command under torchrun runs DistributedDataParallel, one process per GPU::

    torchrun --standalone --nproc_per_node=K -m c2am.stages.train_c2am --manifest ... --out ...

(on several nodes: ``torchrun --nnodes=N --nproc_per_node=K --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT``,
e.g. from an ``srun`` inside the SLURM job). ``--batch-size`` stays the GLOBAL batch: each of the
world_size processes takes ``batch_size / world_size`` images (it must divide), and the pooled vectors
v_f, v_b are gathered over the processes with gradients, so the contrastive loss sees all N^2 pairs of
the global batch and the gradients equal one process's on that batch (BatchNorm synchronised).
``--threads`` is split over the processes of a node. ``--device cpu`` under torchrun uses gloo (tests).
Without torchrun (``python -m c2am.stages.train_c2am``) it is one process, exactly as before.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from c2am import distributed
from c2am.data.datasets import image_train_transform, to_image_tensor
from c2am.data.voc import Manifest
from c2am.distributed import DistInfo, gather_with_grad, per_process_batch
from c2am.io import InputError, run_stage, seed_everything, set_threads
from c2am.losses import c2am_loss
from c2am.models.backbone import TRUNK_NAMES, build_trunk
from c2am.models.c2am_net import C2AM, border_mean, decide_inverted
from c2am.training import epoch_generator, fit, make_poly_scheduler, make_sgd, resume_state_path, use_amp

log = logging.getLogger("c2am.train_c2am")

# Images used for the border test: enough for a stable mean, few enough to cost a second.
POLARITY_IMAGES = 64


class UnlabeledImages(Dataset):
    """Images of a split as float 3xHxW tensors in [0, 1]; deliberately no labels (C2AM is unsupervised)."""

    def __init__(self, manifest: Manifest, split: str, transform):
        self.manifest = manifest
        self.ids = manifest.ids(split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.transform(to_image_tensor(self.manifest.load_image(self.ids[index])))
        return image.as_subclass(torch.Tensor)


def polarity_transform(size: int) -> v2.Compose:
    """Deterministic view for the border test: the whole image resized, no crop (crops cut the borders off)."""
    return v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.train_c2am", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="train", help="split role whose images train C2AM")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--log-csv", required=True, help="per-step CSV log")
    p.add_argument("--backbone", default="lite0", choices=TRUNK_NAMES)
    p.add_argument("--weights", default="pretrained", help="pretrained / imagenet / none / a local checkpoint")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--head-lr-mult", type=float, default=10.0)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--alpha", type=float, default=0.25, help="rank-weight decay of the positive terms")
    p.add_argument("--resize", type=int, default=128, help="images are resized to resize x resize ...")
    p.add_argument("--crop", type=int, default=112, help="... then randomly cropped to crop x crop")
    p.add_argument("--polarity", default="auto", choices=("auto", "normal", "inverted"))
    p.add_argument("--border", type=float, default=0.1, help="border strip width (fraction of the side)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="AMP + channels_last on CUDA")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
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
    return {
        "model": "c2am",
        "backbone": args.backbone,
        "weights": str(args.weights),
        "split": args.split,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr_mult": args.head_lr_mult,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "alpha": args.alpha,
        "resize": args.resize,
        "crop": args.crop,
        "polarity": args.polarity,
        "border": args.border,
        "amp": bool(args.amp),
    }


@torch.no_grad()
def measure_polarity(model: C2AM, images: torch.Tensor, border: float, device, batch_size: int = 32) -> float:
    """Mean of P over the border strip of ``images`` (N x 3 x H x W in [0, 1]), P upsampled to image size."""
    was_training = model.training
    model.eval()
    values, weights = [], []
    try:
        for chunk in images.split(batch_size):
            chunk = chunk.to(device)
            p = model.activation(model.features(chunk)).float()
            p = torch.nn.functional.interpolate(p, size=chunk.shape[-2:], mode="bilinear", align_corners=False)
            values.append(border_mean(p, border))
            weights.append(len(chunk))
    finally:
        model.train(was_training)
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)


def polarity_callback(model_images: torch.Tensor, args: argparse.Namespace, device):
    """``on_epoch_end`` for fit: decide ``inverted`` after epoch 1; log the border mean every epoch."""

    def on_epoch_end(epoch: int, model: C2AM, meta: dict) -> dict:
        value = measure_polarity(model, model_images, args.border, device)
        means = list(meta.get("border_means", [])) + [round(value, 6)]
        update = {"border_means": means}
        if epoch == 1:
            update["inverted"] = decide_inverted(value, args.polarity)
            update["border_mean_epoch1"] = value
            log.info("polarity: border mean of P after epoch 1 = %.3f -> inverted=%s (polarity=%s)",
                     value, update["inverted"], args.polarity)
        elif args.polarity == "auto" and decide_inverted(value) != meta.get("inverted"):
            log.warning("polarity: border mean %.3f after epoch %d disagrees with the epoch-1 decision "
                        "(inverted=%s); keeping the epoch-1 decision", value, epoch, meta.get("inverted"))
        return update

    return on_epoch_end


def polarity_images(manifest: Manifest, split: str, size: int) -> torch.Tensor:
    """The first POLARITY_IMAGES training images, whole and resized (fixed, so the test is reproducible)."""
    data = UnlabeledImages(manifest, split, polarity_transform(size))
    n = min(POLARITY_IMAGES, len(data))
    return torch.stack([data[i] for i in range(n)])


def gather_pooled(v_f: torch.Tensor, v_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v_f, v_b of the global batch (all processes, rank order), gradients back to the local rows.

    One collective for both; the identity in a single process.
    """
    both = gather_with_grad(torch.cat([v_f.float(), v_b.float()], dim=1))
    return both.split(v_f.shape[1], dim=1)


def c2am_step(alpha: float):
    def step_fn(model: C2AM, batch: torch.Tensor, device) -> torch.Tensor:
        v_f, v_b, _ = model(batch)
        v_f, v_b = gather_pooled(v_f, v_b)
        loss, _ = c2am_loss(v_f, v_b, alpha)
        return loss

    return step_fn


def build_loader(manifest: Manifest, args: argparse.Namespace, device, dist: DistInfo | None = None) -> DataLoader:
    dist = dist or distributed.current(device)
    data = UnlabeledImages(manifest, args.split, image_train_transform(args.crop, resize=args.resize))
    if len(data) < args.batch_size:
        raise InputError(
            f"{manifest.source}: split '{args.split}' has {len(data)} images, fewer than --batch-size {args.batch_size}"
        )
    sampler = distributed.train_sampler(data, dist, args.seed)
    # drop_last: the contrastive loss compares pairs within a batch; a tiny last batch would be noisy
    # (and the gather over processes needs equal batches).
    return DataLoader(
        data,
        batch_size=per_process_batch(args.batch_size, dist.world_size),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=args.workers,
        generator=epoch_generator(args.seed, 0),
        pin_memory=torch.device(device).type == "cuda",
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    dist = distributed.init_from_env(args.device)
    try:
        return train(args, dist)
    finally:
        distributed.cleanup()


def train(args: argparse.Namespace, dist: DistInfo) -> dict:
    distributed.quiet_non_main(dist)
    set_threads(distributed.threads_per_process(args.threads))
    seed_everything(args.seed)
    device = dist.device
    manifest = Manifest.load(args.manifest)
    loader = build_loader(manifest, args, device, dist)

    model = C2AM(build_trunk(args.backbone, args.weights))
    optimizer = make_sgd(model.backbone_parameters(), model.head_parameters(), lr=args.lr,
                         head_lr_mult=args.head_lr_mult, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = make_poly_scheduler(optimizer, args.epochs * len(loader))

    out = Path(args.out)
    log.info("C2AM: %d images, %d steps/epoch, %d epochs, %s on %s (amp=%s, %d process(es))", len(loader.dataset),
             len(loader), args.epochs, args.backbone, device, use_amp(device, args.amp), dist.world_size)
    final = fit(
        model, loader, optimizer, scheduler, args.epochs, c2am_step(args.alpha),
        ckpt_path=out, state_path=resume_state_path(out), resume=args.resume, device=device, amp=args.amp,
        log_csv=args.log_csv, meta=run_meta(args), seed=args.seed,
        on_epoch_end=polarity_callback(polarity_images(manifest, args.split, args.resize), args, device),
        desc="c2am", dist=dist,
    )
    log.info("C2AM done: inverted=%s, final loss %.4f", final.get("inverted"), final["final_loss"])
    return final


if __name__ == "__main__":
    sys.exit(run_stage(main))
