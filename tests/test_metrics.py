"""Metrics against small hand-computed cases."""

import math

import numpy as np
import pytest

from c2am.metrics import (
    BinaryAUC,
    BinaryIoU,
    ConfusionMatrix,
    average_precision,
    box_iou,
    f1_multilabel,
    foreground_iou,
    largest_component_box,
    mean_average_precision,
)

# GT with two ignored pixels; the prediction has one uncertain (255) pixel on GT class 1; class 3 appears nowhere.
GT = np.array([[0, 0, 1, 1], [0, 1, 1, 255], [2, 2, 0, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [0, 1, 255, 2], [2, 0, 0, 1]], dtype=np.uint8)


def test_confusion_matrix_hand_case():
    cm = ConfusionMatrix(4).update(GT, PRED)
    expected = np.array([[3, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm.matrix, expected)
    np.testing.assert_array_equal(cm.uncertain, [0, 1, 0, 0])
    assert cm.total == 10  # 12 pixels minus 2 ignored
    iou = cm.iou()
    # class 0: TP 3, GT 4, pred 4 -> 3/5; class 1: TP 3, GT 4 (incl. the uncertain miss), pred 4 -> 3/5
    # class 2: TP 1, GT 2, pred 1 -> 1/2; class 3 absent -> NaN
    np.testing.assert_allclose(iou[:3], [0.6, 0.6, 0.5])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((0.6 + 0.6 + 0.5) / 3)


def test_confusion_matrix_incremental_and_merge_equal_one_pass():
    whole = ConfusionMatrix(4).update(GT, PRED)
    inc = ConfusionMatrix(4).update(GT[:1], PRED[:1]).update(GT[1:], PRED[1:])
    np.testing.assert_array_equal(inc.counts, whole.counts)
    a = ConfusionMatrix(4).update(GT[:2], PRED[:2])
    b = ConfusionMatrix(4).update(GT[2:], PRED[2:])
    np.testing.assert_array_equal(a.merge(b).counts, whole.counts)
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(3))


def test_confusion_matrix_rejects_bad_values_and_shapes():
    with pytest.raises(ValueError, match="prediction holds value 7"):
        ConfusionMatrix(4).update(GT, np.full_like(PRED, 7))
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(4).update(GT, PRED[:2])


def test_miou_nan_when_nothing_scored():
    cm = ConfusionMatrix(3).update(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8))
    assert cm.total == 0 and math.isnan(cm.miou())


def test_binary_auc_hand_cases():
    auc = BinaryAUC().update(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool))
    assert auc.compute() == pytest.approx(0.75)
    # 4 bins; pos in bins {0, 2}, neg in bins {2, 1}: pairs lose, lose, tie (1/2), win -> 1.5 / 4
    tie = BinaryAUC(bins=4).update(np.array([0.1, 0.6, 0.6, 0.3]), np.array([1, 1, 0, 0], bool))
    assert tie.compute() == pytest.approx(0.375)


def test_binary_auc_exact_for_quantised_scores_and_streaming():
    rng = np.random.default_rng(0)
    bins = 16
    scores = rng.integers(0, bins, size=300) / bins
    labels = rng.random(300) < 0.3
    pos, neg = scores[labels], scores[~labels]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    a = BinaryAUC(bins).update(scores[:100], labels[:100])
    b = BinaryAUC(bins).update(scores[100:], labels[100:])
    assert a.merge(b).compute() == pytest.approx(brute, abs=1e-12)


def test_binary_auc_mask_ignores_255_and_degenerate_cases():
    scores = np.array([[0.9, 0.1], [0.2, 0.95]])
    gt = np.array([[1, 0], [255, 3]], np.uint8)  # the 255 pixel (low score) would lower the AUC if counted as bg
    assert BinaryAUC().update_from_mask(scores, gt).compute() == pytest.approx(1.0)
    assert math.isnan(BinaryAUC().update(scores, np.ones((2, 2), bool)).compute())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BinaryAUC().update(np.array([1.5]), np.array([True]))


def test_binary_auc_iou_at_threshold():
    auc = BinaryAUC().update(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool))
    assert auc.iou_at(0.3) == pytest.approx(2 / 3)  # fg {0.4, 0.35, 0.8}: TP 2, FP 1, FN 0
    assert auc.iou_at(0.5) == pytest.approx(1 / 2)  # fg {0.8}: TP 1, FN 1


