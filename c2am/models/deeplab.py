"""The final segmentation network (docs/method.md §6), built from torchvision parts.

``build_deeplab(model, num_classes, weights_backbone)`` returns a :class:`SegmentationNet`: it takes images
in [0, 1] (Bx3xHxW, not normalized) and returns class logits at the input size (BxCxHxW).

- ``lite0_deeplabhead`` (default, CPU-sized): the shared Lite0 trunk (``build_trunk("lite0", ...)``, output
  stride 16) and torchvision's ``DeepLabHead`` on the concatenation of its two feature maps (112 + 320 channels,
  both at stride 16, so concatenation costs nothing in resolution). The ASPP rates are (6, 12, 18), the
  DeepLabv3 paper's rates for output stride 16; torchvision's default (12, 24, 36) is meant for stride 8.
- ``deeplabv3_resnet50`` / ``deeplabv3_resnet101``: torchvision's builders, unchanged (output stride 8,
  no auxiliary head), with the ImageNet normalization done here. Backbone weights come from
  :func:`c2am.models.backbone.load_resnet_weights`, so MoCo/DetCo/torchvision files are matched the same way
  as for every other trunk, every tensor accounted for.

Nothing is ever downloaded.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import IGNORE, InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_trunk,
    load_resnet_weights,
    resnet_weights_file,
)

log = logging.getLogger(__name__)

MODEL_NAMES = ("lite0_deeplabhead", "deeplabv3_resnet50", "deeplabv3_resnet101")
# DeepLabv3 ASPP rates for output stride 16 (the Lite0 trunk's stride).
LITE0_ASPP_RATES = (6, 12, 18)


class SegmentationNet(nn.Module):
    """``backbone`` -> ``head`` -> logits upsampled bilinearly to the input size.

    ``backbone(x)`` gets [0, 1] images for the Lite0 trunk (it normalizes itself) and normalized images for the
    torchvision ResNet (``normalize_input=True``); it returns a tensor, a tuple of tensors (concatenated on the
    channel axis) or torchvision's ``{"out": tensor}``. Parameters are split into ``backbone`` and ``head``
    for the two learning rates.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, num_classes: int, name: str, normalize_input: bool):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = int(num_classes)
        self.name = name
        self.normalize_input = bool(normalize_input)
        # Constants, not weights: kept out of the state_dict.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_input:
            x = (x - self.mean) / self.std
        feats = self.backbone(x)
        if isinstance(feats, dict):
            return feats["out"]
        if isinstance(feats, (tuple, list)):
            return torch.cat(list(feats), dim=1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects Bx3xHxW images in [0, 1], got shape {tuple(x.shape)}")
        logits = self.head(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(pretrained backbone parameters, from-scratch head parameters)."""
        return list(self.backbone.parameters()), list(self.head.parameters())


def build_deeplab(model: str = "lite0_deeplabhead", num_classes: int = 21, weights_backbone: str = "pretrained") -> SegmentationNet:
    """Build ``model`` (one of :data:`MODEL_NAMES`) for ``num_classes`` classes.

    ``weights_backbone``: ``none``, ``pretrained``/``imagenet`` (Lite0: the packaged weights; ResNet: torchvision's
    file in the local torch hub cache), or, for the ResNets, a local checkpoint path (torchvision, MoCo v2, DetCo).
    """
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    if int(num_classes) < 2:
        raise InputError(f"num_classes {num_classes}: a segmentation network needs at least 2 classes")
    weights_backbone = str(weights_backbone)
    if model == "lite0_deeplabhead":
        trunk = build_trunk("lite0", weights_backbone)
        head = DeepLabHead(sum(trunk.channels), int(num_classes), atrous_rates=LITE0_ASPP_RATES)
        return SegmentationNet(trunk, head, num_classes, model, normalize_input=False)
    if model in ("deeplabv3_resnet50", "deeplabv3_resnet101"):
        return _build_torchvision_deeplab(model, int(num_classes), weights_backbone)
    raise InputError(f"deeplab model {model!r}: unknown; choose one of {', '.join(MODEL_NAMES)}")


def _build_torchvision_deeplab(model: str, num_classes: int, weights_backbone: str) -> SegmentationNet:
    from torchvision.models.segmentation import deeplabv3_resnet50, deeplabv3_resnet101

    arch = model.removeprefix("deeplabv3_")
    builder = {"resnet50": deeplabv3_resnet50, "resnet101": deeplabv3_resnet101}[arch]
    path = resnet_weights_file(arch, weights_backbone)  # resolve first: a bad path fails before building
    net = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if path is not None:
        # The IntermediateLayerGetter keeps torchvision's ResNet key names (conv1., layer1. ...), minus fc.
        load_resnet_weights(net.backbone, path)
    return SegmentationNet(net.backbone, net.classifier, num_classes, model, normalize_input=True)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose target is not 255.

    Same value as ``CrossEntropyLoss(ignore_index=255)`` when any pixel is labelled; a batch with no labelled
    pixel (possible with pseudo labels full of 255 and small crops) gives 0 instead of NaN.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
    count = (target != IGNORE).sum().clamp(min=1)
    return total / count


def training_side(path) -> float:
    """The mean shorter side, in pixels, of the images a checkpoint was trained on: crop x the midpoint of its
    scale range (train_deeplab resizes the shorter side to crop x U(lo, hi)). Inference at scale 1 of
    ``scale_reference: train`` resizes each image to this side."""
    meta = load_checkpoint(path, kind="deeplab")["meta"]
    if "crop" not in meta or "scale_range" not in meta:
        raise InputError(f"{path}: the checkpoint does not record its training crop and scale range; "
                         "use deeplab.infer.scale_reference: native (--scale-reference native)")
    lo, hi = meta["scale_range"]
    return float(meta["crop"]) * (float(lo) + float(hi)) / 2.0


def load_deeplab(path, num_classes: int, device) -> SegmentationNet:
    """A trained segmentation network in eval mode on ``device`` (no backbone weights needed); it must predict
    ``num_classes`` classes (the manifest's)."""
    ckpt = load_checkpoint(path, kind="deeplab")
    meta = ckpt["meta"]
    if int(meta.get("num_classes", -1)) != num_classes:
        raise InputError(f"{path}: trained for {meta.get('num_classes')} classes, the manifest has {num_classes}")
    model = build_deeplab(meta["arch"], num_classes, "none")
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval()
