"""Figures for people: what each stage produced on a fixed, seeded sample of images, and the run's curves.

Outputs (PNG, written atomically; every one is required, so a missing artifact stops the stage naming it):

- ``--out-grid-train``: one row per sampled train image: image | GT | classifier CAM of the top class (heat-map
  overlay) | C2AM map (overlay) | cue (white = foreground) | CAM-only pseudo label (fixed tau) | refined pseudo
  label (CAM + cue) | CRF pseudo label. C2AM maps, CAMs and pseudo labels exist for train images only, and
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

"Top class" of the CAM column: among the image's CAM classes, the one with the most GT pixels (the main object).
The sample is ``random.Random(seed).sample`` of each split's ids, shown in id order.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import random
import sys
from pathlib import Path

import numpy as np

from c2am.data.voc import IGNORE, Manifest
from c2am.io import (
    InputError, atomic_path, load_json, load_label_png, load_npy, load_npz, run_stage, save_text, voc_palette,
)

log = logging.getLogger("c2am.visualize")

CELL_INCHES = 1.7  # size of one grid cell
DPI = 100
HEAT_ALPHA = 0.5  # weight of the heat map over the image
TRAIN_COLUMNS = ("image", "GT", "CAM (top class)", "C2AM map", "cue (white = fg)",
                 "CAM only (fixed τ)", "CAM + cue", "CAM + cue + CRF")
VAL_COLUMNS = ("image", "GT", "DeepLab prediction", "errors (red)")
VARIANT_TITLES = {
    "cam_best_tau": "CAM only, best τ (oracle-tuned)",
    "cam_fixed_tau": "CAM only, fixed τ",
    "cam_cues": "CAM + C2AM cue",
    "cam_cues_crf": "CAM + C2AM cue + CRF",
}
PALETTE = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
ERROR_RGB = np.array([230, 25, 25], dtype=np.float32)


# ----------------------------------------------------------------------------- arguments


def named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH")
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.visualize", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True, help="dataset manifest JSON (prepare_dataset)")
    p.add_argument("--maps-dir", type=Path, required=True, help="C2AM maps <id>.npy (infer_c2am)")
    p.add_argument("--cues-dir", type=Path, required=True, help="cues <id>.png, 255 = foreground (extract_cues)")
    p.add_argument("--boxes-json", type=Path, required=True, help="id -> [x1, y1, x2, y2] or null (c2am_boxes)")
    p.add_argument("--cams-dir", type=Path, required=True, help="class CAMs <id>.npz (infer_cam)")
    p.add_argument("--tau-dir", type=Path, required=True, help="CAM-only pseudo labels (fixed tau)")
    p.add_argument("--refined-dir", type=Path, required=True, help="CAM + cue pseudo labels")
    p.add_argument("--crf-dir", type=Path, required=True, help="CAM + cue + CRF pseudo labels")
    p.add_argument("--pred-dir", type=Path, required=True, help="DeepLab val predictions <id>.png")
    p.add_argument("--train-log", type=named_path, action="append", default=[], metavar="NAME=CSV",
                   help="per-step training log (epoch,step,loss,lr); repeatable, one panel each")
    p.add_argument("--score-txt", type=named_path, action="append", default=[], metavar="NAME=TXT",
                   help="a stage's text report of 'key: value' lines, shown as a table; repeatable")
    p.add_argument("--pseudo-json", type=Path, required=True, help="results/pseudo_masks.json (eval_pseudo)")
    p.add_argument("--val-json", type=Path, required=True, help="final val scores (evaluate)")
    p.add_argument("--full-json", type=Path, default=None, help="fully supervised val scores (optional)")
    p.add_argument("--n-train", type=int, default=6, help="rows of the train grid")
    p.add_argument("--n-val", type=int, default=4, help="rows of the val grid")
    p.add_argument("--n-boxes", type=int, default=8, help="images of the boxes figure")
    for name in ("grid-train", "grid-val", "boxes", "loss", "tau", "iou-pseudo", "iou-val"):
        p.add_argument(f"--out-{name}", type=Path, required=True, help="PNG to write")
    p.add_argument("--out-tables", type=Path, required=True, help="HTML page of metric tables to write")
    p.add_argument("--seed", type=int, default=0, help="drives the image sample")
    p.add_argument("--threads", type=int, default=1, help="accepted for uniformity; drawing is single-threaded")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="accepted; runs on the CPU")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key in ("n_train", "n_val", "n_boxes"):
        if getattr(args, key) < 1:
            raise InputError(f"--{key.replace('_', '-')}: must be at least 1, got {getattr(args, key)}")
    return args


# ----------------------------------------------------------------------------- drawing helpers


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display; imported here so that importing this module is cheap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    log.info("wrote %s", path)


def sample_ids(ids: list[str], n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` ids (all of them when fewer), in id order."""
    picked = random.Random(seed).sample(list(ids), min(n, len(ids)))
    return sorted(picked)


