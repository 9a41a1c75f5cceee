"""C2AM contrastive losses (docs/method.md §3), over all N x N pairs of a batch.

s(a, b) = clamp(cos(a, b), 5e-4, 0.9995)
L_neg(V_b, V_f) = mean_ij -log(1 - s(v_b^i, v_f^j))
L_pos(V)        = mean_ij w_ij * (-log s(v^i, v^j)),  w_ij = exp(-alpha * (r_ij - 1))
r_ij = 0-based rank of s(v^i, v^j) in row i sorted descending (self pair forced to rank 0); no gradient.
L = L_pos(V_f) + L_neg(V_b, V_f) + L_pos(V_b)   -- symmetric under P <-> 1 - P (v_f <-> v_b).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from c2am.distributed import gather_with_grad

SIM_MIN = 5e-4
SIM_MAX = 0.9995


def similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Clamped cosine similarity of every row of ``a`` (N x C) with every row of ``b`` (M x C): N x M."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected N x C and M x C, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = F.normalize(a.float(), dim=1)
    b = F.normalize(b.float(), dim=1)
    return (a @ b.t()).clamp(SIM_MIN, SIM_MAX)


@torch.no_grad()
def row_ranks(sim: torch.Tensor) -> torch.Tensor:
    """0-based rank of each entry within its row, descending; the diagonal is rank 0 by construction.

    Ties keep column order (stable sort), so ranks are a permutation of 0..N-1 in every row.
    """
    n = sim.shape[0]
    if sim.ndim != 2 or sim.shape[1] != n:
        raise ValueError(f"row_ranks expects a square matrix, got {tuple(sim.shape)}")
    s = sim.detach().clone()
    s.fill_diagonal_(float("inf"))  # self first, even when another pair ties at the clamp ceiling
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=sim.device).expand(n, n).contiguous())
    return ranks


@torch.no_grad()
def rank_weights(sim: torch.Tensor, alpha: float) -> torch.Tensor:
    """w_ij = exp(-alpha (r_ij - 1)): self pair exp(alpha), nearest neighbour 1, then decaying."""
    return torch.exp(-float(alpha) * (row_ranks(sim).to(sim.dtype) - 1.0))


def positive_loss(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """Rank-weighted mean over all N^2 pairs of -log s(v^i, v^j)."""
    sim = similarity_matrix(v, v)
    return (rank_weights(sim, alpha) * -torch.log(sim)).mean()


def negative_loss(v_b: torch.Tensor, v_f: torch.Tensor) -> torch.Tensor:
    """Mean over all N^2 (background i, foreground j) pairs of -log(1 - s(v_b^i, v_f^j))."""
    return -torch.log1p(-similarity_matrix(v_b, v_f)).mean()


def c2am_loss(v_f: torch.Tensor, v_b: torch.Tensor, alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its three terms (detached) as {"pos_fg", "neg", "pos_bg"}; computed in float32.

    Autocast is switched off here: in float16 the spacing of numbers just below 1 (4.9e-4) is about the clamp
    margin, so the similarities, their ranks and -log(1 - s) would be quantised away under AMP.
    """
    with torch.autocast(v_f.device.type, enabled=False):
        v_f, v_b = v_f.float(), v_b.float()
        pos_fg = positive_loss(v_f, alpha)
        neg = negative_loss(v_b, v_f)
        pos_bg = positive_loss(v_b, alpha)
    parts = {"pos_fg": pos_fg.detach(), "neg": neg.detach(), "pos_bg": pos_bg.detach()}
    return pos_fg + neg + pos_bg, parts


def gather_pooled(v_f: torch.Tensor, v_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v_f, v_b of the global batch (all processes, rank order), gradients back to the local rows.

    One collective for both; the identity in a single process.
    """
    both = gather_with_grad(torch.cat([v_f.float(), v_b.float()], dim=1))
    return both.split(v_f.shape[1], dim=1)


def c2am_step(alpha: float):
    """The training step of :func:`c2am.training.fit`: the loss over every pair of the global batch."""

    def step_fn(model, batch: torch.Tensor) -> torch.Tensor:
        v_f, v_b, _ = model(batch)
        loss, _ = c2am_loss(*gather_pooled(v_f, v_b), alpha)
        return loss

    return step_fn
