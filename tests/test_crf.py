"""Dense CRF wrappers on synthetic images whose right answer is known.

Every image is non-square, in two sizes of opposite aspect (wide and tall), and every right answer is a
left / right split off the image's centre: a width / height swap anywhere in a wrapper (the CRF's grid, the
reshape of its output, the order of the pairwise image) moves or scrambles the split, and the checks fail.
"""

import numpy as np
import pytest

from c2am.crf import crf_from_labels, crf_from_probs, crf_present_labels, crf_two_label, mark_disagreement
from c2am.io import IGNORE

RED, GREEN, BLUE = (220, 30, 30), (30, 220, 30), (30, 30, 220)
# (height, width, column of the colour edge): a wide image split left of its centre, a tall one likewise.
SIZES = [(30, 56, 20), (52, 28, 11)]
sizes = pytest.mark.parametrize("h, w, edge", SIZES, ids=["wide", "tall"])


def split_image(h: int, w: int, edge: int) -> tuple[np.ndarray, np.ndarray]:
    """h x w: columns left of ``edge`` red (the foreground), the rest blue."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :edge] = RED
    image[:, edge:] = BLUE
    fg = np.zeros((h, w), bool)
    fg[:, :edge] = True
    return image, fg


@sizes
def test_two_label_crf_fixes_noise_near_the_edge(h, w, edge):
    image, truth = split_image(h, w, edge)
    rng = np.random.default_rng(0)
    flip = np.zeros_like(truth)
    flip[:, edge - 6:edge + 6] = rng.random((h, 12)) < 0.3  # wrong labels on both sides of the colour edge
    noisy = truth ^ flip
    assert (noisy == truth).mean() < 0.95
    out = crf_two_label(image, noisy)
    assert out.dtype == bool and out.shape == (h, w)
    assert (out == truth).mean() > 0.99
    # The foreground stays on the left, up to the edge column, in every row.
    assert out[:, :edge - 1].all() and not out[:, edge + 1:].any()


@sizes
def test_consistent_labels_stay_unchanged(h, w, edge):
    image, truth = split_image(h, w, edge)
    np.testing.assert_array_equal(crf_two_label(image, truth), truth)
    image[:h // 2, :edge] = GREEN  # top-left block: a third label
    labels = np.where(truth, 1, 2).astype(np.uint8)
    labels[:h // 2, :edge] = 3
    out = crf_from_labels(image, labels, 21)  # 21 labels as on VOC, most of them unused
    assert out.shape == (h, w)
    np.testing.assert_array_equal(out, labels)


@sizes
def test_unsure_255_pixels_are_filled_from_neighbours(h, w, edge):
    image, truth = split_image(h, w, edge)
    image[:h // 2, :edge] = GREEN
    labels = np.where(truth, 1, 2).astype(np.uint8)
    labels[:h // 2, :edge] = 0
    expected = labels.copy()
    labels[h // 2 - 5:h // 2 + 5, edge - 5:edge + 5] = IGNORE  # a hole across two colour edges
    np.testing.assert_array_equal(crf_from_labels(image, labels, 3), expected)


@sizes
def test_softmax_crf_keeps_each_class_on_its_side_of_the_colour_edge(h, w, edge):
    image, left = split_image(h, w, edge)
    truth = np.where(left, 1, 2)
    # Three classes; the network is fairly sure of the right class (0.6 vs 0.3 vs 0.1) away from the edge, and
    # wrong (0.5 for the other side's class vs 0.4) in a band of 4 columns on each side of it.
    probs = np.empty((3, h, w), np.float32)
    probs[0] = 0.1
    probs[1] = np.where(left, 0.6, 0.3)
    probs[2] = np.where(left, 0.3, 0.6)
    band = slice(edge - 4, edge + 4)
    probs[1, :, band] = np.where(left[:, band], 0.4, 0.5)
    probs[2, :, band] = np.where(left[:, band], 0.5, 0.4)
    assert (probs.argmax(0) == truth).mean() < 0.95 and np.allclose(probs.sum(0), 1)
    out = crf_from_probs(image, probs)
    assert out.dtype == np.int64 and out.shape == (h, w)
    np.testing.assert_array_equal(out, truth)
    # Confident probabilities that agree with the colours come back as their argmax.
    np.testing.assert_array_equal(crf_from_probs(image, np.stack([probs[0], left * 0.8 + 0.05, ~left * 0.8 + 0.05])),
                                  truth)


def test_softmax_crf_refuses_transposed_or_bad_probabilities():
    h, w, edge = SIZES[0]
    image, left = split_image(h, w, edge)
    probs = np.stack([~left, left]).astype(np.float32)
    with pytest.raises(ValueError, match="probs must be"):
        crf_from_probs(image, probs.transpose(0, 2, 1))  # C x W x H
    with pytest.raises(ValueError, match="probs must be"):
        crf_from_probs(image, probs[:1])
    with pytest.raises(ValueError, match="softmax_scale"):
        crf_from_probs(image, probs, softmax_scale=0.0)


@sizes
def test_present_labels_crf_fills_a_hole_in_the_original_class_indices(h, w, edge):
    image, left = split_image(h, w, edge)
    image[:h // 3] = GREEN  # a background strip across the top
    expected = np.where(left, 5, 12).astype(np.uint8)  # VOC indices, far apart: renumbered to 1, 2 inside
    expected[:h // 3] = 0
    labels = expected.copy()
    labels[h // 2 - 6:h // 2 + 6, edge - 6:edge + 6] = IGNORE  # unsure across the left / right edge
    labels[h // 3 - 2:h // 3 + 2, :] = IGNORE  # and along the background edge
    out = crf_present_labels(image, labels, iters=10)
    assert out.dtype == np.uint8 and out.shape == (h, w)
    np.testing.assert_array_equal(out, expected)
    assert set(np.unique(out)) == {0, 5, 12}  # never a class the image does not have


def test_present_labels_with_nothing_to_decide_come_back_unchanged():
    h, w, edge = SIZES[1]
    image, _ = split_image(h, w, edge)
    labels = np.zeros((h, w), np.uint8)
    labels[:, edge:] = IGNORE
    np.testing.assert_array_equal(crf_present_labels(image, labels), np.zeros((h, w), np.uint8))


def test_mark_disagreement_ignores_the_changed_pixels():
    h, w, edge = SIZES[0]
    reference = np.where(split_image(h, w, edge)[1], 1, 2).astype(np.uint8)
    refined = reference.copy()
    refined[3, edge + 2] = 1
    out = mark_disagreement(refined, reference)
    expected = reference.copy()
    expected[3, edge + 2] = IGNORE
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="shapes differ"):
        mark_disagreement(refined.T, reference)


def test_bad_inputs_raise():
    h, w, edge = SIZES[0]
    image, truth = split_image(h, w, edge)
    with pytest.raises(ValueError, match="boolean"):
        crf_two_label(image, truth.astype(np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        crf_two_label(image.astype(np.float32), truth)
    with pytest.raises(ValueError, match="value 5"):
        crf_from_labels(image, np.full((h, w), 5, np.uint8), 3)
    with pytest.raises(ValueError, match="shape"):
        crf_two_label(image, truth[:10])
    with pytest.raises(ValueError, match="shape"):
        crf_two_label(image, truth.T)  # W x H labels on an H x W image
