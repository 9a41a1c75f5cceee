"""WSOL scores (pure numpy + OpenCV): boxes from score maps, box accuracy, MaxBoxAccV2, top-k localisation.

Conventions (docs/method.md §10):

- Boxes are 0-based inclusive pixel boxes ``[x1, y1, x2, y2]`` and IoU is :func:`c2am.metrics.box_iou`
  (areas ``(x2 - x1 + 1) (y2 - y1 + 1)``), the convention of the GT boxes (c2am.data.wsol).
- A score map is first min-max normalised per image (:func:`normalize_scoremap`, constant maps -> zeros) and
  binarised at 8 bits, ``uint8(255 s) > int(255 tau)``, as the "Evaluating WSOL methods right" code
  (clovaai/wsolevaluation, ``evaluation.py``) does; the map thresholds are ``0, h, 2h, ... < 1``
  (``cam_curve_interval`` h, 0.01 there; :func:`c2am.thresholds.cam_curve_grid`).
- MaxBoxAccV2 (Choe et al., CVPR 2020, the "V2" box metric of that code): for each IoU threshold delta in
  {0.3, 0.5, 0.7}, BoxAcc(delta, tau) is the share of images where SOME box of the binarised map (the bounding
  box of every contour OpenCV finds with ``RETR_TREE``: each 8-connected region and each of its holes) has
  IoU >= delta with SOME GT box; MaxBoxAcc(delta) = max over tau; MaxBoxAccV2 = the mean over delta. The best
  tau is picked per delta. Picked on the scored split it is an oracle; :func:`transfer_thresholds` picks
  it on a held-out split instead.
- A box regressor has no map threshold: its BoxAccV2 is the mean over delta of the share of images whose one
  box has IoU >= delta with some GT box (the same formula with a single tau).
- GT-known localisation (:func:`gt_known_loc`): IoU >= 0.5 with some GT box, whatever the class; it is
  BoxAcc at delta 0.5, for one box per image. Top-k localisation: the GT class
  among the k best-scored classes AND IoU >= 0.5. Top-k classification: the GT class among the k best.
"""

from __future__ import annotations

import cv2
import numpy as np

from c2am.metrics import box_iou

DEFAULT_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
GT_KNOWN_IOU = 0.5


def normalize_scoremap(score: np.ndarray) -> np.ndarray:
    """(s - min) / (max - min) as float32; a constant (or NaN) map becomes all zeros (wsolevaluation's rule)."""
    score = np.asarray(score, dtype=np.float32)
    if score.ndim != 2:
        raise ValueError(f"score map must be H x W, got shape {score.shape}")
    if np.isnan(score).any() or score.size == 0:
        return np.zeros_like(score)
    lo, hi = float(score.min()), float(score.max())
    if hi == lo:
        return np.zeros_like(score)
    return (score - lo) / (hi - lo)


def binarize(score: np.ndarray, tau: float) -> np.ndarray:
    """``uint8(255 s) > int(255 tau)`` of a normalised map: wsolevaluation's 8-bit threshold (s in [0, 1])."""
    quantised = (np.asarray(score, dtype=np.float32) * 255).astype(np.uint8)
    return quantised > int(tau * 255)


