"""WSOL metrics against hand-computed cases: score-map normalisation and 8-bit thresholds, contour boxes,
BoxAcc / MaxBoxAcc / MaxBoxAccV2 (oracle and held-out thresholds), the regressor's BoxAccV2, GT-known, top-k."""

import numpy as np
import pytest

from c2am.wsol_metrics import (
    best_threshold_index,
    binarize,
    box_acc_v2,
    box_accuracy,
    box_ious,
    contour_boxes,
    gt_known_loc,
    iou_curve,
    localization_scores,
    max_box_acc,
    normalize_scoremap,
    topk_correct,
    transfer_thresholds,
)


def test_normalisation_and_the_8_bit_threshold():
    s = normalize_scoremap(np.array([[2.0, 4.0], [6.0, 10.0]]))
    assert s.tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert normalize_scoremap(np.full((2, 2), 3.0)).tolist() == [[0, 0], [0, 0]]  # constant -> zeros
    # uint8(255 * s) = [0, 63, 127, 255] > int(255 * tau)
    assert binarize(s, 0.25).tolist() == [[False, False], [True, True]]  # 63 > 63 is False
    assert binarize(s, 0.24).tolist() == [[False, True], [True, True]]  # 63 > 61
    assert binarize(s, 0.0).tolist() == [[False, True], [True, True]]  # 0 > 0 is False


def test_contour_boxes_are_inclusive_and_include_holes():
    mask = np.zeros((10, 12), bool)
    mask[1:8, 2:9] = True  # a 7 x 7 square, columns 2..8, rows 1..7
    mask[3:5, 4:6] = False  # with a hole, columns 4..5, rows 3..4
    mask[9, 11] = True  # and one more pixel
    boxes = sorted(contour_boxes(mask))
    assert boxes == sorted([[2, 1, 8, 7], [3, 2, 6, 5], [11, 9, 11, 9]])  # the hole's contour runs around it


def test_iou_curve_box_accuracy_and_max_box_acc():
    # a map with a bright 4 x 4 core (1.0) inside a dimmer 8 x 8 halo (0.5); GT box = the halo
    score = np.zeros((10, 10), np.float32)
    score[1:9, 1:9] = 0.5
    score[3:7, 3:7] = 1.0
    gt = [[1, 1, 8, 8]]
    taus = [0.0, 0.4, 0.6]
    curve = iou_curve(score, gt, taus)
    # tau 0: 127 > 0 keeps the halo -> IoU 1; tau 0.4: 127 > 102 -> 1; tau 0.6: the core, 16 / 64
    assert curve.tolist() == pytest.approx([1.0, 1.0, 16 / 64])
    curves = np.array([[1.0, 1.0, 0.25], [0.2, 0.6, 0.8], [0.0, 0.35, 0.75]])
    assert box_accuracy(curves, 0.5).tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert box_accuracy(curves, 0.3).tolist() == pytest.approx([1 / 3, 1.0, 2 / 3])
    assert box_accuracy(curves, 0.7).tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    result = max_box_acc(curves, taus, (0.3, 0.5, 0.7))
    # per IoU: the best tau (middle of a tie: 0.4 for 0.5, between 0.4 and 0.6)
    assert result["per_iou"] == {"0.3": {"tau": 0.4, "box_acc": pytest.approx(1.0)},
                                 "0.5": {"tau": 0.4, "box_acc": pytest.approx(2 / 3)},
                                 "0.7": {"tau": 0.6, "box_acc": pytest.approx(2 / 3)}}
    assert result["maxboxacc_v2"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert best_threshold_index([0.2, 0.5, 0.5, 0.5, 0.1]) == 2 and best_threshold_index([0.5, 0.5]) == 0


def test_held_out_thresholds_are_applied_to_the_scored_split():
    taus = [0.1, 0.5, 0.9]
    held = np.array([[0.9, 0.2, 0.0], [0.8, 0.6, 0.0]])  # best tau 0.1 for every IoU threshold
    scored = np.array([[0.4, 0.9, 0.9], [0.6, 0.9, 0.9]])  # where tau 0.5 would be better
    out = transfer_thresholds(held, scored, taus, (0.5,))
    assert out["per_iou"]["0.5"] == {"tau": 0.1, "held_out_box_acc": 1.0, "box_acc": 0.5}
    assert out["maxboxacc_v2"] == 0.5
    assert max_box_acc(scored, taus, (0.5,))["maxboxacc_v2"] == 1.0  # the oracle is higher


def test_regressor_box_acc_v2_and_localisation_scores():
    boxes = [[0, 0, 9, 9], [0, 0, 4, 9], None, [0, 0, 9, 9]]
    gt = [[[0, 0, 9, 9]], [[0, 0, 9, 9]], [[0, 0, 9, 9]], [[20, 20, 29, 29], [0, 0, 6, 9]]]
    ious = box_ious(boxes, gt)
    assert ious.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.7])  # the best of two GT boxes
    v2 = box_acc_v2(ious, (0.3, 0.5, 0.7))
    assert v2["per_iou"] == {"0.3": 0.75, "0.5": 0.75, "0.7": 0.5} and v2["maxboxacc_v2"] == pytest.approx(2 / 3)
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    labels = [0, 1, 0, 1]  # right, second best, right, tied second (0 and 1 tie: lower column first)
    assert topk_correct(scores, labels, 1).tolist() == [True, False, True, False]
    assert topk_correct(scores, labels, 2).tolist() == [True, True, True, False]
    out = localization_scores(ious, scores, labels, ks=(1, 2))
    assert out == {"gt_known_loc": 0.75, "top1_loc": 0.25, "top1_cls": 0.5, "top2_loc": 0.5, "top2_cls": 0.75}