def test_binary_iou_ignores_gt_255():
    pred = np.array([[1, 1, 0], [1, 1, 1]], bool)
    gt = np.array([[1, 0, 0], [255, 2, 0]], np.uint8)
    # valid predicted fg: (0,0) (0,1) (1,1) (1,2); GT fg: (0,0) (1,1) -> TP 2, FP 2, FN 0
    assert foreground_iou(pred, gt) == pytest.approx(0.5)
    s = BinaryIoU().update(pred[:1], gt[:1]).update(pred[1:], gt[1:])
    assert (s.tp, s.fp, s.fn) == (2, 2, 0)
    assert math.isnan(foreground_iou(np.zeros((2, 2), bool), np.zeros((2, 2), np.uint8)))


def test_box_iou_inclusive_pixels():
    assert box_iou([0, 0, 1, 1], [1, 1, 2, 2]) == pytest.approx(1 / 7)  # areas 4 and 4, overlap 1 pixel
    assert box_iou([3, 5, 3, 5], [3, 5, 3, 5]) == 1.0  # one pixel is a box of area 1
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0


def test_largest_component_box_uses_8_connectivity():
    mask = np.zeros((4, 7), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # diagonal chain: one region of 3 only under 8-connectivity
    mask[0, 4:6] = True  # region of 2
    assert largest_component_box(mask) == [0, 0, 2, 2]
    assert largest_component_box(np.zeros((3, 3), bool)) is None


def test_average_precision_hand_cases():
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    # a tie is one threshold, whatever the input order
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert average_precision([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_mean_average_precision_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.7, 0.3, 0.5], [0.6, 0.4, 0.5]])
    targets = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert mean_average_precision(scores, targets) == pytest.approx(((1 + 2 / 3) / 2 + 1 / 4) / 2)


def test_f1_multilabel_macro():
    scores = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.3], [0.4, 0.5, 0.2]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    # class 0: TP 1 FP 1 FN 1 -> 1/2; class 1 (0.5 >= threshold counts): TP 2 -> 1; class 2 has no positives
    assert f1_multilabel(scores, targets) == pytest.approx((0.5 + 1.0) / 2)
    assert f1_multilabel(scores, targets, threshold=0.55) == pytest.approx((0.5 + 2 / 3) / 2)


def test_distractor_share_hand_case():
    from c2am.metrics import DistractorShare

    # 6 distractor pixels over two images of different shapes: labelled 3 (class), 0 (background), 255 (uncertain)
    a = DistractorShare().update(np.array([[3, 0, 255, 1]]), np.array([[1, 1, 1, 0]], bool))  # 1 of 3 (the 1 is off)
    b = DistractorShare().update(np.array([[2], [2], [0]]), np.array([[1], [1], [1]], bool))  # 2 of 3
    assert a.merge(b).labelled == 3 and a.total == 6 and a.compute() == pytest.approx(0.5)
    assert np.isnan(DistractorShare().compute())
    with pytest.raises(ValueError, match="shape"):
        DistractorShare().update(np.zeros((2, 3)), np.zeros((3, 2), bool))


def test_largest_region_is_by_pixel_count_not_contour_area():
    import cv2

    """A ring (24 pixels around a 7x7 extent, contour area 49) beside a solid 5x5 square (25 pixels): the box is
    the square's, where the official largest-contour-area rule would take the ring; on two image shapes."""
    import cv2

    for shape, ring_at, square_at in (((12, 20), (2, 1), (4, 12)), ((30, 14), (20, 6), (3, 2))):
        mask = np.zeros(shape, bool)
        (ry, rx), (sy, sx) = ring_at, square_at
        mask[ry:ry + 7, rx:rx + 7] = True
        mask[ry + 1:ry + 6, rx + 1:rx + 6] = False  # hollow: 49 - 25 = 24 pixels
        mask[sy:sy + 5, sx:sx + 5] = True
        assert mask.sum() == 24 + 25
        assert largest_component_box(mask) == [sx, sy, sx + 4, sy + 4]
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))  # the official rule: the ring
        assert [x, y, x + w - 1, y + h - 1] == [rx, ry, rx + 6, ry + 6]
        mask[ry:ry + 7, rx:rx + 7] = True  # the ring filled: 49 pixels, now the largest region
        assert largest_component_box(mask) == [rx, ry, rx + 6, ry + 6]