def contour_boxes(mask: np.ndarray) -> list[list[int]]:
    """Inclusive boxes of every contour of ``mask`` (cv2.findContours, RETR_TREE): regions and their holes."""
    image = np.ascontiguousarray(np.asarray(mask, dtype=bool).astype(np.uint8))
    contours = cv2.findContours(image, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([int(x), int(y), int(x + w - 1), int(y + h - 1)])
    return boxes


def best_iou(candidates, gt_boxes) -> float:
    """Largest IoU between any candidate box and any GT box; 0 without candidates."""
    return max((box_iou(c, g) for c in candidates for g in gt_boxes), default=0.0)


def iou_curve(score: np.ndarray, gt_boxes, taus) -> np.ndarray:
    """Per map threshold, the best IoU of the normalised map's contour boxes with the GT boxes (float64, T)."""
    score = normalize_scoremap(score)
    return np.array([best_iou(contour_boxes(binarize(score, t)), gt_boxes) for t in taus], dtype=np.float64)


def box_accuracy(ious: np.ndarray, delta: float) -> np.ndarray:
    """BoxAcc(delta): share of images (axis 0) whose IoU reaches ``delta``; ``ious`` is N (one box per image) or
    N x T (per map threshold), giving a number or one share per threshold."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim not in (1, 2) or ious.shape[0] == 0:
        raise ValueError(f"expected N or N x T IoUs with N >= 1, got shape {ious.shape}")
    return (ious >= delta).mean(axis=0)


def gt_known_loc(ious: np.ndarray) -> np.ndarray:
    """GT-known localisation: share of images (axis 0 of N or N x T IoUs) whose box has IoU >= 0.5 with some GT
    box (no box: IoU 0, a miss)."""
    return box_accuracy(ious, GT_KNOWN_IOU)


def best_threshold_index(accuracy: np.ndarray) -> int:
    """Index of the best accuracy; on a tie, the middle one of the tied thresholds (lower middle when even)."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    best = np.flatnonzero(accuracy == accuracy.max())
    return int(best[(len(best) - 1) // 2])


def max_box_acc(curves: np.ndarray, taus, deltas=DEFAULT_IOU_THRESHOLDS) -> dict:
    """MaxBoxAcc per delta (with its tau) and MaxBoxAccV2 = their mean, all on the split of ``curves``."""
    out = {}
    for d in deltas:
        acc = box_accuracy(curves, d)
        k = best_threshold_index(acc)
        out[f"{d:g}"] = {"tau": float(taus[k]), "box_acc": float(acc[k])}
    return {"per_iou": out, "maxboxacc_v2": float(np.mean([v["box_acc"] for v in out.values()]))}


def transfer_thresholds(held_out: np.ndarray, scored: np.ndarray, taus, deltas=DEFAULT_IOU_THRESHOLDS) -> dict:
    """Per delta, tau chosen on the held-out split's curves, BoxAcc at that tau on the scored split; their mean."""
    out = {}
    for d in deltas:
        k = best_threshold_index(box_accuracy(held_out, d))
        out[f"{d:g}"] = {"tau": float(taus[k]), "held_out_box_acc": float(box_accuracy(held_out, d)[k]),
                         "box_acc": float(box_accuracy(scored, d)[k])}
    return {"per_iou": out, "maxboxacc_v2": float(np.mean([v["box_acc"] for v in out.values()]))}


def box_acc_v2(ious, deltas=DEFAULT_IOU_THRESHOLDS) -> dict:
    """One box per image (a regressor): BoxAcc per delta and their mean (MaxBoxAccV2 with a single tau)."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 1 or ious.size == 0:
        raise ValueError(f"expected one IoU per image, got shape {ious.shape}")
    per = {f"{d:g}": float(box_accuracy(ious, d)) for d in deltas}
    return {"per_iou": per, "maxboxacc_v2": float(np.mean(list(per.values())))}


def box_ious(boxes: list, gt: list) -> np.ndarray:
    """Per image, the best IoU of its box (None = no box: 0) with its GT boxes."""
    if len(boxes) != len(gt):
        raise ValueError(f"{len(boxes)} boxes for {len(gt)} images")
    return np.array([0.0 if b is None else best_iou([b], g) for b, g in zip(boxes, gt)], dtype=np.float64)


def topk_correct(scores: np.ndarray, labels, k: int) -> np.ndarray:
    """Per image, whether its label (column index) is among the ``k`` highest scores (ties: lower column first)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores {scores.shape} do not fit {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must be column indices 0..{scores.shape[1] - 1}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def localization_scores(ious: np.ndarray, scores: np.ndarray, labels, ks=(1, 5)) -> dict:
    """GT-known, top-k localisation and top-k classification (shares in [0, 1]) of one box per image."""
    ious = np.asarray(ious, dtype=np.float64)
    hit = ious >= GT_KNOWN_IOU
    out = {"gt_known_loc": float(gt_known_loc(ious))}
    for k in ks:
        correct = topk_correct(scores, labels, min(k, np.asarray(scores).shape[1]))
        out[f"top{k}_loc"] = float((hit & correct).mean())
        out[f"top{k}_cls"] = float(correct.mean())
    return out
