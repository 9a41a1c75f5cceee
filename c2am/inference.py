"""Shared multi-scale + flip inference, the image loaders, and each network's maps.

``foreground_map(s)`` (C2AM), ``image_cams`` / ``batch_cams`` (classifier) and ``predict_probs(_batch)``
(DeepLab) turn images in [0, 1] into that network's output at the image's size (docs/method.md §4-§6). A batch
holds images of one size (:func:`size_batches`), so batching changes nothing but speed: on a GPU a batch of
many images fills the device; on a CPU one image at a time (batch size 1, the default) is as fast.
``predict_scores`` is the classifier's image-level scores over a split (single scale, whole images).
"""

from __future__ import annotations

import argparse
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from c2am.data.datasets import ClassificationDataset
from c2am.data.voc import image_size
from c2am.io import InputError
from c2am.runtime import autocast, pin_memory


def add_inference_args(parser, shard: bool = True, scales: bool = True, amp: bool = True) -> None:
    """The flags every network-inference stage shares: scales, batch size, AMP, decoding workers, shard, threads,
    device. ``shard`` False: a stage that reads no split; ``scales`` / ``amp`` False: one that runs at the image's
    own size / in float32 (the random walk)."""
    from c2am.shards import add_shard_arg

    if scales:
        parser.add_argument("--scales", type=float, nargs="+", help="image scales, each with its flip where used")
    parser.add_argument("--batch-size", type=int, help="images of one size per forward pass (> 1 pays on a GPU)")
    if amp:
        parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                            help="fp16 autocast on CUDA")
    parser.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    if shard:
        add_shard_arg(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (and CRF processes where used)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def add_scale_reference_arg(parser) -> None:
    """--scale-reference of the DeepLab inference stages (see :func:`reference_scales`)."""
    parser.add_argument("--scale-reference", choices=SCALE_REFERENCES,
                        help="train: scale 1 resizes the shorter side to the training side; native: the image's own")


def check_scales(scales) -> None:
    if not scales or any(s <= 0 for s in scales):
        raise InputError(f"--scales: must all be positive, got {scales}")


SCALE_REFERENCES = ("train", "native")


def reference_scales(scales: Sequence[float], size: tuple[int, int], reference_side: float | None) -> list[float]:
    """The scales to apply to an image of ``size`` (h, w). ``reference_side`` None: the scales as given, relative to
    the image's own size. Otherwise each scale is relative to an image whose shorter side is ``reference_side``
    (the side the network was trained at), so a network sees objects at the sizes it learned them whatever size
    the images come in."""
    if reference_side is None:
        return list(scales)
    factor = reference_side / min(size)
    return [s * factor for s in scales]


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
def multiscale_flip_batch(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    scales: Sequence[float],
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Per image of an N x 3 x H x W batch (one size): sum over scales of forward(x) + flip(forward(flip(x))),
    upsampled to ``out_size``; N x K x H x W float32.

    Per distinct resized size, the N images (bilinear, align_corners=False) and their horizontal flips go through
    ``forward`` as one batch of 2N; ``forward`` returns 2N x K x h x w maps (any h, w, any float dtype). The
    flipped maps are flipped back and added, upsampled bilinearly to ``out_size`` (default H x W) and accumulated
    in float32. Only one scale's maps are alive at a time. The result is not normalised: divide by the max
    (``normalize_by_max``) or by ``2 * len(scales)``.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"multiscale_flip expects an N x 3 x H x W batch, got shape {tuple(images.shape)}")
    if not scales:
        raise ValueError("multiscale_flip needs at least one scale")
    n = images.shape[0]
    size = tuple(images.shape[-2:])
    out_size = tuple(out_size) if out_size is not None else size
    total = None
    for resized, count in _group_scales(size, scales).items():
        x = images if resized == size else F.interpolate(images, size=resized, mode="bilinear", align_corners=False)
        maps = forward(torch.cat([x, x.flip(-1)], dim=0))
        if maps.ndim != 4 or maps.shape[0] != 2 * n:
            raise ValueError(f"forward must return {2 * n} x K x h x w maps, got shape {tuple(maps.shape)}")
        pair = (maps[:n] + maps[n:].flip(-1)).float()
        if tuple(pair.shape[-2:]) != out_size:
            pair = F.interpolate(pair, size=out_size, mode="bilinear", align_corners=False)
        pair = pair * count if count > 1 else pair
        total = pair if total is None else total.add_(pair)
    return total


def multiscale_flip(forward, image: torch.Tensor, scales: Sequence[float], out_size=None) -> torch.Tensor:
    """:func:`multiscale_flip_batch` of one 1 x 3 x H x W image: K x H x W."""
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"multiscale_flip expects a 1x3xHxW image, got shape {tuple(image.shape)}")
    return multiscale_flip_batch(forward, image, scales, out_size)[0]


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


