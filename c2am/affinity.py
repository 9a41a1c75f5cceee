"""Inter-pixel affinities and the random walk over them (docs/method.md §5b; AffinityNet, Ahn & Kwak 2018).

Training labels: the pseudo labels of a chosen variant with a *neutral band* cut along every boundary: a pixel
within ``band`` pixels of a pixel of another label (IGNORE included) becomes IGNORE and trains nothing, so the
boundaries the CAMs blur do not teach wrong affinities. Pairs are the grid cells (the network's stride-4 features)
closer than ``radius`` cells; a pair of two labelled cells is a positive of background (both 0), a positive of
foreground (both the same class) or a negative (labels differ).

Affinity of two cells: ``a = exp(-mean_d |f_i - f_j|)`` over the D feature channels, so ``-log a`` is the L1
feature distance itself. Loss (AffinityNet's balance): ``L = L_bg/4 + L_fg/4 + L_neg/2``, with ``L_bg``, ``L_fg``
the means of ``-log a`` over the positive pairs of each kind and ``L_neg`` the mean of ``-log(1 - a)`` over the
negatives; an empty kind adds 0.

Random walk: on the radius graph of one image (every cell to each cell closer than ``radius``, itself included),
``W = a ** beta`` and the row-normalised ``T = D^-1 W``; the score maps ``v`` (B and the CAMs, at the grid) become
``T^t v`` (t steps: every cell takes the affinity-weighted mean of its neighbours' scores, t times). ``T`` is a
sparse CSR matrix (N x N with about pi r^2 non-zeros per row), never dense.
"""

from __future__ import annotations

import functools
import warnings

import cv2
import numpy as np
import torch

from c2am.io import IGNORE


def neutral_band(labels: np.ndarray, width: int) -> np.ndarray:
    """``labels`` (H x W uint8) with IGNORE on every pixel within ``width`` pixels (Chebyshev) of a pixel of
    another label; ``width`` 0 returns them unchanged. The image border is not a boundary."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be H x W, got shape {labels.shape}")
    if width < 0:
        raise ValueError(f"band width must be >= 0, got {width}")
    if width == 0:
        return labels.astype(np.uint8)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    keep = np.zeros(labels.shape, bool)
    for value in np.unique(labels):
        if value == IGNORE:
            continue
        # cv2.erode pads with the maximum, so a region touching the border is not eroded from it.
        keep |= cv2.erode((labels == value).astype(np.uint8), kernel).astype(bool)
    return np.where(keep, labels, IGNORE).astype(np.uint8)


def half_disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) with 0 < dy^2 + dx^2 < radius^2, one of each +-pair (dy > 0, or dy == 0 and dx > 0):
    every unordered pair of cells closer than ``radius`` once."""
    if radius < 2:
        raise ValueError(f"radius must be >= 2 (cells closer than it are pairs), got {radius}")
    return [(dy, dx) for dy in range(radius) for dx in range(-radius + 1, radius)
            if 0 < dy * dy + dx * dx < radius * radius and (dy > 0 or dx > 0)]


