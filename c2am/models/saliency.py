"""The class-agnostic saliency network of stages 3c-3d (the official step 4, docs/method.md §4): trained on the
CRF cues, no labels.

``build_saliency(backbone, weights, decoder)`` returns a :class:`SaliencyNet`: a trunk from the shared factory
(``build_trunk``) and a decoder (config ``saliency.decoder``): ``head``, the two stride-16 feature maps concatenated
-> 3x3 conv to 64 channels, BatchNorm, ReLU, 1x1 conv to one logit; or ``pyramid`` (:class:`PyramidHead`), top-down
over the four levels to stride 4. It takes images in [0, 1] (Bx3xHxW; the trunk normalises them) and returns
Bx1xHxW saliency logits, upsampled bilinearly to the input size; ``sigmoid`` of them is the soft foreground S.

The official pipeline trains PoolNet (ResNet-50) at this step; here the trunk is the one every other network uses,
so the default config stays CPU-sized (Lite0) and the VOC config uses ResNet-50.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import IGNORE, InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import TRUNK_NAMES, Trunk, build_trunk

DECODER_CHANNELS = 64
DECODERS = ("head", "pyramid")
TRUNK_LEVELS = {"head": 2, "pyramid": 4}  # the pyramid decoder reads the stride-4 and stride-8 levels too


def check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"saliency decoder must be one of {DECODERS}, got {decoder!r}")


class SaliencyNet(nn.Module):
    """``backbone`` (a :class:`~c2am.models.backbone.Trunk`) -> ``head`` -> one logit per pixel at the input size.

    Parameters are split into ``backbone`` (pretrained) and ``head`` (from scratch) for the two learning rates.
    """

    def __init__(self, backbone: Trunk, name: str, hidden: int = DECODER_CHANNELS, decoder: str = "head"):
        super().__init__()
        check_decoder(decoder)
        self.backbone = backbone
        self.name = name
        self.decoder = decoder
        self.head = (PyramidHead if decoder == "pyramid" else _single_head)(backbone.channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"SaliencyNet expects Bx3xHxW images in [0, 1], got shape {tuple(x.shape)}")
        levels = list(self.backbone(x))
        logits = self.head(levels) if self.decoder == "pyramid" else self.head(torch.cat(levels, dim=1))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(pretrained backbone parameters, from-scratch head parameters)."""
        return list(self.backbone.parameters()), list(self.head.parameters())


def _single_head(channels: tuple[int, ...], hidden: int) -> nn.Module:
    """The stride-16 levels concatenated -> 3x3 conv + BN + ReLU -> one logit (stride 16)."""
    return nn.Sequential(
        nn.Conv2d(sum(channels), hidden, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, 1, kernel_size=1),
    )


class PyramidHead(nn.Module):
    """Top-down over the trunk's levels (strides 4, 8, 16, 16): each level through a 1x1 conv to ``hidden``
    channels, the coarser sum upsampled and added (a feature pyramid), then 3x3 conv + BN + ReLU and one logit at
    stride 4, so a boundary is placed from stride-4 features instead of being interpolated from stride 16."""

    def __init__(self, channels: tuple[int, ...], hidden: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, hidden, kernel_size=1) for c in channels)
        self.out = _single_head((hidden,), hidden)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        top = self.lateral[-1](levels[-1])
        for conv, level in zip(reversed(self.lateral[:-1]), reversed(levels[:-1])):
            top = conv(level) + F.interpolate(top, size=level.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(top)


def build_saliency(backbone: str = "lite0", weights: str = "pretrained", decoder: str = "head") -> SaliencyNet:
    """The saliency network on trunk ``backbone`` (``lite0``, ``resnet50``, ``resnet101``) with ``weights``
    (``pretrained``/``imagenet``, ``none``, or a local ResNet checkpoint; see :func:`build_trunk`) and
    ``decoder`` (``head``: one layer on the stride-16 levels; ``pyramid``: top-down to stride 4)."""
    check_decoder(decoder)  # before the trunk is built and its weights read
    return SaliencyNet(build_trunk(backbone, str(weights), levels=TRUNK_LEVELS[decoder]), name=backbone,
                       decoder=decoder)


def saliency_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits over the pixels whose target is not 255 (target 1 = foreground,
    0 = background, 255 = padding of the crop), in float32.

    ``logits``: Bx1xHxW or BxHxW; ``target``: BxHxW. A batch without a valid pixel gives 0, not NaN.
    """
    if logits.dim() == 4:
        if logits.shape[1] != 1:
            raise ValueError(f"saliency_loss expects one logit channel, got shape {tuple(logits.shape)}")
        logits = logits[:, 0]
    if logits.shape != target.shape:
        raise ValueError(f"saliency_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    valid = target != IGNORE
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), (target == 1).float(), reduction="none")
    total = torch.where(valid, per_pixel, torch.zeros_like(per_pixel)).sum()
    return total / valid.sum().clamp(min=1)


def load_saliency(path, device) -> SaliencyNet:
    """A trained saliency network in eval mode on ``device`` (no backbone weights needed)."""
    ckpt = load_checkpoint(path, kind="saliency")
    backbone = ckpt["meta"].get("backbone")
    if backbone not in TRUNK_NAMES:
        raise InputError(f"{path}: checkpoint meta names backbone {backbone!r}, expected one of {', '.join(TRUNK_NAMES)}")
    decoder = ckpt["meta"].get("decoder", "head")  # checkpoints written before the decoder was a choice
    if decoder not in DECODERS:
        raise InputError(f"{path}: checkpoint meta names decoder {decoder!r}, expected one of {', '.join(DECODERS)}")
    model = build_saliency(backbone, "none", decoder)
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval()
