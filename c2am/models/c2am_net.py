"""C2AM network: a trunk plus a one-channel activation head (docs/method.md §3).

Z = concat(f3, f4) (both at output stride 16), P = sigmoid(BN(conv3x3(Z))), and per image
v_f = mean_p P(p) Z(p), v_b = mean_p (1 - P(p)) Z(p). Which side P marks is learned up to a flip;
``foreground_map`` applies the polarity in probability space (1 - P), never on the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import build_trunk


class C2AM(nn.Module):
    """Class-agnostic activation map over a :class:`c2am.models.backbone.Trunk`.

    ``forward(x)`` (x: Bx3xHxW in [0, 1]) returns ``(v_f, v_b, P)`` with v_f, v_b: B x C, P: B x 1 x h x w.
    """

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        channels = int(sum(trunk.channels))
        # No conv bias: the BN that follows has its own shift.
        self.head = nn.Sequential(nn.Conv2d(channels, 1, 3, padding=1, bias=False), nn.BatchNorm2d(1))

    @property
    def feature_channels(self) -> int:
        return int(sum(self.trunk.channels))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Z = concat(f3, f4); f4 is resized to f3 if a trunk's rounding made them differ."""
        f3, f4 = self.trunk(x)
        if f4.shape[-2:] != f3.shape[-2:]:
            f4 = F.interpolate(f4, size=f3.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([f3, f4], dim=1)

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        """P in [0, 1], B x 1 x h x w."""
        return torch.sigmoid(self.head(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.features(x)
        p = self.activation(z)
        v_f, v_b = pool_fg_bg(z, p)
        return v_f, v_b, p

    @torch.no_grad()
    def foreground_map(self, x: torch.Tensor, inverted: bool) -> torch.Tensor:
        """Foreground probability B x 1 x h x w: P, or 1 - P when the model learned P as background."""
        p = self.activation(self.features(x))
        return 1.0 - p if inverted else p

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        # conv weight and BN affine parameters: all from scratch, all at the head lr.
        return list(self.head.parameters())


def pool_fg_bg(z: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v_f = mean_p P Z and v_b = mean_p (1 - P) Z, each B x C (the mean is over all h*w positions)."""
    if p.ndim != 4 or p.shape[1] != 1 or p.shape[0] != z.shape[0] or p.shape[-2:] != z.shape[-2:]:
        raise ValueError(f"P shape {tuple(p.shape)} does not fit Z shape {tuple(z.shape)}")
    v_f = (p * z).mean(dim=(2, 3))
    v_b = ((1.0 - p) * z).mean(dim=(2, 3))
    return v_f, v_b


def border_mean(p: torch.Tensor, border: float) -> float:
    """Mean of maps B x 1 x H x W (or B x H x W) over a border strip of width max(1, round(border * side))."""
    if p.ndim == 4:
        p = p[:, 0]
    if p.ndim != 3:
        raise ValueError(f"border_mean expects B x H x W maps, got shape {tuple(p.shape)}")
    if not 0 < border < 0.5:
        raise ValueError(f"border must be in (0, 0.5), got {border}")
    h, w = p.shape[-2:]
    bh, bw = max(1, round(border * h)), max(1, round(border * w))
    strip = torch.zeros((h, w), dtype=torch.bool, device=p.device)
    strip[:bh] = strip[-bh:] = True
    strip[:, :bw] = strip[:, -bw:] = True
    return float(p[:, strip].float().mean())


def decide_inverted(border_value: float, polarity: str = "auto") -> bool:
    """Polarity rule: image borders are mostly background, so P bright there (> 0.5) means P marks background.

    ``polarity`` "normal" / "inverted" overrides the measurement.
    """
    if polarity == "normal":
        return False
    if polarity == "inverted":
        return True
    if polarity != "auto":
        raise ValueError(f"polarity must be auto, normal or inverted, got {polarity!r}")
    return bool(border_value > 0.5)


def load_c2am(path, device) -> tuple[C2AM, bool]:
    """A trained C2AM in eval mode on ``device`` (trunk built without weights: they come from the checkpoint)
    and its polarity flag ``inverted``."""
    ckpt = load_checkpoint(path, kind="c2am")
    meta = ckpt["meta"]
    if not isinstance(meta.get("inverted"), bool):
        raise InputError(f"{path}: checkpoint meta has no boolean 'inverted' polarity flag")
    model = C2AM(build_trunk(meta["backbone"], "none"))
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval(), meta["inverted"]
