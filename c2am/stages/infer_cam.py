"""Stage 5: class activation maps of the trained classifier, for each image's own (image-level) classes.

CAM_c = ReLU(conv_c(f4)), summed over scales and horizontal flips (c2am.inference.multiscale_flip), upsampled
to the image size, each class divided by its maximum. One ``<id>.npz`` per image: ``classes`` (int64, the GT
image-level class indices 1..C-1 from the manifest) and ``cams`` (float16, K x H x W in [0, 1]).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from c2am.data.voc import Manifest
from c2am.inference import iterate_images, multiscale_flip, normalize_by_max
from c2am.io import InputError, load_checkpoint, load_state_strict, pick_device, run_stage, save_npz, set_threads
from c2am.models.classifier import Classifier, build_classifier
from c2am.training import autocast
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.infer_cam")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.infer_cam", description=__doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint", type=Path, required=True, help="classifier checkpoint (train_classifier)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="fp16 autocast (CUDA only)")
    return p.parse_args(argv)


def load_classifier(path: Path, manifest: Manifest) -> Classifier:
    """Classifier with the checkpoint's weights; its class list must be the manifest's."""
    ckpt = load_checkpoint(path)
    meta = ckpt["meta"]
    if meta.get("kind") != "classifier":
        raise InputError(f"{path}: not a classifier checkpoint (kind={meta.get('kind')!r})")
    if list(meta.get("classes", [])) != list(manifest.classes):
        raise InputError(f"{path}: trained on classes {meta.get('classes')}, the dataset has {manifest.classes}")
    model = build_classifier(meta["backbone"], "none", int(meta["num_foreground"]))
    load_state_strict(model, ckpt["state_dict"], path)
    return model.eval()


@torch.no_grad()
def image_cams(model: Classifier, image: torch.Tensor, classes, scales, amp: bool) -> torch.Tensor:
    """K x H x W float32 CAMs in [0, 1] of ``classes`` (indices 1..C-1) for a 1x3xHxW image in [0, 1]."""
    h, w = image.shape[-2:]
    if len(classes) == 0:
        return torch.zeros(0, h, w)
    channels = torch.as_tensor([c - 1 for c in classes], device=image.device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(image.device, amp):
            return model.cams(x).index_select(1, channels)

    return normalize_by_max(multiscale_flip(forward, image, scales, (h, w)))


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    manifest = Manifest.load(args.manifest)
    model = load_classifier(args.checkpoint, manifest).to(device)
    labels = manifest.image_labels(args.split)
    ids = select_shard(manifest.ids(args.split), args.shard)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for image_id, _, image in tqdm(iterate_images(manifest, ids, device, args.workers), total=len(ids), desc="CAMs"):
        classes = labels[image_id]
        cams = image_cams(model, image, classes, args.scales, args.amp)
        save_npz(
            args.out_dir / f"{image_id}.npz",
            classes=np.asarray(classes, dtype=np.int64),
            cams=cams.cpu().numpy().astype(np.float16),
        )
    log.info("wrote %d CAM files to %s", len(ids), args.out_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