def shifted_pair(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``(x[p], x[p + (dy, dx)])`` over every cell p whose partner is inside the last two dims."""
    h, w = x.shape[-2:]
    left, right = max(0, -dx), max(0, dx)
    return x[..., : h - dy, left : w - right], x[..., dy:, left + dx : w - right + dx]


def feature_distance(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the channel dim (dim -3): ``-log`` of the affinity."""
    return (fa - fb).abs().mean(dim=-3)


def affinity_loss(features: torch.Tensor, labels: torch.Tensor, radius: int) -> torch.Tensor:
    """The balanced affinity loss (module docstring) of B x D x h x w features against B x h x w grid labels
    (0 = background, classes >= 1, IGNORE = neutral), over the pairs closer than ``radius``."""
    if features.dim() != 4 or labels.shape != (features.shape[0], *features.shape[-2:]):
        raise ValueError(f"features B x D x h x w {tuple(features.shape)} and labels B x h x w "
                         f"{tuple(labels.shape)} do not match")
    features = features.float()
    sums = torch.zeros(3, device=features.device)
    counts = torch.zeros(3, device=features.device)
    for dy, dx in half_disk_offsets(radius):
        fa, fb = shifted_pair(features, dy, dx)
        la, lb = shifted_pair(labels, dy, dx)
        dist = feature_distance(fa, fb)
        valid = (la != IGNORE) & (lb != IGNORE)
        same = valid & (la == lb)
        kinds = (same & (la == 0), same & (la > 0), valid & (la != lb))
        # -log a = dist; -log(1 - a) = -log(1 - exp(-dist)), clamped so that a = 1 stays finite.
        terms = (dist, dist, -torch.log(-torch.expm1(-dist.clamp(min=1e-4))))
        for k, (mask, term) in enumerate(zip(kinds, terms)):
            sums[k] = sums[k] + term[mask].sum()
            counts[k] = counts[k] + mask.sum()
    means = sums / counts.clamp(min=1)
    return means[0] / 4 + means[1] / 4 + means[2] / 2


def grid_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x H x W labels -> B x h x w at the feature grid (nearest: a label is never blended into another)."""
    small = torch.nn.functional.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return small[:, 0].long()


def radius_graph(h: int, w: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges (rows, cols) of an h x w grid (cell index y * w + x): each cell to itself, then per offset
    of :func:`half_disk_offsets` its pairs in both directions (the order :func:`edge_weights` follows)."""
    rows, cols = [np.arange(h * w)], [np.arange(h * w)]
    index = np.arange(h * w).reshape(h, w)
    for dy, dx in half_disk_offsets(radius):
        a, b = (v.reshape(-1) for v in shifted_pair(index, dy, dx))
        rows += [a, b]
        cols += [b, a]
    return np.concatenate(rows), np.concatenate(cols)


def edge_weights(features: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """``a^beta = exp(-beta d)`` on the edges of :func:`radius_graph`, in its order, from D x h x w features. The
    distances come offset by offset from shifted views, so memory stays at a few feature maps, not D per edge."""
    features = features.float()
    _, h, w = features.shape
    parts = [torch.ones(h * w, device=features.device)]
    for dy, dx in half_disk_offsets(radius):
        weight = torch.exp(-beta * feature_distance(*shifted_pair(features, dy, dx))).reshape(-1)
        parts += [weight, weight]
    return torch.cat(parts)


@functools.lru_cache(maxsize=8)
def _csr_structure(h: int, w: int, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, order, crow, cols[order]) of the radius graph: ``order`` puts the edges row by row, as CSR wants.
    It depends on the grid only, so images of one size share it (the arrays are read-only)."""
    rows, cols = radius_graph(h, w, radius)
    order = np.argsort(rows * (h * w) + cols, kind="stable")
    crow = np.zeros(h * w + 1, dtype=np.int64)
    crow[1:] = np.cumsum(np.bincount(rows, minlength=h * w))
    arrays = (rows, order, crow, cols[order])
    for a in arrays:
        a.flags.writeable = False
    return arrays


def transition_matrix(features: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """Sparse (CSR) row-stochastic N x N ``T = D^-1 a^beta`` on the radius graph of D x h x w features."""
    if features.dim() != 3:
        raise ValueError(f"features must be D x h x w, got shape {tuple(features.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    _, h, w = features.shape
    device = features.device
    rows, order, crow, cols = (torch.as_tensor(a.copy(), device=device) for a in _csr_structure(h, w, radius))
    weight = edge_weights(features, radius, beta)
    degree = torch.zeros(h * w, device=device).index_add_(0, rows, weight)
    values = (weight / degree[rows])[order]
    with warnings.catch_warnings():  # torch calls its CSR support "beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, (h * w, h * w), check_invariants=False)


def random_walk(transition: torch.Tensor, scores: torch.Tensor, iterations: int) -> torch.Tensor:
    """``T^t v`` for K x h x w score maps ``v`` (each map a column of v), ``t = iterations`` sparse products."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    k, h, w = scores.shape
    if transition.shape != (h * w, h * w):
        raise ValueError(f"transition {tuple(transition.shape)} does not fit {h} x {w} score maps")
    v = scores.float().reshape(k, -1).T.contiguous()
    for _ in range(iterations):
        v = transition @ v
    return v.T.reshape(k, h, w)


def walk_scores(features: torch.Tensor, scores: np.ndarray, radius: int, beta: float,
                iterations: int) -> np.ndarray:
    """K x H x W score maps (B and the CAMs) after the random walk on one image's D x h x w features: averaged
    onto the feature grid, walked (:func:`random_walk`), upsampled bilinearly back to H x W; float32."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 3:
        raise ValueError(f"scores must be K x H x W, got shape {scores.shape}")
    h, w = features.shape[-2:]
    v = torch.from_numpy(np.ascontiguousarray(scores)).to(features.device)[None]
    grid = torch.nn.functional.adaptive_avg_pool2d(v, (h, w))[0]
    walked = random_walk(transition_matrix(features, radius, beta), grid, iterations)
    full = torch.nn.functional.interpolate(walked[None], size=scores.shape[1:], mode="bilinear", align_corners=False)
    return full[0].cpu().numpy()