def size_batches(manifest, ids: Sequence[str], batch_size: int) -> list[list[str]]:
    """``ids`` cut into batches of at most ``batch_size`` images of one size (exact sizes: no padding, so a batch
    computes what its images would alone). With batch_size 1 the order is kept; otherwise ids are grouped by
    size, in manifest order within a size."""
    if batch_size < 1:
        raise InputError(f"--batch-size: must be >= 1, got {batch_size}")
    if batch_size == 1:
        return [[i] for i in ids]
    from c2am.data.voc import image_size

    by_size: dict[tuple[int, int], list[str]] = {}
    for image_id in ids:
        by_size.setdefault(image_size(manifest.image_path(image_id)), []).append(image_id)
    return [group[k : k + batch_size] for group in by_size.values() for k in range(0, len(group), batch_size)]


def iterate_batches(manifest, batches: list[list[str]], device, num_workers: int = 0):
    """Yield ``(ids, uint8 images, N x 3 x H x W float tensor on device)`` per batch of :func:`size_batches`.

    Decoding runs in DataLoader workers (see :func:`iterate_images`); host-to-device copies are asynchronous
    from pinned memory on CUDA, so they overlap the previous batch's compute.
    """
    flat = [i for batch in batches for i in batch]
    images = iterate_images(manifest, flat, device, num_workers)
    for batch in batches:
        items = [next(images) for _ in batch]
        yield [i for i, _, _ in items], [p for _, p, _ in items], torch.cat([t for _, _, t in items], dim=0)


# ----------------------------------------------------------------------------- each network's maps


def foreground_maps(model, inverted: bool, images: torch.Tensor, scales, amp: bool) -> list[np.ndarray]:
    """C2AM: per image of a batch, the H x W float32 foreground map in [0, 1] (P, or 1 - P when ``inverted``),
    max-normalised."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return model.foreground_map(x, inverted).float()

    summed = multiscale_flip_batch(forward, images, scales)
    return [normalize_by_max(one)[0].cpu().numpy() for one in summed]


def foreground_map(model, inverted: bool, image: torch.Tensor, scales, amp: bool) -> np.ndarray:
    """:func:`foreground_maps` of one 1 x 3 x H x W image."""
    return foreground_maps(model, inverted, image, scales, amp)[0]


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
def batch_cams(model, images: torch.Tensor, classes: list, scales, amp: bool) -> list[torch.Tensor]:
    """:func:`image_cams` of each image of a batch (``classes``: one list per image): every class's CAM goes
    through the scales and flips, then each image keeps its own classes."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return model.cams(x)

    summed = multiscale_flip_batch(forward, images, scales)
    return [normalize_by_max(one[[c - 1 for c in own]]) for one, own in zip(summed, classes)]


@torch.no_grad()
def predict_scores(model, manifest, split: str, device, batch_size: int, amp: bool):
    """Classifier: (sigmoid scores, multi-hot targets), N x K numpy arrays each, single scale on whole images."""
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


@torch.no_grad()
def predict_probs(model, image: torch.Tensor, scales: Sequence[float], flip: bool, amp: bool = False) -> torch.Tensor:
    """DeepLab: mean softmax over ``scales`` (and their flips with ``flip``) at the image size, C x H x W float32."""
    return predict_probs_batch(model, image, scales, flip, amp)[0]


@torch.no_grad()
def predict_probs_batch(model, images: torch.Tensor, scales: Sequence[float], flip: bool, amp: bool = False):
    """:func:`predict_probs` of each image of an N x 3 x H x W batch: N x C x H x W float32."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return torch.softmax(model(x).float(), dim=1)

    return mean_over_scales(forward, images, scales, flip)


def mean_over_scales(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     scales: Sequence[float], flip: bool) -> torch.Tensor:
    """Mean of ``forward`` over ``scales`` (and their horizontal flips with ``flip``), each output upsampled
    bilinearly to the N x 3 x H x W batch's size: N x K x H x W."""
    size = tuple(images.shape[-2:])
    if flip:
        return multiscale_flip_batch(forward, images, scales, out_size=size) / (2 * len(scales))
    total = None
    for s in scales:
        resized = scaled_size(size, s)
        x = images if resized == size else F.interpolate(images, size=resized, mode="bilinear", align_corners=False)
        p = forward(x)
        if tuple(p.shape[-2:]) != size:
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        total = p if total is None else total.add_(p)
    return total / len(scales)


@torch.no_grad()
def saliency_maps(model, images: torch.Tensor, scales: Sequence[float], flip: bool, amp: bool = False) -> list[np.ndarray]:
    """Saliency network: per image of an N x 3 x H x W batch, the H x W float32 soft saliency S = sigmoid(logit) in
    [0, 1], averaged over ``scales`` (and their horizontal flips with ``flip``) at the image size. Not
    max-normalised: S is a probability, and an image without a salient object keeps low values."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp):
            return torch.sigmoid(model(x).float())

    total = mean_over_scales(forward, images, scales, flip)
    return [one[0].clamp_(0.0, 1.0).cpu().numpy() for one in total]
