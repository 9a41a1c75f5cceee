"""Score predicted label PNGs against the GT masks of a split: mIoU and per-class IoU.

Used for the pseudo masks (``pseudo_eval`` split) and for the final DeepLab predictions (``val``).
Predictions are ``<pred-dir>/<id>.png`` palette/grayscale label maps; 255 in a prediction means "uncertain" and
counts as a miss for the pixel's GT class (see :class:`c2am.metrics.ConfusionMatrix`); 255 in the GT is ignored.

Outputs (written atomically):

- text: first line ``mIoU: <percent, 2 decimals>``, then ``<class>: <percent>`` per class; a class absent from
  both GT and predictions is written ``nan`` and left out of the mean;
- JSON: the same numbers (unrounded percent, ``null`` for absent classes), the class names, the ``C x C``
  confusion matrix (rows GT, columns prediction), the per-class count of uncertain pixels, and the inputs.

Evaluation is deterministic and CPU-only; ``--seed`` and ``--device`` are accepted for uniformity with the
other stages and have no effect.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

from c2am.data.voc import Manifest
from c2am.io import InputError, load_label_png, run_stage, save_json, save_text, set_threads
from c2am.metrics import IGNORE, ConfusionMatrix
from c2am.parallel import map_items

log = logging.getLogger("c2am.evaluate")

CHUNK_IMAGES = 16  # images per worker task: the manifest is pickled once per task, not once per image
MAX_LISTED = 3  # missing files named in the error message


def prediction_path(pred_dir, image_id: str) -> Path:
    return Path(pred_dir) / f"{image_id}.png"


def check_predictions_exist(pred_dir, ids: list[str], split: str) -> None:
    """One InputError for all missing predictions, naming how many and the first few paths."""
    missing = [p for p in (prediction_path(pred_dir, i) for i in ids) if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:MAX_LISTED])
        more = ", ..." if len(missing) > MAX_LISTED else ""
        raise InputError(
            f"{pred_dir}: {len(missing)} of {len(ids)} predictions for split '{split}' are missing: {shown}{more}"
        )


def load_prediction(manifest: Manifest, image_id: str, pred_dir, gt: np.ndarray) -> np.ndarray:
    """A prediction of the GT's size holding class indices or 255; anything else is an InputError naming it."""
    path = prediction_path(pred_dir, image_id)
    pred = load_label_png(path)
    if pred.shape != gt.shape:
        raise InputError(
            f"{path}: prediction size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth's "
            f"{gt.shape[1]}x{gt.shape[0]}"
        )
    values = np.unique(pred)
    bad = values[(values >= manifest.num_classes) & (values != IGNORE)]
    if bad.size:
        raise InputError(
            f"{path}: prediction holds label {int(bad[0])}, outside 0..{manifest.num_classes - 1} and 255"
        )
    return pred


def score_chunk(task: tuple[Manifest, list[str], str, str | None]) -> ConfusionMatrix:
    """Worker: confusion counts of a few images (top-level so that spawned workers can import it)."""
    manifest, ids, pred_dir, gt_dir = task
    cm = ConfusionMatrix(manifest.num_classes)
    for image_id in ids:
        gt = manifest.load_mask(image_id, mask_dir=gt_dir)
        cm.update(gt, load_prediction(manifest, image_id, pred_dir, gt))
    return cm


def score_folder(manifest: Manifest, split: str, pred_dir, gt_dir=None, threads: int = 1) -> ConfusionMatrix:
    """Confusion counts of ``<pred_dir>/<id>.png`` against the GT masks over the split's ids."""
    ids = manifest.ids(split)
    check_predictions_exist(pred_dir, ids, split)
    gt_dir = None if gt_dir is None else str(gt_dir)
    tasks = [(manifest, ids[i : i + CHUNK_IMAGES], str(pred_dir), gt_dir) for i in range(0, len(ids), CHUNK_IMAGES)]
    cm = ConfusionMatrix(manifest.num_classes)
    for part in map_items(score_chunk, tasks, threads=threads, desc=f"score {split}"):
        cm.merge(part)
    return cm


def percent(x: float) -> float | None:
    return None if math.isnan(x) else 100.0 * x


def check_classes(cm: ConfusionMatrix, classes: list[str]) -> None:
    if len(classes) != cm.num_classes:
        raise ValueError(f"{len(classes)} class names for a {cm.num_classes}-class confusion matrix")


def format_scores(cm: ConfusionMatrix, classes: list[str]) -> str:
    """``mIoU: xx.xx`` then one ``<class>: xx.xx`` line per class (``nan`` when absent from GT and prediction)."""
    check_classes(cm, classes)
    lines = [f"mIoU: {100.0 * cm.miou():.2f}"]
    lines += [f"{name}: {100.0 * iou:.2f}" for name, iou in zip(classes, cm.iou())]
    return "\n".join(lines) + "\n"


def scores_dict(cm: ConfusionMatrix, classes: list[str]) -> dict:
    """The numbers of :func:`format_scores` (percent, unrounded; None for absent classes) plus the raw counts."""
    check_classes(cm, classes)
    return {
        "miou": percent(cm.miou()),
        "iou": {name: percent(iou) for name, iou in zip(classes, cm.iou())},
        "classes": list(classes),
        "confusion_matrix": cm.matrix.tolist(),
        "uncertain_pixels": cm.uncertain.tolist(),
        "scored_pixels": cm.total,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--split", required=True, help="split role whose ids are scored: train, pseudo_eval or val")
    p.add_argument("--pred-dir", required=True, help="folder of predicted label PNGs, <id>.png")
    p.add_argument("--gt-dir", default=None, help="folder of GT label PNGs (default: the manifest's mask folder)")
    p.add_argument("--out-txt", required=True, help="text report: 'mIoU: ..' then one line per class")
    p.add_argument("--out-json", required=True, help="JSON report with the confusion matrix")
    p.add_argument("--threads", type=int, default=1, help="worker processes reading and scoring PNGs")
    p.add_argument("--seed", type=int, default=0, help="accepted for uniformity; evaluation is deterministic")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="accepted; runs on the CPU")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    threads = set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    cm = score_folder(manifest, args.split, args.pred_dir, args.gt_dir, threads=threads)
    result = scores_dict(cm, manifest.classes)
    result.update(
        split=args.split,
        num_images=len(manifest.ids(args.split)),
        pred_dir=str(args.pred_dir),
        gt_dir=None if args.gt_dir is None else str(args.gt_dir),
    )
    save_text(args.out_txt, format_scores(cm, manifest.classes))
    save_json(args.out_json, result)
    log.info("%s on %s (%d images): mIoU %.2f", args.pred_dir, args.split, result["num_images"], 100.0 * cm.miou())
    return result


if __name__ == "__main__":
    sys.exit(run_stage(main))