def test_gt_known_is_iou_at_least_half_with_some_gt_box():
    # Hand-computed IoUs of the 10 x 10 box [0, 0, 9, 9] (area 100): no box is a miss.
    boxes = [[0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9], None]
    gt = [[[50, 50, 60, 60], [0, 0, 9, 7]],  # 80 / 100 with the second GT box
          [[0, 0, 4, 9]],  # 50 / 100: exactly 0.5 counts
          [[0, 0, 3, 9]],  # 40 / 100
          [[0, 0, 9, 9]]]
    ious = box_ious(boxes, gt)
    assert ious.tolist() == pytest.approx([0.8, 0.5, 0.4, 0.0])
    assert gt_known_loc(ious) == 0.5
    # N x T (a sweep): one share per column
    assert gt_known_loc(np.array([[0.5, 0.49], [0.7, 0.2], [0.0, 1.0]])).tolist() == pytest.approx([2 / 3, 1 / 3])


def test_failure_cases_are_the_lowest_iou_images_worst_first():
    from pathlib import Path

    from c2am.data.wsol import WsolGT
    from c2am.wsol_metrics import box_ious
    from c2am.wsol_report import lowest_iou_ids

    gt = WsolGT(boxes={"a": [[0, 0, 9, 9]], "b": [[0, 0, 9, 9], [20, 20, 29, 29]], "c": [[0, 0, 3, 3]],
                       "d": [[0, 0, 9, 9]]},
                sizes={i: (40, 30) for i in "abcd"}, source=Path("gt.json"))
    boxes = {"a": [0, 0, 9, 9],      # IoU 1
             "b": [20, 20, 29, 24],  # 50 px inside the second GT box of 100: IoU 0.5 (the best of its two)
             "c": [0, 0, 7, 7],      # 16 / 64 = 0.25
             "d": None}              # no box: counted as 0
    assert box_ious([boxes["b"]], [gt.boxes_of("b")])[0] == pytest.approx(0.5)
    assert box_ious([boxes["c"]], [gt.boxes_of("c")])[0] == pytest.approx(0.25)
    assert box_ious([None], [gt.boxes_of("d")])[0] == 0.0
    assert lowest_iou_ids(list("abcd"), gt, boxes, 3) == ["d", "c", "b"]
    assert lowest_iou_ids(list("abcd"), gt, {**boxes, "a": [0, 0, 4, 4]}, 2) == ["d", "a"]  # 25 / 100 ties c: id order
    assert lowest_iou_ids(list("ab"), gt, boxes, 8) == ["b", "a"]  # fewer images than asked: all of them
