"""Which side of the C2AM map is foreground: the border test after epoch 1 (docs/method.md §3).

The contrastive loss is symmetric under P <-> 1 - P, so training may end with P marking the background.
Objects rarely fill an image's border, so after epoch 1 the mean of P over a border strip of a fixed set of
training images decides: above 0.5, P marks background and the checkpoint records ``inverted = True``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from c2am.data.datasets import UnlabeledImages
from c2am.models.c2am_net import C2AM, border_mean, decide_inverted

log = logging.getLogger("c2am.polarity")

# Images used for the border test: enough for a stable mean, few enough to cost a second.
POLARITY_IMAGES = 64


def polarity_transform(size: int) -> v2.Compose:
    """Deterministic view for the border test: the whole image resized, no crop (crops cut the borders off)."""
    return v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


def polarity_images(manifest, split: str, size: int) -> torch.Tensor:
    """The first POLARITY_IMAGES images of the split, whole and resized (fixed, so the test is reproducible)."""
    data = UnlabeledImages(manifest, split, polarity_transform(size))
    n = min(POLARITY_IMAGES, len(data))
    return torch.stack([data[i] for i in range(n)])


@torch.no_grad()
def measure_polarity(model: C2AM, images: torch.Tensor, border: float, device, batch_size: int = 32) -> float:
    """Mean of P over the border strip of ``images`` (N x 3 x H x W in [0, 1]), P upsampled to image size."""
    was_training = model.training
    model.eval()
    values, weights = [], []
    try:
        for chunk in images.split(batch_size):
            chunk = chunk.to(device)
            p = model.activation(model.features(chunk)).float()
            p = F.interpolate(p, size=chunk.shape[-2:], mode="bilinear", align_corners=False)
            values.append(border_mean(p, border))
            weights.append(len(chunk))
    finally:
        model.train(was_training)
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)


def polarity_callback(images: torch.Tensor, border: float, polarity: str, device):
    """``on_epoch_end`` for fit: decide ``inverted`` after epoch 1 (``polarity`` normal / inverted forces it);
    log the border mean every epoch and warn when a later epoch disagrees."""

    def on_epoch_end(epoch: int, model: C2AM, meta: dict) -> dict:
        value = measure_polarity(model, images, border, device)
        update = {"border_means": list(meta.get("border_means", [])) + [round(value, 6)]}
        if epoch == 1:
            update["inverted"] = decide_inverted(value, polarity)
            update["border_mean_epoch1"] = value
            log.info("polarity: border mean of P after epoch 1 = %.3f -> inverted=%s (polarity=%s)",
                     value, update["inverted"], polarity)
        elif polarity == "auto" and decide_inverted(value) != meta.get("inverted"):
            log.warning("polarity: border mean %.3f after epoch %d disagrees with the epoch-1 decision "
                        "(inverted=%s); keeping the epoch-1 decision", value, epoch, meta.get("inverted"))
        return update

    return on_epoch_end
