"""Class-agnostic box regressor trained on C2AM's pseudo boxes (the PSOL step of the WSOL recipe, docs/method.md §10).

trunk (the shared factory, output stride 16) -> one of three heads (config ``wsol.localizer.head``):

- ``edges``: conv3x3 (64 channels, no bias) + BN + ReLU -> conv1x1 to 4 logit maps ``L_e``, one per box edge
  e in (x1, y1, x2, y2) -> each edge's coordinate as an expectation (integral regression, "soft-argmax")::

      p_e(column j) = softmax_j( logsumexp_i L_e(i, j) )          for x1, x2 (rows i marginalised out)
      x_e = sum_j p_e(j) * c_j,   c_j = j / (w - 1)               the w columns' centres stretched onto [0, 1]

  (rows likewise for y1, y2): every position's features vote for the edges where they are;
- ``edges8``: the same on a grid twice as fine, the trunk's stride-8 level joined to f4 upsampled onto it
  (small objects span 2-3 cells of the stride-16 grid of a 128 px image);
- ``pooled``: PSOL's regressor, f4 average-pooled to a 4 x 4 grid -> MLP (256 hidden) -> 4 sigmoids.

Each way ``x1, x2 = min, max`` of the two x values (y likewise), so the output is always a box, its edges in
units of the input, ``[0, 1]``. The head is chosen on the held-out val split (bench/choose_localizer.py,
README). The loss (:func:`box_loss`) is ``l1_weight * smoothL1(edges, target) + giou_weight * (1 - GIoU)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import Trunk, build_trunk

HEADS = ("edges", "edges8", "pooled")
TRUNK_LEVELS = {"edges": 2, "edges8": 3, "pooled": 2}  # edges8 also reads the trunk's stride-8 level
HIDDEN = 64  # channels of the edge heads
POOL_GRID = 4  # the pooled head's grid side ...
POOL_HIDDEN = 256  # ... and its MLP's width
SMOOTH_L1_BETA = 0.05  # in units of the image side: L1 beyond 5 %, quadratic below


def soft_argmax_1d(logits: torch.Tensor) -> torch.Tensor:
    """Expected position in [0, 1] of softmax(logits) over the last axis, cell k at k / (n - 1) (0.5 if n = 1)."""
    n = logits.shape[-1]
    if n == 1:
        return torch.full(logits.shape[:-1], 0.5, dtype=logits.dtype, device=logits.device)
    centres = torch.arange(n, dtype=logits.dtype, device=logits.device) / (n - 1)
    return (torch.softmax(logits, dim=-1) * centres).sum(dim=-1)


def check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"localizer head must be one of {HEADS}, got {head!r}")


def ordered_box(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Two x and two y values per row (B x 2 each) -> B x 4 box (x1, y1, x2, y2) with x1 <= x2, y1 <= y2."""
    return torch.stack([x.min(dim=1).values, y.min(dim=1).values, x.max(dim=1).values, y.max(dim=1).values], dim=1)


def edges_from_maps(maps: torch.Tensor) -> torch.Tensor:
    """B x 4 x h x w edge logits (x1, y1, x2, y2) -> B x 4 box edges in [0, 1], ordered x1 <= x2, y1 <= y2."""
    x = soft_argmax_1d(torch.logsumexp(maps[:, [0, 2]], dim=2))  # B x 2, over columns
    y = soft_argmax_1d(torch.logsumexp(maps[:, [1, 3]], dim=3))  # B x 2, over rows
    return ordered_box(x, y)


def edges_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """B x 4 edge logits (x1, y1, x2, y2) of the pooled head -> B x 4 ordered box edges in [0, 1] (sigmoids)."""
    edges = torch.sigmoid(logits)
    return ordered_box(edges[:, [0, 2]], edges[:, [1, 3]])


def _edge_head(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, HIDDEN, 3, padding=1, bias=False),
        nn.BatchNorm2d(HIDDEN),
        nn.ReLU(inplace=True),
        nn.Conv2d(HIDDEN, 4, 1),
    )


def _pooled_head(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(POOL_GRID),
        nn.Flatten(),
        nn.Linear(channels * POOL_GRID * POOL_GRID, POOL_HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(POOL_HIDDEN, 4),
    )


class Localizer(nn.Module):
    """``forward(x) -> (x1, y1, x2, y2)`` box edges in [0, 1] units of the input, B x 4. ``x``: images in [0, 1]."""

    def __init__(self, trunk: Trunk, head: str = "edges"):
        super().__init__()
        check_head(head)
        if head == "edges8" and trunk.strides[0] != 8:
            raise ValueError(f"the edges8 head needs a trunk whose first level has stride 8, got {trunk.strides}")
        self.trunk = trunk
        self.head_kind = head
        channels = trunk.channels[-1] + (trunk.channels[0] if head == "edges8" else 0)
        self.head = (_pooled_head if head == "pooled" else _edge_head)(channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f4 (stride 16); for edges8, the stride-8 level joined to f4 upsampled onto its grid."""
        levels = self.trunk(x)
        if self.head_kind != "edges8":
            return levels[-1]
        fine = levels[0]
        coarse = F.interpolate(levels[-1], size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x)).float()
        return edges_from_logits(out) if self.head_kind == "pooled" else edges_from_maps(out)

    def backbone_parameters(self):
        return self.trunk.parameters()

    def head_parameters(self):
        return self.head.parameters()


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


def box_loss(pred: torch.Tensor, target: torch.Tensor, l1_weight: float, giou_weight: float) -> torch.Tensor:
    """Mean over the batch of ``l1_weight * smoothL1 (summed over the 4 edges) + giou_weight * (1 - GIoU)``."""
    pred, target = pred.float(), target.float()
    l1 = F.smooth_l1_loss(pred, target, beta=SMOOTH_L1_BETA, reduction="none").sum(dim=1)
    return (l1_weight * l1 + giou_weight * (1.0 - giou(pred, target))).mean()


def build_localizer(backbone: str, weights: str, head: str = "edges") -> Localizer:
    check_head(head)  # before the trunk is built and its weights read
    return Localizer(build_trunk(backbone, weights, levels=TRUNK_LEVELS[head]), head)


def load_localizer(path, device) -> tuple[Localizer, dict]:
    """A trained localizer in eval mode on ``device`` and its checkpoint meta (input ``size`` among it)."""
    ckpt = load_checkpoint(path, kind="localizer")
    meta = ckpt["meta"]
    if not isinstance(meta.get("size"), int):
        raise InputError(f"{path}: localizer checkpoint meta has no integer input 'size'")
    head = meta.get("head", "edges")  # checkpoints written before the head was a choice hold the edge head
    if head not in HEADS:
        raise InputError(f"{path}: localizer checkpoint meta names head {head!r}, not one of {HEADS}")
    model = build_localizer(meta["backbone"], "none", head)
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_unit_box(model: Localizer, image: torch.Tensor, size: int, flip: bool) -> list[float]:
    """Edges (x1, y1, x2, y2) in units of the image, from the whole image resized to ``size`` x ``size``.

    ``image``: 1 x 3 x H x W in [0, 1]. With ``flip`` the mirrored image's box is mirrored back and averaged.
    """
    x = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if not flip:
        return model(x)[0].tolist()
    edges = model(torch.cat([x, x.flip(-1)], dim=0))
    mirrored = torch.stack([1 - edges[1, 2], edges[1, 1], 1 - edges[1, 0], edges[1, 3]])
    return ((edges[0] + mirrored) / 2).tolist()
