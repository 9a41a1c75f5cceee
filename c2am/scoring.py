"""Scoring against GT masks: a folder of label maps, the CAM-only tau sweep, the scores' forms, and the C2AM
maps and cues' foreground scores (:func:`score_c2am`).

Used by every evaluation stage (pseudo masks on ``pseudo_eval``, DeepLab predictions on ``val``). A prediction
is ``<dir>/<id>.png`` holding class indices or IGNORE; IGNORE in a prediction means "uncertain" and counts as a
miss for the pixel's GT class (:class:`c2am.metrics.ConfusionMatrix`); IGNORE in the GT is not scored.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from c2am.artifacts import load_cams, load_cue, load_labels, load_map
from c2am.cues import cue_for_image
from c2am.io import InputError
from c2am.metrics import BinaryAUC, BinaryIoU, ConfusionMatrix, DistractorShare
from c2am.parallel import map_items
from c2am.refine import refine_sweep
from c2am.thresholds import ORACLE_SWEEP, image_threshold, map_histogram, otsu_from_histogram

CHUNK_IMAGES = 16  # images per worker task: the manifest is pickled once per task, not once per image
MAX_LISTED = 3  # missing files named in the error message


def check_predictions_exist(pred_dir, ids: list[str], split: str) -> None:
    """One InputError for all missing predictions, naming how many and the first few paths."""
    missing = [p for p in (Path(pred_dir) / f"{i}.png" for i in ids) if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:MAX_LISTED])
        more = ", ..." if len(missing) > MAX_LISTED else ""
        raise InputError(
            f"{pred_dir}: {len(missing)} of {len(ids)} predictions for split '{split}' are missing: {shown}{more}"
        )


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + CHUNK_IMAGES] for i in range(0, len(ids), CHUNK_IMAGES)]


def _score_chunk(task: tuple) -> ConfusionMatrix:
    """Worker: confusion counts of a few images (top-level so that spawned workers can import it)."""
    manifest, ids, pred_dir, gt_dir = task
    cm = ConfusionMatrix(manifest.num_classes)
    for image_id in ids:
        gt = manifest.load_mask(image_id, mask_dir=gt_dir)
        pred = load_labels(Path(pred_dir) / f"{image_id}.png", gt.shape, manifest.num_classes, "prediction")
        cm.update(gt, pred)
    return cm


def score_folder(manifest, split: str, pred_dir, gt_dir=None, threads: int = 1) -> ConfusionMatrix:
    """Confusion counts of ``<pred_dir>/<id>.png`` against the GT masks over the split's ids that have one
    (all of them, unless the dataset has masks for some images only; none is an InputError)."""
    ids = manifest.require_gt_ids(split) if gt_dir is None else manifest.ids(split)
    check_predictions_exist(pred_dir, ids, split)
    gt_dir = None if gt_dir is None else str(gt_dir)
    tasks = [(manifest, chunk, str(pred_dir), gt_dir) for chunk in _chunks(ids)]
    cm = ConfusionMatrix(manifest.num_classes)
    for part in map_items(_score_chunk, tasks, threads=threads, desc=f"score {split}"):
        cm.merge(part)
    return cm


def _distractor_chunk(task: tuple) -> DistractorShare:
    """Worker: distractor pixels given a class, for a few images."""
    manifest, ids, pred_dir, distractor_dir = task
    share = DistractorShare()
    for image_id in ids:
        # a distractor mask is a 0/255 grayscale PNG like a cue (c2am.data.synthetic writes them)
        distractors = load_cue(Path(distractor_dir) / f"{image_id}.png")
        pred = load_labels(Path(pred_dir) / f"{image_id}.png", distractors.shape, manifest.num_classes, "prediction")
        share.update(pred, distractors)
    return share


def distractor_share(manifest, split: str, pred_dir, distractor_dir, threads: int = 1) -> DistractorShare:
    """How many distractor pixels of ``distractor_dir/<id>.png`` (255 = distractor) the labels of ``pred_dir``
    give a class, over the split's images that have a GT mask (the images :func:`score_folder` scores)."""
    ids = manifest.require_gt_ids(split)
    check_predictions_exist(pred_dir, ids, split)
    missing = [i for i in ids if not (Path(distractor_dir) / f"{i}.png").is_file()]
    if missing:
        raise InputError(f"{distractor_dir}: {len(missing)} of {len(ids)} distractor masks missing, e.g. {missing[0]}.png")
    tasks = [(manifest, chunk, str(pred_dir), str(distractor_dir)) for chunk in _chunks(ids)]
    total = DistractorShare()
    for part in map_items(_distractor_chunk, tasks, threads=threads, desc=f"distractors {split}"):
        total.merge(part)
    return total


