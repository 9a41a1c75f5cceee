"""Torch datasets over a :class:`~c2am.data.voc.Manifest`.

Images leave here as float tensors in [0, 1] (CHW, not normalised: the trunk normalises internally).
Augmentation uses torchvision.transforms.v2, so an image and its mask (a ``tv_tensors.Mask``) are
transformed jointly. The v2 transforms draw from torch's global RNG, which the training loop reseeds
per epoch; that keeps runs and resumed runs reproducible. Inference reads full-resolution images
through ``c2am.inference.InferenceDataset`` / ``iterate_images``. The localizer (WSOL) learns from
:class:`BoxDataset`: box-preserving crops and the box as unit edges (:func:`box_to_unit`, :func:`unit_to_box`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from c2am.artifacts import load_cue
from c2am.data.voc import Manifest, image_size
from c2am.data.wsol import check_box, round_half_up
from c2am.io import IGNORE, InputError


def to_image_tensor(image: np.ndarray) -> tv_tensors.Image:
    """HxWx3 uint8 numpy -> 3xHxW uint8 tv_tensors.Image."""
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))


_TO_FLOAT = v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


def image_train_transform(crop: int, resize: int | None = None, scale: tuple[float, float] | None = None) -> v2.Compose:
    """Unlabelled-image augmentation.

    ``resize`` given: resize to ``resize`` x ``resize`` then take a random ``crop`` (the C2AM recipe, 512 -> 448).
    ``scale`` given instead: a random resized crop covering that fraction of the image (the classifier's mild crops).
    """
    if (resize is None) == (scale is None):
        raise ValueError("give exactly one of resize or scale")
    if resize is not None:
        geometry = [v2.Resize((resize, resize), antialias=True), v2.RandomCrop(crop, pad_if_needed=True)]
    else:
        geometry = [v2.RandomResizedCrop(crop, scale=tuple(scale), ratio=(3 / 4, 4 / 3), antialias=True)]
    return v2.Compose([*geometry, v2.RandomHorizontalFlip(), _TO_FLOAT])


def segmentation_train_transform(crop: int, scale_range: tuple[float, float] = (0.5, 1.5)) -> v2.Compose:
    """Joint image/mask augmentation: scale jitter, crop padded with 0 (image) / 255 (mask), flip."""
    lo, hi = (max(1, int(round(crop * s))) for s in scale_range)
    return v2.Compose(
        [
            v2.RandomResize(lo, hi + 1, antialias=True),
            v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}),
            v2.RandomHorizontalFlip(),
            _TO_FLOAT,
        ]
    )


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


class ClassificationDataset(Dataset):
    """(image, multi-hot labels over classes 1..C-1). C2AM uses the images only."""

    def __init__(self, manifest: Manifest, split: str, transform=None):
        self.manifest = manifest
        self.ids = manifest.ids(split)
        self.transform = transform or _TO_FLOAT

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = self.transform(to_image_tensor(self.manifest.load_image(image_id)))
        return image, torch.from_numpy(self.manifest.multi_hot(image_id))


class SegmentationDataset(Dataset):
    """(image, mask as int64 HxW). ``mask_dir`` points at pseudo labels instead of the GT masks; ``ids`` (default:
    the split's) restricts it, e.g. to the images that have a GT mask. ``mask_fn`` (H x W uint8 -> H x W uint8)
    changes each mask before the augmentation, e.g. the affinity labels' neutral band (c2am.affinity)."""

    def __init__(self, manifest: Manifest, split: str, transform=None, mask_dir=None, ids=None, mask_fn=None):
        self.manifest = manifest
        self.ids = list(manifest.ids(split) if ids is None else ids)
        self.transform = transform or _TO_FLOAT
        self.mask_dir = mask_dir
        self.mask_fn = mask_fn

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = to_image_tensor(self.manifest.load_image(image_id))
        mask = self.manifest.load_mask(image_id, self.mask_dir)
        if self.mask_fn is not None:
            mask = self.mask_fn(mask)
        mask = tv_tensors.Mask(torch.from_numpy(mask))
        image, mask = self.transform(image, mask)
        return image, mask.long()


class CueDataset(Dataset):
    """(image, cue as int64 HxW: 1 = foreground, 0 = background, 255 = padding of the crop) for the saliency network.

    The cue of image ``<id>`` is ``cues_dir/<id>.png`` (c2am.artifacts.load_cue, checked against the image's size);
    ``transform`` (e.g. :func:`segmentation_train_transform`) moves image and cue together. No label of any kind is
    read: neither GT masks nor image-level classes.
    """

    def __init__(self, manifest: Manifest, split: str, cues_dir, transform=None):
        self.manifest = manifest
        self.ids = manifest.ids(split)
        self.cues_dir = Path(cues_dir)
        self.transform = transform or _TO_FLOAT

    def __len__(self) -> int:
        return len(self.ids)

    def cue_path(self, image_id: str) -> Path:
        return self.cues_dir / f"{image_id}.png"

    def check_sizes(self) -> None:
        """Every cue exists and has its image's size, from the file headers (no decoding); the first that does
        not is an InputError naming it."""
        for image_id in self.ids:
            path = self.cue_path(image_id)
            if not path.is_file():
                raise InputError(f"{path}: cue not found")
            cue_hw, image_hw = image_size(path), image_size(self.manifest.image_path(image_id))
            if cue_hw != image_hw:
                raise InputError(f"{path}: cue size {cue_hw[1]}x{cue_hw[0]} differs from its image's "
                                 f"{image_hw[1]}x{image_hw[0]}")

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = self.manifest.load_image(image_id)
        cue = load_cue(self.cue_path(image_id), image.shape[:2])
        mask = tv_tensors.Mask(torch.from_numpy(cue.astype(np.uint8)))
        image, mask = self.transform(to_image_tensor(image), mask)
        return image, mask.long()


# ----------------------------------------------------------------------------- the localizer's boxes (WSOL)


def box_to_unit(box, size: tuple[int, int]) -> np.ndarray:
    """Inclusive pixel box [x1, y1, x2, y2] -> edges [x1, y1, x2 + 1, y2 + 1] / (W, H, W, H), float32 in [0, 1]."""
    h, w = size
    x1, y1, x2, y2 = box
    return np.array([x1 / w, y1 / h, (x2 + 1) / w, (y2 + 1) / h], dtype=np.float32)


def unit_to_box(unit, size: tuple[int, int]) -> list[int]:
    """Inverse of :func:`box_to_unit`, rounded to pixels and clipped to the image (always a valid box)."""
    h, w = size
    u = np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0)
    x1 = min(w - 1, round_half_up(u[0] * w))
    y1 = min(h - 1, round_half_up(u[1] * h))
    x2 = max(x1, min(w - 1, round_half_up(u[2] * w) - 1))
    y2 = max(y1, min(h - 1, round_half_up(u[3] * h) - 1))
    return [x1, y1, x2, y2]


def box_crop_window(size: tuple[int, int], box, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """A random crop (top, left, height, width) that contains the whole inclusive ``box`` (PSOL-style).

    The crop's side ratios to the image are drawn uniformly in ``scale`` (then widened to fit the box), its
    position uniformly among those that keep the box inside. Draws from torch's global RNG.
    """
    h, w = size
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    lo, hi = scale
    r = torch.empty(4).uniform_(0.0, 1.0).tolist()
    cw = max(bw, min(w, round_half_up(w * (lo + (hi - lo) * r[0]))))
    ch = max(bh, min(h, round_half_up(h * (lo + (hi - lo) * r[1]))))
    left_lo, left_hi = max(0, x2 + 1 - cw), min(x1, w - cw)
    top_lo, top_hi = max(0, y2 + 1 - ch), min(y1, h - ch)
    left = left_lo + int(r[2] * (left_hi - left_lo + 1) - 1e-9) if left_hi > left_lo else left_lo
    top = top_lo + int(r[3] * (top_hi - top_lo + 1) - 1e-9) if top_hi > top_lo else top_lo
    return top, left, ch, cw


class BoxDataset(Dataset):
    """(image 3 x S x S float in [0, 1], target box float32 (4,) as unit edges) for the localizer.

    ``boxes``: image id -> inclusive pixel box (the pseudo boxes) for every id of ``ids``. Training view
    (``train=True``): a random crop containing the whole box (:func:`box_crop_window`, side ratios in
    ``crop_scale``), resized to S x S, flipped with probability 0.5; the box follows. Otherwise the whole image
    resized to S x S.
    """

    def __init__(self, manifest: Manifest, ids: list[str], boxes: dict, size: int, crop_scale=(0.6, 1.0),
                 train: bool = True):
        missing = [i for i in ids if boxes.get(i) is None]
        if missing:
            raise InputError(f"pseudo boxes: no box for {len(missing)} of {len(ids)} images (e.g. {missing[0]})")
        self.manifest = manifest
        self.ids = list(ids)
        self.boxes = boxes
        self.size = int(size)
        self.crop_scale = tuple(crop_scale)
        self.train = train

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        pixels = self.manifest.load_image(image_id)
        h, w = pixels.shape[:2]
        box = list(self.boxes[image_id])
        check_box(box, (h, w), f"pseudo box of {image_id}")
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        if self.train:
            top, left, ch, cw = box_crop_window((h, w), box, self.crop_scale)
            image = image[:, top:top + ch, left:left + cw]
            box = [box[0] - left, box[1] - top, box[2] - left, box[3] - top]
            h, w = ch, cw
        target = box_to_unit(box, (h, w))
        image = TF.resize(image, [self.size, self.size], antialias=True)
        if self.train and torch.rand(()) < 0.5:
            image = image.flip(-1)
            target = np.array([1.0 - target[2], target[1], 1.0 - target[0], target[3]], dtype=np.float32)
        return image.float().div_(255.0), torch.from_numpy(target)
