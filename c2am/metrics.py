"""Evaluation metrics (pure numpy): segmentation IoU, streaming binary AUC/IoU, boxes, multi-label scores.

Conventions used throughout:

- Label maps hold class indices ``0..C-1``; ``255`` means "ignore" in ground truth and "uncertain" in a
  prediction. GT-255 pixels are not scored at all. A predicted 255 counts as *no class*: it is a false negative
  for the pixel's GT class and a false positive for nothing (so marking a pixel uncertain costs recall only).
- Boxes are ``[x1, y1, x2, y2]`` in 0-based **inclusive** pixel indices (a single pixel at (3, 5) is
  ``[3, 5, 3, 5]``, area 1), the convention of :meth:`c2am.data.voc.Manifest.gt_boxes`.
- Streaming accumulators keep integer counts only, so updating per image and merging partial results (e.g. from
  worker processes) gives exactly the same answer as one pass over all pixels.
"""

from __future__ import annotations

import numpy as np

from c2am.io import IGNORE


# ----------------------------------------------------------------------------- semantic segmentation


class ConfusionMatrix:
    """Pixel confusion counts between GT rows and predicted columns, accumulated image by image.

    Internally the counts have one extra column (index ``C``) for predicted-255 ("uncertain") pixels: they add
    to their GT class's row total (a false negative) but to no predicted column. :attr:`matrix` is the plain
    ``C x C`` part; :attr:`uncertain` is the per-GT-class count of uncertain pixels.
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.counts = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> "ConfusionMatrix":
        """Add one image (any shape; ``gt`` and ``pred`` must match). Values must be < C or 255."""
        gt = np.asarray(gt)
        pred = np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError(f"gt shape {gt.shape} differs from prediction shape {pred.shape}")
        c = self.num_classes
        gt = gt.ravel().astype(np.int64)
        pred = pred.ravel().astype(np.int64)
        check_label_values(gt, c, "ground truth")
        check_label_values(pred, c, "prediction")
        keep = gt != IGNORE
        gt, pred = gt[keep], pred[keep]
        pred = np.where(pred == IGNORE, c, pred)  # uncertain -> the extra column
        self.counts += np.bincount(gt * (c + 1) + pred, minlength=c * (c + 1)).reshape(c, c + 1)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes}-class counts")
        self.counts += other.counts
        return self

    @property
    def matrix(self) -> np.ndarray:
        """``C x C`` counts, rows = GT class, columns = predicted class (uncertain pixels excluded)."""
        return self.counts[:, : self.num_classes].copy()

    @property
    def uncertain(self) -> np.ndarray:
        """Per GT class, the pixels predicted 255."""
        return self.counts[:, self.num_classes].copy()

    @property
    def total(self) -> int:
        """Scored pixels (GT not 255), uncertain ones included."""
        return int(self.counts.sum())

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (GT pixels + predicted pixels - TP); NaN where a class is in neither."""
        c = self.num_classes
        tp = np.diag(self.counts[:, :c]).astype(np.float64)
        gt_total = self.counts.sum(axis=1)  # includes uncertain pixels: they are misses
        pred_total = self.counts[:, :c].sum(axis=0)
        union = (gt_total + pred_total).astype(np.float64) - tp
        out = np.full(c, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def miou(self) -> float:
        """Mean IoU over the classes present in the GT or the prediction (NaN if none is)."""
        return nanmean(self.iou())


def check_label_values(values: np.ndarray, num_classes: int, what: str) -> None:
    bad = (values < 0) | ((values >= num_classes) & (values != IGNORE))
    if bad.any():
        raise ValueError(f"{what} holds value {int(values[bad][0])}, outside 0..{num_classes - 1} and 255")


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without numpy's warning) when there are none."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


class DistractorShare:
    """Share of *distractor* pixels (salient things of no class, background in the GT) that a label map gives a
    class: lower is better. A pixel labelled background or uncertain (255) counts as left alone."""

    def __init__(self):
        self.labelled = 0
        self.total = 0

    def update(self, pred: np.ndarray, distractors: np.ndarray) -> "DistractorShare":
        pred, distractors = np.asarray(pred), np.asarray(distractors, dtype=bool)
        if pred.shape != distractors.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from distractor mask shape {distractors.shape}")
        on = pred[distractors]
        self.labelled += int(np.count_nonzero((on != 0) & (on != IGNORE)))
        self.total += int(on.size)
        return self

    def merge(self, other: "DistractorShare") -> "DistractorShare":
        self.labelled += other.labelled
        self.total += other.total
        return self

    def compute(self) -> float:
        """labelled / total; NaN when there is no distractor pixel."""
        return self.labelled / self.total if self.total else float("nan")


# ----------------------------------------------------------------------------- binary maps


def foreground_of(gt_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(GT foreground = class > 0, valid = GT not 255) from a label map."""
    gt_labels = np.asarray(gt_labels)
    valid = gt_labels != IGNORE
    return (gt_labels > 0) & valid, valid


class BinaryAUC:
    """Streaming ROC AUC of scores in [0, 1] against boolean labels, via per-bin histograms.

    Score s falls in bin ``min(floor(s * bins), bins - 1)``. AUC = P(pos bin > neg bin) + 0.5 P(same bin), so a
    positive and a negative in the same bin count half: exact when scores are quantised to the bins (e.g. maps
    stored as ``k / bins``), within one bin's width otherwise. Memory is ``2 * bins`` counts, whatever the
    number of pixels.
    """

    def __init__(self, bins: int = 1024):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = int(bins)
        self.pos = np.zeros(self.bins, dtype=np.int64)
        self.neg = np.zeros(self.bins, dtype=np.int64)

    def bin_of(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.size and (np.isnan(scores).any() or scores.min() < 0.0 or scores.max() > 1.0):
            raise ValueError("scores must lie in [0, 1] (no NaN)")
        return np.minimum((scores * self.bins).astype(np.int64), self.bins - 1)

    def update(self, scores: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None) -> "BinaryAUC":
        """Add one image's scores and boolean labels; pixels where ``valid`` is False are skipped."""
        scores = np.asarray(scores)
        labels = np.asarray(labels, dtype=bool)
        if scores.shape != labels.shape:
            raise ValueError(f"scores shape {scores.shape} differs from labels shape {labels.shape}")
        b = self.bin_of(scores)
        labels = labels.ravel()
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != scores.shape:
                raise ValueError(f"valid shape {valid.shape} differs from scores shape {scores.shape}")
            keep = valid.ravel()
            b, labels = b[keep], labels[keep]
        self.pos += np.bincount(b[labels], minlength=self.bins)
        self.neg += np.bincount(b[~labels], minlength=self.bins)
        return self

    def update_from_mask(self, scores: np.ndarray, gt_labels: np.ndarray) -> "BinaryAUC":
        """Scores against a GT label map: positive = class > 0, GT 255 skipped."""
        fg, valid = foreground_of(gt_labels)
        return self.update(scores, fg, valid)

    def merge(self, other: "BinaryAUC") -> "BinaryAUC":
        if other.bins != self.bins:
            raise ValueError(f"cannot merge {other.bins}-bin histograms into {self.bins}-bin ones")
        self.pos += other.pos
        self.neg += other.neg
        return self

    def compute(self) -> float:
        """ROC AUC; NaN when there are no positives or no negatives."""
        n_pos, n_neg = int(self.pos.sum()), int(self.neg.sum())
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        neg_below = np.concatenate([[0], np.cumsum(self.neg)[:-1]])
        # Python ints: exact for any pixel count (int64 products could overflow past ~3e9 pixels per side).
        wins = sum(int(p) * int(n) for p, n in zip(self.pos, neg_below) if p)
        ties = sum(int(p) * int(n) for p, n in zip(self.pos, self.neg) if p)
        return (2 * wins + ties) / (2 * n_pos * n_neg)

    def iou_at(self, threshold: float) -> float:
        """Foreground IoU of ``score >= threshold`` from the same histograms (threshold rounded to a bin edge)."""
        k = min(max(int(round(float(threshold) * self.bins)), 0), self.bins)
        tp = int(self.pos[k:].sum())
        fp = int(self.neg[k:].sum())
        fn = int(self.pos[:k].sum())
        union = tp + fp + fn
        return tp / union if union else float("nan")


class BinaryIoU:
    """Streaming IoU of a predicted boolean foreground against GT foreground (class > 0), GT 255 ignored."""

    def __init__(self):
        self.tp = self.fp = self.fn = 0

    def update(self, pred_fg: np.ndarray, gt_labels: np.ndarray) -> "BinaryIoU":
        pred_fg = np.asarray(pred_fg, dtype=bool)
        gt_labels = np.asarray(gt_labels)
        if pred_fg.shape != gt_labels.shape:
            raise ValueError(f"prediction shape {pred_fg.shape} differs from GT shape {gt_labels.shape}")
        fg, valid = foreground_of(gt_labels)
        pred_fg = pred_fg & valid
        self.tp += int(np.count_nonzero(pred_fg & fg))
        self.fp += int(np.count_nonzero(pred_fg & ~fg))
        self.fn += int(np.count_nonzero(~pred_fg & fg))
        return self

    def merge(self, other: "BinaryIoU") -> "BinaryIoU":
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    def compute(self) -> float:
        """Intersection / union over all pixels seen; NaN if both GT and prediction were empty."""
        union = self.tp + self.fp + self.fn
        return self.tp / union if union else float("nan")


def foreground_iou(pred_fg: np.ndarray, gt_labels: np.ndarray) -> float:
    """IoU of one image's predicted foreground against its GT foreground (class > 0, 255 ignored)."""
    return BinaryIoU().update(pred_fg, gt_labels).compute()


# ----------------------------------------------------------------------------- boxes


def box_area(box) -> int:
    x1, y1, x2, y2 = box
    return max(0, x2 - x1 + 1) * max(0, y2 - y1 + 1)


def box_iou(a, b) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes in inclusive pixel indices (width = x2 - x1 + 1)."""
    inter = box_area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def largest_component_box(mask: np.ndarray) -> list[int] | None:
    """Inclusive ``[x1, y1, x2, y2]`` box of the largest 8-connected region of ``mask``; None if it is empty.

    Ties between equally large regions go to the one whose first pixel comes first in row-major order.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    best = int(np.argmax(sizes))
    rows, cols = ndimage.find_objects(labelled, max_label=best)[best - 1]
    return [int(cols.start), int(rows.start), int(cols.stop - 1), int(rows.stop - 1)]


# ----------------------------------------------------------------------------- multi-label classification


def check_multilabel(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.shape != targets.shape:
        raise ValueError(f"scores shape {scores.shape} differs from targets shape {targets.shape}")
    return scores, targets.astype(bool)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """VOC-style non-interpolated AP of one class: mean precision at each positive, by descending score.

    Tied scores form one threshold: every positive in a tie group gets the precision at the group's end, so the
    result does not depend on input order. NaN when there are no positives.
    """
    scores, targets = check_multilabel(np.ravel(scores), np.ravel(targets))
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], targets[order]
    tp = np.cumsum(t)
    rank = np.arange(1, len(s) + 1)
    # Index of the last element of each element's tie group.
    group_end = np.searchsorted(-s, -s, side="right") - 1
    precision = tp[group_end] / rank[group_end]
    return float(precision[t].sum() / n_pos)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes (columns of N x C arrays) of :func:`average_precision`; classes without positives skipped."""
    scores, targets = check_multilabel(scores, targets)
    if scores.ndim != 2:
        raise ValueError(f"expected N x C arrays, got shape {scores.shape}")
    return nanmean([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])


def f1_multilabel(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Macro F1 over the classes (columns) that have at least one positive; predicted = ``score >= threshold``.

    Per class F1 = 2 TP / (2 TP + FP + FN). Macro (not micro) so that rare classes weigh as much as common ones;
    classes without positives are skipped because their F1 is 0 or undefined regardless of the classifier.
    """
    scores, targets = check_multilabel(scores, targets)
    if scores.ndim != 2:
        raise ValueError(f"expected N x C arrays, got shape {scores.shape}")
    pred = scores >= threshold
    tp = (pred & targets).sum(axis=0)
    fp = (pred & ~targets).sum(axis=0)
    fn = (~pred & targets).sum(axis=0)
    has_pos = targets.any(axis=0)
    if not has_pos.any():
        return float("nan")
    f1 = 2 * tp[has_pos] / (2 * tp[has_pos] + fp[has_pos] + fn[has_pos])
    return float(f1.mean())


def classification_report(scores: np.ndarray, targets: np.ndarray, class_names: list[str]) -> str:
    """``mAP: x``, ``F1: x`` (macro F1 at sigmoid >= 0.5), then ``<class>: <AP>`` per class (nan: no positives)."""
    lines = [
        f"mAP: {mean_average_precision(scores, targets):.4f}",
        f"F1: {f1_multilabel(scores, targets, 0.5):.4f}",
    ]
    for k, name in enumerate(class_names):
        lines.append(f"{name}: {average_precision(scores[:, k], targets[:, k]):.4f}")
    return "\n".join(lines) + "\n"