def _sweep_chunk(task: tuple) -> np.ndarray:
    """Worker: per-tau confusion counts (T x C x C+1) of CAM-only labels for a few images."""
    manifest, ids, cams_dir, taus = task
    cms = [ConfusionMatrix(manifest.num_classes) for _ in taus]
    for image_id in ids:
        gt = manifest.load_mask(image_id)
        cams, classes = load_cams(Path(cams_dir) / f"{image_id}.npz", gt.shape)
        for cm, labels in zip(cms, refine_sweep(cams, classes, taus)):
            cm.update(gt, labels)
    return np.stack([cm.counts for cm in cms])


def sweep_confusions(manifest, split: str, cams_dir: Path, taus: list[float], threads: int) -> list[ConfusionMatrix]:
    """One ConfusionMatrix per constant tau of the CAM-only labels (argmax over [tau, CAMs]) over the split's
    images that have a GT mask."""
    ids = manifest.require_gt_ids(split)
    missing = [i for i in ids if not (Path(cams_dir) / f"{i}.npz").is_file()]
    if missing:
        raise InputError(f"{cams_dir}: {len(missing)} of {len(ids)} CAM files missing, e.g. {missing[0]}.npz")
    tasks = [(manifest, chunk, str(cams_dir), taus) for chunk in _chunks(ids)]
    total = sum(map_items(_sweep_chunk, tasks, threads=threads, desc="tau sweep"))
    out = []
    for counts in total:
        cm = ConfusionMatrix(manifest.num_classes)
        cm.counts += counts
        out.append(cm)
    return out


# ----------------------------------------------------------------------------- C2AM maps and cues (eval_c2am)

MAP_AUC_BINS = 1024  # the oracle sweep (ORACLE_SWEEP) reads its IoUs off these histograms, so it is free


def _c2am_image(image_id: str, manifest, maps_dir: Path, cues_dir: Path, record: dict, fixed: float) -> dict:
    """Per-image streaming counts (merged by the caller): AUC histograms and IoU counts of each variant."""
    gt = manifest.load_mask(image_id)
    fmap = load_map(maps_dir / f"{image_id}.npy", gt.shape)
    cue = load_cue(cues_dir / f"{image_id}.png", gt.shape)
    t_used = image_threshold(record, fmap)
    t_image = otsu_from_histogram(map_histogram(fmap))
    return {
        "auc": BinaryAUC(MAP_AUC_BINS).update_from_mask(fmap, gt),
        "map_used": BinaryIoU().update(fmap > t_used, gt),
        "cue_used": BinaryIoU().update(cue, gt),
        "map_fixed": BinaryIoU().update(fmap > fixed, gt),
        "map_otsu_image": BinaryIoU().update(fmap > t_image, gt),
        "cue_share": float(cue.mean()),
        "map_mean": float(fmap.mean()),
    }


def _crf_cue_iou_image(image_id: str, manifest, maps_dir: Path, threshold: float, crf: dict) -> BinaryIoU:
    """IoU counts of the CRF cue at a given fixed threshold (for the fixed-t and oracle lines)."""
    record = {"method": "fixed", "threshold": threshold}
    cue = cue_for_image(manifest, image_id, maps_dir, record, crf)
    return BinaryIoU().update(cue, manifest.load_mask(image_id))


def _merged(items: list, key: str):
    total = items[0][key]
    for item in items[1:]:
        total.merge(item[key])
    return total


def crf_cue_iou(ids, manifest, maps_dir, threshold, crf, threads, desc) -> float:
    """Foreground IoU over ``ids`` of the CRF cues (``crf``: c2am.crf.crf_args) at a fixed map threshold."""
    fn = partial(_crf_cue_iou_image, manifest=manifest, maps_dir=maps_dir, threshold=threshold, crf=crf)
    parts = map_items(fn, ids, threads=threads, desc=desc)
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total.compute()


