"""Shared multi-scale + flip inference, the per-image loader, and each network's map of one image.

``foreground_map`` (C2AM), ``image_cams`` (classifier) and ``predict_probs`` (DeepLab) turn one 1 x 3 x H x W
image in [0, 1] into that network's output at the image's size (docs/method.md §4-§6).
"""

from __future__ import annotations

import argparse
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from c2am.io import InputError, pin_memory
from c2am.training import autocast


def add_inference_args(parser) -> None:
    """The flags every network-inference stage shares: scales, AMP, decoding workers, shard, threads, device."""
    from c2am.shards import add_shard_arg

    parser.add_argument("--scales", type=float, nargs="+", help="image scales, each with its flip where used")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="fp16 autocast on CUDA")
    parser.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    add_shard_arg(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (and CRF processes where used)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def check_scales(scales) -> None:
    if not scales or any(s <= 0 for s in scales):
        raise InputError(f"--scales: must all be positive, got {scales}")


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(h, w) * scale, rounded, at least 1 pixel."""
    return tuple(max(1, int(round(s * scale))) for s in size)


def _group_scales(size: tuple[int, int], scales: Sequence[float]) -> dict[tuple[int, int], int]:
    """Resized size -> how many scales give it (rounding can map two scales to one size)."""
    groups: dict[tuple[int, int], int] = {}
    for s in scales:
        if s <= 0:
            raise ValueError(f"scales must be positive, got {s}")
        key = scaled_size(size, s)
        groups[key] = groups.get(key, 0) + 1
    return groups


@torch.no_grad()
def multiscale_flip(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scales: Sequence[float],
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Sum over scales of forward(image) + flip(forward(flip(image))), upsampled to ``out_size``; K x H x W.

    ``image``: 1x3xHxW float. Per distinct resized size, the image (bilinear, align_corners=False) and its
    horizontal flip go through ``forward`` as one batch of 2; ``forward`` returns 2 x K x h x w maps (any h, w,
    any float dtype). The flipped map is flipped back and added, the pair is upsampled bilinearly to
    ``out_size`` (default H x W) and accumulated in float32. Only one scale's maps are alive at a time.
    The result is not normalised: divide by the max (``normalize_by_max``) or by ``2 * len(scales)``.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"multiscale_flip expects a 1x3xHxW image, got shape {tuple(image.shape)}")
    if not scales:
        raise ValueError("multiscale_flip needs at least one scale")
    size = tuple(image.shape[-2:])
    out_size = tuple(out_size) if out_size is not None else size
    total = None
    for resized, count in _group_scales(size, scales).items():
        x = image if resized == size else F.interpolate(image, size=resized, mode="bilinear", align_corners=False)
        maps = forward(torch.cat([x, x.flip(-1)], dim=0))
        if maps.ndim != 4 or maps.shape[0] != 2:
            raise ValueError(f"forward must return 2 x K x h x w maps, got shape {tuple(maps.shape)}")
        pair = (maps[0:1] + maps[1:2].flip(-1)).float()
        if tuple(pair.shape[-2:]) != out_size:
            pair = F.interpolate(pair, size=out_size, mode="bilinear", align_corners=False)
        pair = pair[0] * count if count > 1 else pair[0]
        total = pair if total is None else total.add_(pair)
    return total


def normalize_by_max(maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per channel of a K x H x W map: clamp negatives to 0, divide by the channel max.

    Values land in [0, 1]; a channel's max becomes exactly 1 and an all-zero channel stays zero (the divisor
    is clamped at ``eps``, so a channel whose max is below ``eps`` is scaled by 1/eps rather than blown up).
    """
    if maps.ndim != 3:
        raise ValueError(f"normalize_by_max expects K x H x W maps, got shape {tuple(maps.shape)}")
    maps = maps.clamp(min=0)
    peak = maps.flatten(1).amax(dim=1).clamp(min=eps)
    return (maps / peak[:, None, None]).clamp(max=1.0)


# ----------------------------------------------------------------------------- image loading


class InferenceDataset(Dataset):
    """(id, uint8 HxWx3 tensor at full resolution, error message or ""): a bad image is reported, not raised, in the worker,
    so the main process raises one clean InputError instead of a wrapped worker traceback."""

    def __init__(self, manifest, ids: Sequence[str]):
        self.manifest = manifest
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        try:
            image = self.manifest.load_image(image_id)
        except InputError as e:
            return image_id, torch.zeros(0, dtype=torch.uint8), str(e)
        return image_id, torch.from_numpy(np.ascontiguousarray(image)), ""


def _no_collate(item):
    return item


def iterate_images(
    manifest, ids: Sequence[str], device, num_workers: int = 0
) -> Iterator[tuple[str, np.ndarray, torch.Tensor]]:
    """Yield ``(id, uint8 HxWx3 numpy image, 1x3xHxW float tensor in [0,1] on device)`` in ``ids`` order.

    Decoding runs in ``num_workers`` DataLoader workers, overlapping the caller's compute; the uint8 image
    travels to the device and is converted there (4x less to copy than float).
    """
    device = torch.device(device)
    loader = DataLoader(
        InferenceDataset(manifest, ids),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_no_collate,
        pin_memory=pin_memory(device),
    )
    for image_id, pixels, error in loader:
        if error:
            raise InputError(error)
        tensor = pixels.to(device, non_blocking=True).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        yield image_id, pixels.numpy(), tensor


# ----------------------------------------------------------------------------- each network's maps


def foreground_map(model, inverted: bool, image: torch.Tensor, scales, amp: bool) -> np.ndarray:
    """C2AM: H x W float32 foreground map in [0, 1] (P, or 1 - P when ``inverted``), max-normalised."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return model.foreground_map(x, inverted).float()

    return normalize_by_max(multiscale_flip(forward, image, scales))[0].cpu().numpy()


@torch.no_grad()
def image_cams(model, image: torch.Tensor, classes, scales, amp: bool) -> torch.Tensor:
    """Classifier: K x H x W float32 CAMs in [0, 1] of ``classes`` (indices 1..C-1), each max-normalised."""
    h, w = image.shape[-2:]
    if len(classes) == 0:
        return torch.zeros(0, h, w)
    channels = torch.as_tensor([c - 1 for c in classes], device=image.device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return model.cams(x).index_select(1, channels)

    return normalize_by_max(multiscale_flip(forward, image, scales, (h, w)))


@torch.no_grad()
def predict_probs(model, image: torch.Tensor, scales: Sequence[float], flip: bool, amp: bool = False) -> torch.Tensor:
    """DeepLab: mean softmax over ``scales`` (and their flips with ``flip``) at the image size, C x H x W float32."""
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
