"""Class-agnostic box regressor trained on C2AM's pseudo boxes (the PSOL step of the WSOL recipe, docs/method.md §10).

trunk (the shared factory, output stride 16) -> f4 -> 1x1 conv to 64 channels + BN + ReLU -> adaptive average
pooling to a GRID x GRID grid -> flatten -> Linear(64 GRID^2, HIDDEN) -> ReLU -> Linear(HIDDEN, 4) -> sigmoid.

PSOL puts its MLP on globally pooled features; a global average is nearly blind to where things are, so here
the pooled grid keeps a coarse layout and the MLP reads positions from it. The four outputs are the box
centre and size in units of the image, ``(cx, cy, w, h)``; :func:`to_edges` turns them into edges
``(x1, y1, x2, y2) = (cx - w/2, cy - h/2, cx + w/2, cy + h/2)``, so a prediction is always a box (x1 <= x2).
The loss (:func:`box_loss`) is ``l1_weight * smoothL1(edges, target) + giou_weight * (1 - GIoU)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import Trunk, build_trunk

GRID = 4
REDUCED = 64
HIDDEN = 256
SMOOTH_L1_BETA = 0.05  # in units of the image side: L1 beyond 5 %, quadratic below


class Localizer(nn.Module):
    """``forward(x) -> (cx, cy, w, h)`` in [0, 1] units of the input, B x 4. ``x``: images in [0, 1]."""

    def __init__(self, trunk: Trunk):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Sequential(
            nn.Conv2d(trunk.channels[1], REDUCED, 1, bias=False),
            nn.BatchNorm2d(REDUCED),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(GRID),
            nn.Flatten(),
            nn.Linear(REDUCED * GRID * GRID, HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.trunk(x)[1]).float())

    def backbone_parameters(self):
        return self.trunk.parameters()

    def head_parameters(self):
        return self.head.parameters()


def to_edges(cxcywh: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2), both B x 4 in units of the image."""
    c, half = cxcywh[:, :2], cxcywh[:, 2:] / 2
    return torch.cat([c - half, c + half], dim=1)


def giou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Generalised IoU of matching rows of two B x 4 edge boxes (x1 <= x2, y1 <= y2; continuous coordinates).

    GIoU = IoU - (|C| - |A u B|) / |C|, C the smallest box enclosing both (Rezatofighi et al., CVPR 2019).
    """
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    c_lt, c_rb = torch.min(a[:, :2], b[:, :2]), torch.max(a[:, 2:], b[:, 2:])
    hull = (c_rb - c_lt).clamp(min=0).prod(dim=1)
    return inter / (union + eps) - (hull - union) / (hull + eps)


def box_loss(pred_cxcywh: torch.Tensor, target_edges: torch.Tensor, l1_weight: float, giou_weight: float):
    """Mean over the batch of ``l1_weight * smoothL1 + giou_weight * (1 - GIoU)`` on the edges."""
    pred = to_edges(pred_cxcywh.float())
    target = target_edges.float()
    l1 = F.smooth_l1_loss(pred, target, beta=SMOOTH_L1_BETA, reduction="none").sum(dim=1)
    return (l1_weight * l1 + giou_weight * (1.0 - giou(pred, target))).mean()


def build_localizer(backbone: str, weights: str) -> Localizer:
    return Localizer(build_trunk(backbone, weights))


def load_localizer(path, device) -> tuple[Localizer, dict]:
    """A trained localizer in eval mode on ``device`` and its checkpoint meta (input ``size`` among it)."""
    ckpt = load_checkpoint(path, kind="localizer")
    meta = ckpt["meta"]
    if not isinstance(meta.get("size"), int):
        raise InputError(f"{path}: localizer checkpoint meta has no integer input 'size'")
    model = build_localizer(meta["backbone"], "none")
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_unit_box(model: Localizer, image: torch.Tensor, size: int, flip: bool) -> list[float]:
    """Edges (x1, y1, x2, y2) in units of the image, from the whole image resized to ``size`` x ``size``.

    ``image``: 1 x 3 x H x W in [0, 1]. With ``flip`` the mirrored image's box is mirrored back and averaged.
    """
    x = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if not flip:
        return to_edges(model(x))[0].tolist()
    edges = to_edges(model(torch.cat([x, x.flip(-1)], dim=0)))
    mirrored = torch.stack([1 - edges[1, 2], edges[1, 1], 1 - edges[1, 0], edges[1, 3]])
    return ((edges[0] + mirrored) / 2).tolist()