def colorize(label: np.ndarray) -> np.ndarray:
    """HxW label indices -> HxWx3 uint8 VOC-palette colours (255, uncertain/ignore, is the palette's cream)."""
    return PALETTE[label]


def heat_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Blend a [0, 1] map, coloured with the jet colour map, over an RGB uint8 image."""
    import matplotlib

    rgb = matplotlib.colormaps["jet"](np.clip(heat.astype(np.float32), 0.0, 1.0))[..., :3]
    out = (1.0 - HEAT_ALPHA) * image.astype(np.float32) / 255.0 + HEAT_ALPHA * rgb
    return (np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def error_overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The image, dimmed, with pixels whose prediction differs from the GT in red (GT ignore pixels not marked)."""
    out = image.astype(np.float32) * 0.4
    wrong = (pred != gt) & (gt != IGNORE)
    out[wrong] = ERROR_RGB
    return out.astype(np.uint8)


def legend_handles(classes: list[str]):
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=PALETTE[i] / 255.0, edgecolor="black", linewidth=0.5, label=name)
               for i, name in enumerate(classes)]
    handles.append(Patch(facecolor=PALETTE[IGNORE] / 255.0, edgecolor="black", linewidth=0.5,
                         label="ignore / uncertain"))
    return handles


def image_grid(rows: list[list[tuple[np.ndarray | None, str]]], columns, row_titles: list[str],
               classes: list[str], title: str):
    """A figure with one row per image and one column per panel; a panel is (RGB array or None, corner note)."""
    plt = pyplot()
    n_rows, n_cols = len(rows), len(columns)
    # cells take the images' shape, so that rows are not padded with white space
    aspect = float(np.mean([row[0][0].shape[0] / row[0][0].shape[1] for row in rows]))
    legend_inches = 0.25 * math.ceil((len(classes) + 1) / 8) + 0.1
    title_inches = 0.3 + 0.2  # suptitle + column titles
    height = n_rows * (CELL_INCHES * aspect + 0.12) + legend_inches + title_inches
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(n_cols * CELL_INCHES, height))
    for r, row in enumerate(rows):
        for c, (panel, note) in enumerate(row):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if panel is None:
                ax.text(0.5, 0.5, "—", ha="center", va="center", fontsize=14, transform=ax.transAxes)
            else:
                ax.imshow(panel, interpolation="nearest")
            if note:
                ax.text(0.02, 0.98, note, ha="left", va="top", fontsize=7, color="white", transform=ax.transAxes,
                        bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        axes[r][0].set_ylabel(row_titles[r], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.legend(handles=legend_handles(classes), loc="lower center", ncol=min(8, len(classes) + 1), fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1 - 0.3 / height), h_pad=0.3, w_pad=0.3)
    return fig


# ----------------------------------------------------------------------------- loading


def need_file(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return path


def load_label(manifest: Manifest, folder: Path, image_id: str) -> np.ndarray:
    """A label PNG of ``folder``, validated against the image's size and the class list."""
    need_file(folder / f"{image_id}.png")
    return manifest.load_mask(image_id, mask_dir=folder)


def load_map(path: Path, shape: tuple[int, int]) -> np.ndarray:
    fg = load_npy(path)
    if fg.shape != tuple(shape):
        raise InputError(f"{path}: map size {fg.shape[::-1]} differs from the image's {tuple(shape)[::-1]}")
    return fg.astype(np.float32)


def load_cams(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    data = load_npz(path)
    if "cams" not in data or "classes" not in data:
        raise InputError(f"{path}: expected arrays 'cams' and 'classes', found {sorted(data)}")
    cams, classes = data["cams"], data["classes"].astype(np.int64)
    if cams.ndim != 3 or cams.shape[0] != len(classes) or cams.shape[1:] != tuple(shape):
        raise InputError(f"{path}: CAMs of shape {cams.shape} do not match {len(classes)} classes "
                         f"on a {shape[1]}x{shape[0]} image")
    return cams.astype(np.float32), classes


def top_class(classes: np.ndarray, gt: np.ndarray) -> int | None:
    """Index into ``classes`` of the class with the most GT pixels (first on a tie); None without classes."""
    if len(classes) == 0:
        return None
    areas = [int((gt == c).sum()) for c in classes]
    return int(np.argmax(areas))


def load_boxes(path: Path) -> dict:
    boxes = load_json(path)
    if not isinstance(boxes, dict):
        raise InputError(f"{path}: expected an object mapping image id to a box or null")
    for image_id, box in boxes.items():
        if box is not None and (not isinstance(box, list) or len(box) != 4):
            raise InputError(f"{path}: box of {image_id} is {box!r}, expected [x1, y1, x2, y2] or null")
    return boxes


def read_train_log(path: Path) -> dict[str, np.ndarray]:
    """Columns step, loss, lr, epoch of a training CSV log as arrays."""
    need_file(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"epoch", "step", "loss", "lr"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: training log lacks column(s) {sorted(missing)}")
        rows = list(reader)
    try:
        return {k: np.array([float(r[k]) for r in rows]) for k in ("epoch", "step", "loss", "lr")}
    except ValueError as e:
        raise InputError(f"{path}: non-numeric value in the training log ({e})") from None


def variants_of(pseudo: dict, path: Path) -> dict:
    if "variants" not in pseudo or "tau_sweep" not in pseudo:
        raise InputError(f"{path}: not an eval_pseudo report (needs 'variants' and 'tau_sweep')")
    return pseudo["variants"]


# ----------------------------------------------------------------------------- figures


def train_rows(manifest: Manifest, ids: list[str], args) -> list[list[tuple[np.ndarray | None, str]]]:
    rows = []
    for image_id in ids:
        image = manifest.load_image(image_id)
        gt = manifest.load_mask(image_id)
        shape = gt.shape
        cams, classes = load_cams(need_file(args.cams_dir / f"{image_id}.npz"), shape)
        k = top_class(classes, gt)
        cam_panel = (heat_overlay(image, cams[k]), manifest.classes[classes[k]]) if k is not None else (None, "")
        fg = load_map(need_file(args.maps_dir / f"{image_id}.npy"), shape)
        cue = load_label_png(need_file(args.cues_dir / f"{image_id}.png"))
        if cue.shape != shape:
            raise InputError(f"{args.cues_dir / f'{image_id}.png'}: cue size differs from the image's")
        rows.append([
            (image, ""),
            (colorize(gt), ""),
            cam_panel,
            (heat_overlay(image, fg), ""),
            (np.repeat(cue[..., None], 3, axis=2), ""),
            (colorize(load_label(manifest, args.tau_dir, image_id)), ""),
            (colorize(load_label(manifest, args.refined_dir, image_id)), ""),
            (colorize(load_label(manifest, args.crf_dir, image_id)), ""),
        ])
    return rows


def val_rows(manifest: Manifest, ids: list[str], pred_dir: Path) -> list[list[tuple[np.ndarray | None, str]]]:
    rows = []
    for image_id in ids:
        image = manifest.load_image(image_id)
        gt = manifest.load_mask(image_id)
        pred = load_label(manifest, pred_dir, image_id)
        valid = gt != IGNORE
        acc = float((pred[valid] == gt[valid]).mean()) if valid.any() else float("nan")
        rows.append([(image, ""), (colorize(gt), ""), (colorize(pred), ""),
                     (error_overlay(image, gt, pred), f"pixel acc {100 * acc:.0f}%")])
    return rows


def boxes_figure(manifest: Manifest, ids: list[str], boxes: dict, boxes_path: Path):
    from matplotlib.patches import Rectangle

    from c2am.metrics import box_iou

    plt = pyplot()
    n_cols = min(4, len(ids))
    n_rows = math.ceil(len(ids) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(n_cols * 2.2, n_rows * 2.4 + 0.4))
    for ax in axes.flat:
        ax.axis("off")
    for ax, image_id in zip(axes.flat, ids):
        if image_id not in boxes:
            raise InputError(f"{boxes_path}: no entry for image {image_id}")
        ax.imshow(manifest.load_image(image_id))
        gt_boxes = manifest.gt_boxes(image_id)
        for cls, (x1, y1, x2, y2) in gt_boxes:
            # inclusive pixel indices: the box edge runs along the outer pixel borders
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1, fill=False,
                                   edgecolor="lime", linewidth=1.5))
            ax.text(x1, y1, manifest.classes[cls], fontsize=6, color="black", va="bottom",
                    bbox={"facecolor": "lime", "alpha": 0.8, "pad": 0.5, "linewidth": 0})
        box = boxes[image_id]
        if box is None:
            title = "no C2AM box"
        else:
            x1, y1, x2, y2 = box
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1, fill=False,
                                   edgecolor="red", linewidth=1.5, linestyle="--"))
            best = max((box_iou(box, b) for _, b in gt_boxes), default=0.0)
            title = f"IoU {best:.2f}" + (" ✓" if best >= 0.5 else "")
        ax.set_title(f"{image_id}: {title}", fontsize=7)
    fig.suptitle("C2AM class-agnostic box (red, dashed) vs GT boxes (green)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (the first points average what exists so far)."""
    cumsum = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[start]) / (idx - start)


