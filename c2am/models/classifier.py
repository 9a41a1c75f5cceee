"""Multi-label classifier for class activation maps (the IRN / PuzzleCAM recipe, docs/method.md §5).

trunk (output stride 16) -> last-stage features f4 -> global average pooling -> 1x1 conv (no bias) to the
C-1 foreground classes. Only f4 is used (no f3 concatenation): the CAM of class c is then exactly the
per-position term of the pooled logit, ``logit_c = mean_p conv_c(f4)(p)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2am.io import InputError, load_checkpoint, load_state_strict
from c2am.models.backbone import Trunk, build_trunk


class Classifier(nn.Module):
    """``forward(x) -> logits`` (B x K); ``cams(x) -> ReLU(conv(f4))`` (B x K x h x w, stride 16).

    ``x`` holds images in [0, 1] (the trunk normalises). K = number of foreground classes.
    """

    def __init__(self, trunk: Trunk, num_foreground: int):
        super().__init__()
        if num_foreground < 1:
            raise ValueError(f"num_foreground must be >= 1, got {num_foreground}")
        self.trunk = trunk
        # No bias: pooling and a 1x1 conv commute, so the logit is the spatial mean of the CAM logits.
        self.head = nn.Conv2d(trunk.channels[1], num_foreground, kernel_size=1, bias=False)
        self.num_foreground = int(num_foreground)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.head(pooled).flatten(1)

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.head(self.features(x)))

    def backbone_parameters(self):
        return self.trunk.parameters()

    def head_parameters(self):
        return self.head.parameters()


def build_classifier(backbone: str, weights: str, num_foreground: int) -> Classifier:
    """Classifier on ``build_trunk(backbone, weights)``; use weights 'none' when a checkpoint follows."""
    return Classifier(build_trunk(backbone, weights), num_foreground)


def load_classifier(path, classes: list[str], device) -> Classifier:
    """A trained classifier in eval mode on ``device``; it must have been trained on ``classes`` (the manifest's)."""
    ckpt = load_checkpoint(path, kind="classifier")
    meta = ckpt["meta"]
    if list(meta.get("classes", [])) != list(classes):
        raise InputError(f"{path}: trained on classes {meta.get('classes')}, the dataset has {list(classes)}")
    model = build_classifier(meta["backbone"], "none", int(meta["num_foreground"]))
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval()

