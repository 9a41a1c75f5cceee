"""Figures for people: what each stage produced on a fixed, seeded sample of images, and the run's curves.

Outputs (PNG, written atomically; every one is required, so a missing artifact stops the stage naming it):

- ``--out-grid-train``: one row per sampled train image: image | GT | classifier CAM of the top class (heat-map
  overlay) | C2AM map (overlay) | cue (white = foreground) | saliency map (overlay, with ``--saliency-dir``) | one
  panel per ``--variant NAME=DIR`` pseudo-label variant, in order. C2AM maps, CAMs and pseudo labels exist for
  train images only, and
  DeepLab predicts val images only, so the DeepLab prediction is shown in its own grid:
- ``--out-grid-val``: one row per sampled val image: image | GT | DeepLab prediction | its errors (red: wrong
  class; GT ignore pixels are not marked).
  Both grids use the VOC palette with a legend of the class names.
- ``--out-boxes``: the C2AM class-agnostic box (red) against the GT boxes (green) on sampled train images, titled
  with the best IoU against a GT box.
- ``--out-loss``: training loss per step of each ``--train-log NAME=CSV`` (columns epoch,step,loss,lr), with a
  moving average and the learning rate.
- ``--out-tau``: the CAM-only threshold sweep (mIoU vs tau), with the oracle-tuned best and the fixed tau marked,
  and the cue-refined variants as horizontal lines (they have no tau).
- ``--out-iou-pseudo``: per-class IoU bars of every pseudo-label variant in ``--pseudo-json``.
- ``--out-iou-val``: per-class IoU bars of the final model (``--val-json``; ``--full-json`` adds the fully
  supervised reference and the weak/full ratio).
- ``--out-tables``: one self-contained HTML page with the metric tables of every stage: each ``--score-txt
  NAME=TXT`` report (``key: value`` lines) as a table, the pseudo-mask variants by class, the tau sweep, and the
  final model by class. (Snakemake's report shows HTML inline but offers ``.txt`` files only as downloads.)

"Top class" of the CAM column: among the image's CAM classes, the one with the most GT pixels (the main object;
without a GT mask, the one with the largest CAM sum).
The sample is ``random.Random(seed).sample`` of each split's ids, shown in id order.

Without ground truth (a folder dataset whose split has no masks): the GT and error panels show "—", the boxes
figure draws no GT box, and when ``--pseudo-json`` or ``--val-json`` is not given (the workflow leaves out a score
it cannot compute) the figures and tables that need it say "no ground truth: not scored".
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from c2am import defaults
from c2am.artifacts import load_boxes, load_cams, load_cue, load_map
from c2am.data.voc import Manifest
from c2am.figures import (
    boxes_figure, colorize, error_overlay, heat_overlay, image_grid, iou_bars, loss_figure, not_scored_figure,
    read_train_log, sample_ids, save_figure, tables_page, tau_figure, top_class, val_series, variants_of,
)
from c2am.io import IGNORE, InputError, load_json, save_text
from c2am.runtime import run_stage
from c2am.summary import variant_title

log = logging.getLogger("c2am.visualize")

TRAIN_COLUMNS = ("image", "GT", "CAM (top class)", "C2AM map", "cue (white = fg)")
VAL_COLUMNS = ("image", "GT", "DeepLab prediction", "errors (red)")


# ----------------------------------------------------------------------------- arguments


def named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH")
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.visualize", __doc__)
    p.add_argument("--manifest", type=Path, required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--maps-dir", type=Path, required=True, help="C2AM maps <id>.npy (infer_c2am)")
    p.add_argument("--cues-dir", type=Path, required=True, help="cues <id>.png, 255 = foreground (extract_cues)")
    p.add_argument("--c2am-boxes", type=Path, required=True, help="id -> [x1, y1, x2, y2] or null (c2am_boxes)")
    p.add_argument("--cams-dir", type=Path, required=True, help="class CAMs <id>.npz (infer_cam)")
    p.add_argument("--saliency-dir", type=Path, help="saliency maps <id>.npy (infer_saliency); a panel when given")
    p.add_argument("--variant", type=named_path, action="append", default=[], metavar="NAME=DIR",
                   help="a pseudo-label variant's folder (<id>.png), one panel each, titled by its variant name")
    p.add_argument("--pred-dir", type=Path, required=True, help="DeepLab val predictions <id>.png")
    p.add_argument("--train-log", type=named_path, action="append", default=[], metavar="NAME=CSV",
                   help="per-step training log (epoch,step,loss,lr); repeatable, one panel each")
    p.add_argument("--score-txt", type=named_path, action="append", default=[], metavar="NAME=TXT",
                   help="a stage's text report of 'key: value' lines, shown as a table; repeatable")
    p.add_argument("--pseudo-json", type=Path, default=None,
                   help="results/pseudo_masks.json (eval_pseudo); absent: pseudo masks not scored")
    p.add_argument("--val-json", type=Path, default=None, help="final val scores (evaluate); absent: not scored")
    p.add_argument("--full-json", type=Path, default=None, help="fully supervised val scores (optional)")
    p.add_argument("--n-train", type=int, default=6, help="rows of the train grid")
    p.add_argument("--n-val", type=int, default=4, help="rows of the val grid")
    p.add_argument("--n-boxes", type=int, default=8, help="images of the boxes figure")
    for name in ("grid-train", "grid-val", "boxes", "loss", "tau", "iou-pseudo", "iou-val"):
        p.add_argument(f"--out-{name}", type=Path, required=True, help="PNG to write")
    p.add_argument("--out-tables", type=Path, required=True, help="HTML page of metric tables to write")
    p.add_argument("--seed", type=int, default=0, help="drives the image sample")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key in ("n_train", "n_val", "n_boxes"):
        if getattr(args, key) < 1:
            raise InputError(f"--{key.replace('_', '-')}: must be at least 1, got {getattr(args, key)}")
    return args


# ----------------------------------------------------------------------------- rows of the grids


def train_rows(manifest: Manifest, ids: list[str], args) -> list[list[tuple[np.ndarray | None, str]]]:
    rows = []
    for image_id in ids:
        image = manifest.load_image(image_id)
        gt = manifest.load_mask(image_id) if manifest.has_mask(image_id) else None
        shape = image.shape[:2]
        cams, classes = load_cams(args.cams_dir / f"{image_id}.npz", shape)
        if gt is not None:
            k = top_class(classes, gt)
        else:
            k = int(np.argmax(cams.reshape(len(classes), -1).sum(axis=1))) if len(classes) else None
        cam_panel = (heat_overlay(image, cams[k]), manifest.classes[classes[k]]) if k is not None else (None, "")
        fg = load_map(args.maps_dir / f"{image_id}.npy", shape)
        cue = np.where(load_cue(args.cues_dir / f"{image_id}.png", shape), 255, 0).astype(np.uint8)
        row = [
            (image, ""),
            (None if gt is None else colorize(gt), ""),
            cam_panel,
            (heat_overlay(image, fg), ""),
            (np.repeat(cue[..., None], 3, axis=2), ""),
        ]
        if args.saliency_dir is not None:
            row.append((heat_overlay(image, load_map(args.saliency_dir / f"{image_id}.npy", shape)), ""))
        row += [(colorize(manifest.load_mask(image_id, mask_dir=folder)), "") for _, folder in args.variant]
        rows.append(row)
    return rows


def train_columns(args) -> tuple[str, ...]:
    saliency = ("saliency map",) if args.saliency_dir is not None else ()
    return TRAIN_COLUMNS + saliency + tuple(variant_title(name, symbol="τ") for name, _ in args.variant)


def val_rows(manifest: Manifest, ids: list[str], pred_dir: Path) -> list[list[tuple[np.ndarray | None, str]]]:
    rows = []
    for image_id in ids:
        image = manifest.load_image(image_id)
        pred = manifest.load_mask(image_id, mask_dir=pred_dir)
        if not manifest.has_mask(image_id):
            rows.append([(image, ""), (None, "no GT"), (colorize(pred), ""), (None, "")])
            continue
        gt = manifest.load_mask(image_id)
        valid = gt != IGNORE
        acc = float((pred[valid] == gt[valid]).mean()) if valid.any() else float("nan")
        rows.append([(image, ""), (colorize(gt), ""), (colorize(pred), ""),
                     (error_overlay(image, gt, pred), f"pixel acc {100 * acc:.0f}%")])
    return rows


# ----------------------------------------------------------------------------- main


def main(argv=None) -> None:
    args = parse_args(argv)
    manifest = Manifest.load(args.manifest)
    train_ids = sample_ids(manifest.ids("train"), args.n_train, args.seed)
    val_ids = sample_ids(manifest.ids("val"), args.n_val, args.seed)
    box_ids = sample_ids(manifest.ids("train"), args.n_boxes, args.seed + 1)

    if not args.variant:
        raise InputError("--variant: give at least one NAME=DIR pseudo-label folder")
    save_figure(image_grid(train_rows(manifest, train_ids, args), train_columns(args), train_ids, manifest.classes,
                           "Train images: class CAM vs class-agnostic C2AM map, and the pseudo labels"),
                args.out_grid_train)
    save_figure(image_grid(val_rows(manifest, val_ids, args.pred_dir), VAL_COLUMNS, val_ids, manifest.classes,
                           "Val images: the final DeepLab prediction"), args.out_grid_val)
    save_figure(boxes_figure(manifest, box_ids, load_boxes(args.c2am_boxes), args.c2am_boxes), args.out_boxes)

    if not args.train_log:
        raise InputError("--train-log: give at least one NAME=CSV training log")
    save_figure(loss_figure([(name, read_train_log(path)) for name, path in args.train_log]), args.out_loss)

    pseudo = load_json(args.pseudo_json) if args.pseudo_json is not None else None
    if pseudo is None:
        save_figure(not_scored_figure("CAM-only threshold sweep"), args.out_tau)
        save_figure(not_scored_figure("Pseudo masks: per-class IoU"), args.out_iou_pseudo)
    else:
        save_figure(tau_figure(pseudo, args.pseudo_json), args.out_tau)
        series = [(variant_title(name, symbol="τ"), v) for name, v in variants_of(pseudo, args.pseudo_json).items()]
        save_figure(iou_bars(series, manifest.classes,
                             f"Pseudo masks: per-class IoU on '{pseudo.get('split', '?')}'"), args.out_iou_pseudo)

    val = None
    if args.val_json is None:
        save_figure(not_scored_figure("Final model: per-class IoU on val"), args.out_iou_val)
    else:
        full = load_json(args.full_json) if args.full_json is not None else None
        val, title = val_series(load_json(args.val_json), args.val_json, full)
        save_figure(iou_bars(val, manifest.classes, title), args.out_iou_val)

    save_text(args.out_tables, tables_page(args.score_txt, pseudo, args.pseudo_json, val, manifest.classes))
    log.info("wrote %s", args.out_tables)


if __name__ == "__main__":
    sys.exit(run_stage(main))
