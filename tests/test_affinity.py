"""The affinity labels, loss and random walk (c2am.affinity) against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from c2am.affinity import (
    affinity_loss,
    grid_labels,
    half_disk_offsets,
    neutral_band,
    radius_graph,
    random_walk,
    transition_matrix,
    walk_scores,
)
from c2am.io import IGNORE


def test_half_disk_offsets_by_hand():
    assert half_disk_offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    three = half_disk_offsets(3)
    assert len(three) == 12  # the 25 lattice points with d^2 < 9, minus the centre, halved
    assert (2, 2) in three and (0, 3) not in three and (2, -2) in three
    with pytest.raises(ValueError):
        half_disk_offsets(1)


@pytest.mark.parametrize("shape", [(6, 9), (11, 5)])
def test_neutral_band_cuts_along_boundaries_only(shape):
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    labels[:, w // 2:] = 2  # a vertical boundary between columns w//2 - 1 and w//2
    out = neutral_band(labels, 1)
    expected = labels.copy()
    expected[:, w // 2 - 1: w // 2 + 1] = IGNORE  # one pixel either side
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(neutral_band(labels, 0), labels)


def test_neutral_band_treats_ignore_as_another_label():
    labels = np.zeros((5, 7), np.uint8)
    labels[2, 3] = IGNORE
    out = neutral_band(labels, 1)
    assert (out[1:4, 2:5] == IGNORE).all()
    assert (out[0] == 0).all() and (out[:, 0] == 0).all()  # the image border is not a boundary


def test_grid_labels_picks_labels_never_blends():
    labels = torch.tensor([[0, 0, 3, 3], [0, 0, 3, 3], [1, 1, 255, 255], [1, 1, 255, 255]])[None]
    np.testing.assert_array_equal(grid_labels(labels, (2, 2))[0].numpy(), [[0, 3], [1, 255]])


def test_affinity_loss_hand_computed():
    # Three cells in a row, one channel: f = 0, 0.5, 2.5; labels bg, bg, class 1. Radius 2 pairs neighbours only.
    features = torch.tensor([0.0, 0.5, 2.5]).view(1, 1, 1, 3)
    labels = torch.tensor([[[0, 0, 1]]])
    # L_bg = d01 = 0.5; no fg-fg pair; L_neg = -log(1 - exp(-2)) for the pair (1, 2).
    expected = 0.5 / 4 + 0 / 4 + -math.log(1 - math.exp(-2.0)) / 2
    assert affinity_loss(features, labels, 2).item() == pytest.approx(expected, rel=1e-5)
    # A neutral cell trains nothing: only the bg pair (0, 1) is left.
    neutral = torch.tensor([[[0, 0, IGNORE]]])
    assert affinity_loss(features, neutral, 2).item() == pytest.approx(0.5 / 4, rel=1e-5)


def test_affinity_loss_counts_vertical_and_diagonal_pairs():
    # 2 x 2 cells, all class 2, radius 2: pairs (0,1) (2,3) horizontal, (0,2) (1,3) vertical, (1,2) (0,3) diagonal.
    features = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    labels = torch.full((1, 2, 2), 2)
    distances = [1, 2, 2, 3, 1, 4]  # |0-1| |2-4| |0-2| |1-4| |1-2| |0-4|
    assert affinity_loss(features, labels, 2).item() == pytest.approx(np.mean(distances) / 4, rel=1e-5)


def test_radius_graph_edges_both_ways_with_self_loops():
    rows, cols = radius_graph(2, 3, 2)
    edges = set(zip(rows.tolist(), cols.tolist()))
    assert {(i, i) for i in range(6)} <= edges
    assert (0, 1) in edges and (1, 0) in edges and (0, 4) in edges and (4, 0) in edges  # 4 = (1, 1): diagonal
    assert (0, 2) not in edges  # two cells apart: d^2 = 4, not < 4
    assert len(edges) == len(rows)  # no edge twice


def test_random_walk_hand_computed():
    # Cells 0, 1, 2 in a row, features 0, 0, ln 2: a01 = 1, a12 = a02 = 1/2; radius 3 links 0 and 2 too.
    features = torch.tensor([0.0, 0.0, math.log(2.0)]).view(1, 1, 3)
    v = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 3)
    # beta 1: W = [[1, 1, .5], [1, 1, .5], [.5, .5, 1]], row sums 2.5, 2.5, 2.
    t = transition_matrix(features, radius=3, beta=1.0)
    np.testing.assert_allclose(random_walk(t, v, 1).view(-1).numpy(), [0.4, 0.4, 0.25], rtol=1e-6)
    # T (0.4, 0.4, 0.25): row 0 (0.4 + 0.4 + 0.125) / 2.5, row 2 (0.2 + 0.2 + 0.25) / 2.
    np.testing.assert_allclose(random_walk(t, v, 2).view(-1).numpy(), [0.37, 0.37, 0.325], rtol=1e-6)
    # beta 2: W = a^2 = [[1, 1, .25], ...], row sums 2.25, 2.25, 1.5.
    t2 = transition_matrix(features, radius=3, beta=2.0)
    np.testing.assert_allclose(random_walk(t2, v, 1).view(-1).numpy(), [1 / 2.25, 1 / 2.25, 0.25 / 1.5], rtol=1e-6)
    # radius 2 drops the pair (0, 2): W = [[1, 1, 0], [1, 1, .5], [0, .5, 1]].
    t3 = transition_matrix(features, radius=2, beta=1.0)
    np.testing.assert_allclose(random_walk(t3, v, 1).view(-1).numpy(), [0.5, 0.4, 0.0], atol=1e-7)
    np.testing.assert_array_equal(random_walk(t, v, 0).numpy(), v.numpy())


def dense_walk(features: np.ndarray, scores: np.ndarray, radius: int, beta: float, t: int) -> np.ndarray:
    """The reference: an explicit N x N transition matrix from a double loop over cell pairs."""
    d, h, w = features.shape
    cells = [(y, x) for y in range(h) for x in range(w)]
    dense = np.zeros((h * w, h * w))
    for i, (yi, xi) in enumerate(cells):
        for j, (yj, xj) in enumerate(cells):
            if (yi - yj) ** 2 + (xi - xj) ** 2 < radius ** 2:
                dense[i, j] = np.exp(-np.abs(features[:, yi, xi] - features[:, yj, xj]).mean()) ** beta
    dense /= dense.sum(axis=1, keepdims=True)
    v = scores.reshape(scores.shape[0], -1).T
    return (np.linalg.matrix_power(dense, t) @ v).T.reshape(scores.shape)


@pytest.mark.parametrize("shape", [(5, 7), (8, 3)])
def test_sparse_walk_equals_dense_reference(shape):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, *shape)).astype(np.float32)
    scores = rng.random((3, *shape)).astype(np.float32)
    t = transition_matrix(torch.from_numpy(features), radius=3, beta=4.0)
    walked = random_walk(t, torch.from_numpy(scores), 5).numpy()
    np.testing.assert_allclose(walked, dense_walk(features, scores, 3, 4.0, 5), rtol=1e-4, atol=1e-6)


def test_transition_rows_sum_to_one():
    t = transition_matrix(torch.randn(8, 6, 9), radius=4, beta=8.0)
    np.testing.assert_allclose((t @ torch.ones(6 * 9, 1)).numpy(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("size,grid", [((37, 50), (10, 13)), ((64, 29), (16, 8))])
def test_walk_scores_keeps_the_image_size(size, grid):
    scores = np.random.default_rng(1).random((2, *size)).astype(np.float32)
    out = walk_scores(torch.randn(4, *grid), scores, radius=3, beta=2.0, iterations=3)
    assert out.shape == scores.shape and out.dtype == np.float32
    # A walk averages: constant maps stay constant.
    flat = walk_scores(torch.randn(4, *grid), np.full((1, *size), 0.3, np.float32), 3, 2.0, 4)
    np.testing.assert_allclose(flat, 0.3, rtol=1e-5)