def score_c2am(manifest, split: str, maps_dir, cues_dir, record: dict, fixed_threshold: float, crf: dict,
               threads: int = 1, oracle_cues: bool = False) -> dict:
    """Foreground scores of the C2AM maps and cues against the GT of the split's images that have a mask.

    ``record``: the cue stage's threshold record (checked); ``fixed_threshold``: the paper's t, scored beside;
    ``crf``: the cue CRF's settings for the CRF cues at fixed t and (``oracle_cues``) at the oracle threshold.
    The oracle threshold is the best map threshold of :data:`c2am.thresholds.ORACLE_SWEEP` on this very split
    (chosen with GT).
    """
    maps_dir, cues_dir = Path(maps_dir), Path(cues_dir)
    ids = manifest.require_gt_ids(split)  # the images with a GT mask (all, unless a folder dataset's subset)
    fn = partial(_c2am_image, manifest=manifest, maps_dir=maps_dir, cues_dir=cues_dir, record=record,
                 fixed=fixed_threshold)
    per_image = map_items(fn, ids, threads=threads, desc="score c2am")
    auc = _merged(per_image, "auc")
    sweep = {t: auc.iou_at(t) for t in ORACLE_SWEEP}
    oracle_t = max(sweep, key=sweep.get)
    scores = {
        "map_fg_iou": _merged(per_image, "map_used").compute(),
        "cue_fg_iou": _merged(per_image, "cue_used").compute(),
        "map_auc": auc.compute(),
        "method": record["method"],
        "threshold": record.get("threshold"),
        "fixed_threshold": fixed_threshold,
        "map_fg_iou_fixed": _merged(per_image, "map_fixed").compute(),
        "cue_fg_iou_fixed": crf_cue_iou(ids, manifest, maps_dir, fixed_threshold, crf, threads, "cues fixed t"),
        "map_fg_iou_otsu_image": _merged(per_image, "map_otsu_image").compute(),
        "map_mean": float(np.mean([p["map_mean"] for p in per_image])),
        "cue_fg_share": float(np.mean([p["cue_share"] for p in per_image])),
        "gt_fg_share": float(auc.pos.sum() / (auc.pos.sum() + auc.neg.sum())),
        "oracle_threshold": oracle_t,
        "oracle_map_fg_iou": sweep[oracle_t],
        "oracle_sweep": {f"{t:.2f}": v for t, v in sweep.items()},
        "oracle_cue_fg_iou": None,
    }
    if oracle_cues:
        scores["oracle_cue_fg_iou"] = crf_cue_iou(ids, manifest, maps_dir, oracle_t, crf, threads, "cues oracle t")
    return scores


def percent(x: float) -> float | None:
    return None if math.isnan(x) else 100.0 * x


def _check_classes(cm: ConfusionMatrix, classes: list[str]) -> None:
    if len(classes) != cm.num_classes:
        raise ValueError(f"{len(classes)} class names for a {cm.num_classes}-class confusion matrix")


def format_scores(cm: ConfusionMatrix, classes: list[str]) -> str:
    """``mIoU: xx.xx`` then one ``<class>: xx.xx`` line per class (``nan`` when absent from GT and prediction)."""
    _check_classes(cm, classes)
    lines = [f"mIoU: {100.0 * cm.miou():.2f}"]
    lines += [f"{name}: {100.0 * iou:.2f}" for name, iou in zip(classes, cm.iou())]
    return "\n".join(lines) + "\n"


def scores_dict(cm: ConfusionMatrix, classes: list[str]) -> dict:
    """The numbers of :func:`format_scores` (percent, unrounded; None for absent classes) plus the raw counts."""
    _check_classes(cm, classes)
    return {
        "miou": percent(cm.miou()),
        "iou": {name: percent(iou) for name, iou in zip(classes, cm.iou())},
        "classes": list(classes),
        "confusion_matrix": cm.matrix.tolist(),
        "uncertain_pixels": cm.uncertain.tolist(),
        "scored_pixels": cm.total,
    }
