"""Dense CRF wrappers on synthetic images whose right answer is known."""

import numpy as np
import pytest

from c2am.crf import crf_from_labels, crf_two_label

RED, GREEN, BLUE = (220, 30, 30), (30, 220, 30), (30, 30, 220)


def halves_image() -> tuple[np.ndarray, np.ndarray]:
    """40x40: left half red (foreground), right half blue."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = RED
    image[:, 20:] = BLUE
    fg = np.zeros((40, 40), bool)
    fg[:, :20] = True
    return image, fg


def test_two_label_crf_fixes_noise_near_the_edge():
    image, truth = halves_image()
    rng = np.random.default_rng(0)
    flip = np.zeros_like(truth)
    flip[:, 14:26] = rng.random((40, 12)) < 0.3  # wrong labels on both sides of the colour edge
    noisy = truth ^ flip
    assert (noisy == truth).mean() < 0.95
    out = crf_two_label(image, noisy)
    assert out.dtype == bool and out.shape == truth.shape
    assert (out == truth).mean() > 0.99


def test_consistent_labels_stay_unchanged():
    image, truth = halves_image()
    np.testing.assert_array_equal(crf_two_label(image, truth), truth)
    image[:20, :20] = GREEN
    labels = np.where(truth, 1, 2).astype(np.uint8)
    labels[:20, :20] = 3
    out = crf_from_labels(image, labels, 21)  # 21 labels as on VOC, most of them unused
    np.testing.assert_array_equal(out, labels)


def test_unsure_255_pixels_are_filled_from_neighbours():
    image, truth = halves_image()
    image[:20, :20] = GREEN
    labels = np.where(truth, 1, 2).astype(np.uint8)
    labels[:20, :20] = 0
    expected = labels.copy()
    labels[5:15, 15:25] = 255  # a hole across two colour edges
    np.testing.assert_array_equal(crf_from_labels(image, labels, 3), expected)


def test_bad_inputs_raise():
    image, truth = halves_image()
    with pytest.raises(ValueError, match="boolean"):
        crf_two_label(image, truth.astype(np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        crf_two_label(image.astype(np.float32), truth)
    with pytest.raises(ValueError, match="value 5"):
        crf_from_labels(image, np.full((40, 40), 5, np.uint8), 3)
    with pytest.raises(ValueError, match="shape"):
        crf_two_label(image, truth[:10])
