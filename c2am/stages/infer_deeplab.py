"""Stage 10: predict segmentation masks with the trained DeepLab; one palette PNG (argmax) per image.

Single scale by default. ``--scales`` and ``--flip`` average softmax probabilities over scales (and horizontal
flips); ``--crf`` then runs a dense CRF whose unary is the averaged softmax.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from c2am.crf import add_crf_args, crf_args
from c2am.data.voc import Manifest
from c2am.inference import iterate_images, multiscale_flip, scaled_size
from c2am.io import (
    InputError,
    load_checkpoint,
    load_state_strict,
    pick_device,
    run_stage,
    save_label_png,
    set_threads,
)
from c2am.models.deeplab import build_deeplab
from c2am.parallel import map_items
from c2am.shards import add_shard_arg, select_shard
from c2am.training import autocast

log = logging.getLogger("c2am.infer_deeplab")

# Images whose probabilities wait for the CRF at once: bounds memory on real VOC (21 x 500 x 375 float16 each).
CRF_CHUNK = 128


# ----------------------------------------------------------------------------- CRF on probabilities


def crf_from_probs(
    image: np.ndarray,
    probs: np.ndarray,
    gt_prob: float = 1.0,
    gauss_sxy: float = 3,
    gauss_compat: float = 3,
    bilat_sxy: float = 50,
    bilat_srgb: float = 5,
    bilat_compat: float = 10,
    iters: int = 10,
) -> np.ndarray:
    """Dense-CRF labels (HxW int64) from C x H x W class probabilities over the HxWx3 uint8 ``image``.

    The unary is pydensecrf's ``unary_from_softmax`` with ``scale=gt_prob``: the probabilities are mixed with
    the uniform distribution, ``gt_prob * p + (1 - gt_prob) / C`` (1.0 = trust the network fully), and clipped at
    1e-5 before the log. Pairwise terms and their keyword names are those of :mod:`c2am.crf`.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    image = np.asarray(image)
    probs = np.asarray(probs, dtype=np.float32)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2] or probs.shape[0] < 2:
        raise ValueError(f"probs must be C x H x W (C >= 2) matching image {image.shape[:2]}, got {probs.shape}")
    if not 0 < gt_prob <= 1:
        raise ValueError(f"gt_prob must be in (0, 1], got {gt_prob}")
    n, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, scale=gt_prob)))
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(sxy=bilat_sxy, srgb=bilat_srgb, rgbim=np.ascontiguousarray(image), compat=bilat_compat)
    q = np.asarray(crf.inference(int(iters)), dtype=np.float32).reshape(n, h, w)
    return q.argmax(axis=0).astype(np.int64)


# ----------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module, image: torch.Tensor, scales: Sequence[float], flip: bool, amp: bool = False
) -> torch.Tensor:
    """Mean softmax over ``scales`` (and their flips with ``flip``) at the image size: C x H x W float32.

    ``image``: 1x3xHxW in [0, 1] on the model's device.
    """
    size = tuple(image.shape[-2:])

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return torch.softmax(model(x).float(), dim=1)

    if flip:
        return multiscale_flip(forward, image, scales, out_size=size) / (2 * len(scales))
    total = None
    for s in scales:
        resized = scaled_size(size, s)
        x = image if resized == size else F.interpolate(image, size=resized, mode="bilinear", align_corners=False)
        p = forward(x)
        if tuple(p.shape[-2:]) != size:
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        total = p[0] if total is None else total.add_(p[0])
    return total / len(scales)


def load_model(checkpoint: Path, device: torch.device) -> torch.nn.Module:
    """Rebuild the network recorded in a train_deeplab checkpoint (no backbone weights needed) and load it."""
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["meta"]
    if "model" not in meta or "num_classes" not in meta:
        raise InputError(f"{checkpoint}: not a train_deeplab checkpoint (meta lacks 'model'/'num_classes')")
    model = build_deeplab(meta["model"], int(meta["num_classes"]), "none")
    load_state_strict(model, ckpt["state_dict"], checkpoint)
    return model.to(device).eval()


def _crf_job(job: tuple) -> tuple[str, np.ndarray]:
    """Top-level (picklable) CRF task for :func:`c2am.parallel.map_items`."""
    image_id, image, probs, params = job
    return image_id, crf_from_probs(image, probs.astype(np.float32), **params).astype(np.uint8)


def run_crf_jobs(jobs: list[tuple], out_dir: Path, threads: int | None) -> None:
    """CRF the pending images on ``threads`` processes, write their PNGs, and empty ``jobs``."""
    if jobs:
        for image_id, labels in map_items(_crf_job, jobs, threads=threads or 1, desc="deeplab crf"):
            save_label_png(out_dir / f"{image_id}.png", labels)
        jobs.clear()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.infer_deeplab", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", default="val", help="split role to predict")
    p.add_argument("--checkpoint", required=True, help="train_deeplab checkpoint")
    p.add_argument("--out-dir", required=True, help="folder for <id>.png palette predictions")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0])
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False, help="add horizontal flips")
    p.add_argument("--crf", action=argparse.BooleanOptionalAction, default=False, help="dense CRF on the softmax")
    add_crf_args(p, gt_prob=1.0)  # here gt_prob scales the softmax unary: 1.0 trusts it fully
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="fp16 autocast (CUDA only)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads, and CRF worker processes")
    p.add_argument("--seed", type=int, default=0, help="accepted for uniformity; inference is deterministic")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    if any(s <= 0 for s in args.scales):
        raise InputError(f"scales: must be positive, got {args.scales}")
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    model = load_model(Path(args.checkpoint), device)
    if model.num_classes != manifest.num_classes:
        raise InputError(
            f"{args.checkpoint}: trained for {model.num_classes} classes, the manifest has {manifest.num_classes}"
        )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    crf_params = crf_args(args)

    crf_jobs: list[tuple] = []
    images = iterate_images(manifest, ids, device, num_workers=args.workers)
    for image_id, pixels, tensor in tqdm(images, total=len(ids), desc="deeplab predict", mininterval=1.0):
        probs = predict_probs(model, tensor, args.scales, args.flip, args.amp)
        if not args.crf:
            save_label_png(out_dir / f"{image_id}.png", probs.argmax(dim=0).to(torch.uint8).cpu().numpy())
            continue
        # float16 halves what travels to the CRF workers; the CRF takes logs of clipped values anyway.
        crf_jobs.append((image_id, pixels, probs.cpu().numpy().astype(np.float16), crf_params))
        if len(crf_jobs) >= CRF_CHUNK:
            run_crf_jobs(crf_jobs, out_dir, args.threads)
    run_crf_jobs(crf_jobs, out_dir, args.threads)
    log.info("infer_deeplab: wrote %d predictions to %s (scales %s, flip %s, crf %s)",
             len(ids), out_dir, args.scales, args.flip, args.crf)
    return len(ids)


if __name__ == "__main__":
    sys.exit(run_stage(main))