def loss_figure(logs: list[tuple[str, dict[str, np.ndarray]]]):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(logs), squeeze=False, figsize=(4.2 * len(logs), 3.2))
    for ax, (name, data) in zip(axes[0], logs):
        step, loss = data["step"], data["loss"]
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if len(step) == 0:
            ax.text(0.5, 0.5, "empty log", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.plot(step, loss, color="tab:blue", alpha=0.35, linewidth=0.8, label="per step")
        window = max(1, len(step) // 20)
        ax.plot(step, moving_average(loss, window), color="tab:blue", linewidth=1.8, label=f"mean of {window}")
        for boundary in step[np.flatnonzero(np.diff(data["epoch"])) + 1]:
            ax.axvline(boundary - 0.5, color="gray", linewidth=0.5, linestyle=":")
        lr_ax = ax.twinx()
        lr_ax.plot(step, data["lr"], color="tab:orange", linewidth=1.0, linestyle="--", label="lr")
        lr_ax.set_ylabel("lr", color="tab:orange", fontsize=8)
        lr_ax.tick_params(axis="y", labelsize=7, colors="tab:orange")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Training loss per step (dotted: epoch boundaries)", fontsize=10)
    fig.tight_layout()
    return fig


def tau_figure(pseudo: dict, path: Path):
    variants = variants_of(pseudo, path)
    taus, mious = pseudo["tau_sweep"]["tau"], pseudo["tau_sweep"]["miou"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(taus, mious, marker="o", markersize=3, color="tab:blue", label="CAM only: argmax[τ, CAMs]")
    best = variants.get("cam_best_tau")
    if best is not None:
        ax.plot([best["tau"]], [best["miou"]], marker="*", markersize=14, color="tab:blue", linestyle="none",
                label=f"best τ={best['tau']:.2f} (oracle-tuned): {best['miou']:.1f}")
    fixed = variants.get("cam_fixed_tau")
    if fixed is not None:
        ax.plot([fixed["tau"]], [fixed["miou"]], marker="s", markersize=7, color="tab:gray", linestyle="none",
                label=f"fixed τ={fixed['tau']:.2f}: {fixed['miou']:.1f}")
    colors = iter(["tab:red", "tab:green", "tab:purple", "tab:brown"])
    for name, v in variants.items():
        if name in ("cam_best_tau", "cam_fixed_tau") or v.get("miou") is None:
            continue
        ax.axhline(v["miou"], color=next(colors, "black"), linestyle="--", linewidth=1.5,
                   label=f"{VARIANT_TITLES.get(name, name)} (no τ): {v['miou']:.1f}")
    ax.set_xlabel("τ (constant background score)")
    ax.set_ylabel("pseudo-mask mIoU (%)")
    ax.set_title(f"Threshold sweep on '{pseudo.get('split', '?')}' ({pseudo.get('num_images', '?')} images)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def iou_bars(series: list[tuple[str, dict]], classes: list[str], title: str):
    """Grouped bars: one group per class (plus the mean), one bar per series; an absent class (None) gets no bar."""
    plt = pyplot()
    names = list(classes) + ["mIoU"]
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) * max(1, len(series)) ** 0.5 + 2), 4))
    x = np.arange(len(names))
    for i, (label, scores) in enumerate(series):
        values = [scores["iou"].get(c) for c in classes] + [scores.get("miou")]
        heights = np.array([np.nan if v is None else v for v in values], dtype=float)
        miou = scores.get("miou")
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width,
               label=f"{label}: " + ("n/a" if miou is None else f"{miou:.1f}"))
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.axvline(len(classes) - 0.5, color="gray", linewidth=0.8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def val_series(val: dict, val_path: Path, full: dict | None) -> tuple[list[tuple[str, dict]], str]:
    if "iou" not in val:
        raise InputError(f"{val_path}: not an evaluate report (no 'iou')")
    trained_on = Path(val.get("pred_dir", "?")).parent.name or "pseudo labels"
    series = [(f"DeepLab on {trained_on}", val)]
    title = "Final model: per-class IoU on val"
    if full is not None:
        series.append(("DeepLab on GT (fully supervised)", full))
        if val.get("miou") and full.get("miou"):
            title += f" (weak/full = {val['miou'] / full['miou']:.2f})"
    return series, title


# ----------------------------------------------------------------------------- metric tables (HTML)

TABLE_STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
    "th{background:#eee}h3{font-size:15px;margin:0.8em 0 0.2em}"
)


def fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def html_table(caption: str, header: list[str], rows: list[list]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<h3>{escape(caption)}</h3><table><tr>{head}</tr>{body}</table>"


def score_txt_rows(path: Path) -> list[list[str]]:
    """``key: value`` lines of a stage's text report as [key, value] rows (other lines are kept whole)."""
    rows = []
    for line in need_file(path).read_text().splitlines():
        key, sep, value = line.partition(":")
        if line.strip():
            rows.append([key.strip(), value.strip()] if sep else [line.strip(), ""])
    return rows


def by_class_rows(series: list[tuple[str, dict]], classes: list[str]) -> list[list]:
    """One row per series: its name, mIoU and the IoU of each class (percent)."""
    return [[name, scores.get("miou"), *[scores["iou"].get(c) for c in classes]] for name, scores in series]


def tables_page(scores: list[tuple[str, Path]], pseudo: dict, pseudo_path: Path,
                val_series_: list[tuple[str, dict]], classes: list[str]) -> str:
    from html import escape

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{TABLE_STYLE}</style></head><body>"]
    for name, path in scores:
        parts.append(html_table(f"{name} ({path.name})", ["metric", "value"], score_txt_rows(path)))
    header = ["variant", "mIoU", *classes]
    series = [(VARIANT_TITLES.get(n, n), v) for n, v in variants_of(pseudo, pseudo_path).items()]
    parts.append(html_table(f"Pseudo masks: IoU (%) on split '{pseudo.get('split', '?')}'", header,
                            by_class_rows(series, classes)))
    sweep = pseudo["tau_sweep"]
    parts.append(html_table("CAM-only threshold sweep (the best tau is oracle-tuned)", ["tau", "mIoU"],
                            [[t, m] for t, m in zip(sweep["tau"], sweep["miou"])]))
    parts.append(html_table("Final model: IoU (%) on val", ["model", "mIoU", *classes],
                            by_class_rows(val_series_, classes)))
    parts.append(f"<p>{escape('IoU in percent; — marks a class absent from both GT and prediction.')}</p>")
    return "".join(parts) + "</body></html>\n"


# ----------------------------------------------------------------------------- main


def main(argv=None) -> None:
    args = parse_args(argv)
    manifest = Manifest.load(args.manifest)
    train_ids = sample_ids(manifest.ids("train"), args.n_train, args.seed)
    val_ids = sample_ids(manifest.ids("val"), args.n_val, args.seed)
    box_ids = sample_ids(manifest.ids("train"), args.n_boxes, args.seed + 1)

    save_figure(image_grid(train_rows(manifest, train_ids, args), TRAIN_COLUMNS, train_ids, manifest.classes,
                           "Train images: class CAM vs class-agnostic C2AM map, and the pseudo labels"),
                args.out_grid_train)
    save_figure(image_grid(val_rows(manifest, val_ids, args.pred_dir), VAL_COLUMNS, val_ids, manifest.classes,
                           "Val images: the final DeepLab prediction"), args.out_grid_val)
    save_figure(boxes_figure(manifest, box_ids, load_boxes(args.boxes_json), args.boxes_json), args.out_boxes)

    if not args.train_log:
        raise InputError("--train-log: give at least one NAME=CSV training log")
    save_figure(loss_figure([(name, read_train_log(path)) for name, path in args.train_log]), args.out_loss)

    pseudo = load_json(args.pseudo_json)
    save_figure(tau_figure(pseudo, args.pseudo_json), args.out_tau)
    series = [(VARIANT_TITLES.get(name, name), v) for name, v in variants_of(pseudo, args.pseudo_json).items()]
    save_figure(iou_bars(series, manifest.classes, f"Pseudo masks: per-class IoU on '{pseudo.get('split', '?')}'"),
                args.out_iou_pseudo)

    full = load_json(args.full_json) if args.full_json is not None else None
    val, title = val_series(load_json(args.val_json), args.val_json, full)
    save_figure(iou_bars(val, manifest.classes, title), args.out_iou_val)

    save_text(args.out_tables, tables_page(args.score_txt, pseudo, args.pseudo_json, val, manifest.classes))
    log.info("wrote %s", args.out_tables)


if __name__ == "__main__":
    sys.exit(run_stage(main))
