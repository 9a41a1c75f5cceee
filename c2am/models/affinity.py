"""The affinity network (docs/method.md §5b): per-pixel features at stride 4 whose L1 distances give the
affinities of the random walk (c2am.affinity).

``build_affinity(backbone, weights)`` returns an :class:`AffinityNet`: the shared trunk as a four-level pyramid
(``build_trunk(..., levels=4)``, strides 4, 8, 16, 16), each level reduced by a 1x1 conv + GroupNorm + ReLU,
upsampled to the stride-4 grid, concatenated and mapped by a 1x1 conv to ``dim`` feature channels (AffinityNet and
IRN also draw on several trunk levels; GroupNorm, as in IRN's branches, since the walk runs one image at a time).
It takes images in [0, 1] (B x 3 x H x W) and returns B x dim x ceil(H/4) x ceil(W/4) features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import TRUNK_NAMES, Trunk, build_trunk

LEVEL_CHANNELS = 32
FEATURE_DIM = 64


def _reduce(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, out, 1, bias=False), nn.GroupNorm(4, out), nn.ReLU(inplace=True))


class AffinityNet(nn.Module):
    """``backbone`` (a four-level :class:`~c2am.models.backbone.Trunk`) -> per-level reductions -> ``head``."""

    def __init__(self, backbone: Trunk, name: str, dim: int = FEATURE_DIM):
        super().__init__()
        if len(backbone.channels) != 4:
            raise ValueError(f"AffinityNet needs the four-level trunk, got {len(backbone.channels)} levels")
        self.backbone = backbone
        self.name = name
        self.reduce = nn.ModuleList(_reduce(c, LEVEL_CHANNELS) for c in backbone.channels)
        self.head = nn.Conv2d(LEVEL_CHANNELS * len(backbone.channels), dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.backbone(x)
        size = levels[0].shape[-2:]
        parts = [F.interpolate(r(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
                 else r(f) for r, f in zip(self.reduce, levels)]
        return self.head(torch.cat(parts, dim=1))

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(pretrained backbone parameters, from-scratch reduction and head parameters)."""
        return list(self.backbone.parameters()), list(self.reduce.parameters()) + list(self.head.parameters())


def build_affinity(backbone: str = "lite0", weights: str = "pretrained", dim: int = FEATURE_DIM) -> AffinityNet:
    """The affinity network on trunk ``backbone`` with ``weights`` (see :func:`build_trunk`)."""
    return AffinityNet(build_trunk(backbone, str(weights), levels=4), name=backbone, dim=dim)


def load_affinity(path, device) -> AffinityNet:
    """A trained affinity network in eval mode on ``device`` (no backbone weights needed)."""
    ckpt = load_checkpoint(path, kind="affinity")
    meta = ckpt["meta"]
    if meta.get("backbone") not in TRUNK_NAMES:
        raise InputError(f"{path}: checkpoint meta names backbone {meta.get('backbone')!r}, "
                         f"expected one of {', '.join(TRUNK_NAMES)}")
    model = build_affinity(meta["backbone"], "none", dim=int(meta.get("dim", FEATURE_DIM)))
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval()
