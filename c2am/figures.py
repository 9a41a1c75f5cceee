"""Drawing for people: figure grids, box overlays, training curves, the tau sweep, IoU bars and metric tables.

The visualize stage decides what to show; this module knows how. Everything is drawn with matplotlib on the Agg
backend (no display) and written atomically (c2am.io).
"""

from __future__ import annotations

import csv
import logging
import math
import random
from pathlib import Path

import numpy as np

from c2am.io import IGNORE, InputError, atomic_path, voc_palette
from c2am.summary import NOT_SCORED, variant_title

log = logging.getLogger("c2am.figures")

CELL_INCHES = 1.7  # size of one grid cell
DPI = 100
HEAT_ALPHA = 0.5  # weight of the heat map over the image
PALETTE = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
ERROR_RGB = np.array([230, 25, 25], dtype=np.float32)
TRAIN_LOG_COLUMNS = ("epoch", "step", "loss", "lr")  # the CSV log of c2am.training.fit


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


def top_class(classes: np.ndarray, gt: np.ndarray) -> int | None:
    """Index into ``classes`` of the class with the most GT pixels (first on a tie); None without classes."""
    if len(classes) == 0:
        return None
    areas = [int((gt == c).sum()) for c in classes]
    return int(np.argmax(areas))


def read_train_log(path: Path) -> dict[str, np.ndarray]:
    """Columns step, loss, lr, epoch of a training CSV log as arrays."""
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(TRAIN_LOG_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: training log lacks column(s) {sorted(missing)}")
        rows = list(reader)
    try:
        return {k: np.array([float(r[k]) for r in rows]) for k in TRAIN_LOG_COLUMNS}
    except ValueError as e:
        raise InputError(f"{path}: non-numeric value in the training log ({e})") from None


def variants_of(pseudo: dict, path: Path) -> dict:
    if "variants" not in pseudo or "tau_sweep" not in pseudo:
        raise InputError(f"{path}: not an eval_pseudo report (needs 'variants' and 'tau_sweep')")
    return pseudo["variants"]


def boxes_figure(manifest, ids: list[str], boxes: dict, boxes_path: Path):
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
        gt_boxes = manifest.gt_boxes(image_id) if manifest.has_boxes else []  # a folder dataset has none
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
            best = max((box_iou(box, b) for _, b in gt_boxes), default=None)
            title = "no GT box" if best is None else f"IoU {best:.2f}" + (" ✓" if best >= 0.5 else "")
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
                   label=f"{variant_title(name, symbol='τ')} (no τ): {v['miou']:.1f}")
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
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition(":")
        if line.strip():
            rows.append([key.strip(), value.strip()] if sep else [line.strip(), ""])
    return rows


def by_class_rows(series: list[tuple[str, dict]], classes: list[str]) -> list[list]:
    """One row per series: its name, mIoU and the IoU of each class (percent)."""
    return [[name, scores.get("miou"), *[scores["iou"].get(c) for c in classes]] for name, scores in series]


def tables_page(scores: list[tuple[str, Path]], pseudo: dict | None, pseudo_path: Path | None,
                val_series_: list[tuple[str, dict]] | None, classes: list[str]) -> str:
    """The metric tables; ``pseudo`` / ``val_series_`` None (a split without GT masks) say "not scored"."""
    from html import escape

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{TABLE_STYLE}</style></head><body>"]
    for name, path in scores:
        parts.append(html_table(f"{name} ({path.name})", ["metric", "value"], score_txt_rows(path)))
    header = ["variant", "mIoU", *classes]
    if pseudo is None:  # no GT masks in the pseudo_eval split
        parts.append(f"<h3>Pseudo masks</h3><p>{escape(NOT_SCORED)}</p>")
    else:
        series = [(variant_title(n, symbol="τ"), v) for n, v in variants_of(pseudo, pseudo_path).items()]
        parts.append(html_table(f"Pseudo masks: IoU (%) on split '{pseudo.get('split', '?')}'", header,
                                by_class_rows(series, classes)))
        sweep = pseudo["tau_sweep"]
        parts.append(html_table("CAM-only threshold sweep (the best tau is oracle-tuned)", ["tau", "mIoU"],
                                [[t, m] for t, m in zip(sweep["tau"], sweep["miou"])]))
    if val_series_ is None:  # no GT masks in the val split
        parts.append(f"<h3>Final model on val</h3><p>{escape(NOT_SCORED)}</p>")
    else:
        parts.append(html_table("Final model: IoU (%) on val", ["model", "mIoU", *classes],
                                by_class_rows(val_series_, classes)))
    parts.append(f"<p>{escape('IoU in percent; — marks a class absent from both GT and prediction.')}</p>")
    return "".join(parts) + "</body></html>\n"


# ----------------------------------------------------------------------------- placeholders and new images


def not_scored_figure(title: str, reason: str = NOT_SCORED):
    """A small figure that says why a score figure has no numbers (a split without GT masks)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.set_axis_off()
    ax.text(0.5, 0.62, title, ha="center", va="center", fontsize=10, transform=ax.transAxes)
    ax.text(0.5, 0.3, reason, ha="center", va="center", fontsize=12, color="tab:gray", transform=ax.transAxes)
    return fig


OVERLAY_ALPHA = 0.55  # weight of the class colour over the image, on the predicted objects


def prediction_overlay(image: np.ndarray, labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """The image (H x W x 3 uint8) with its predicted classes blended in (background left as it is), and a legend
    of the classes it shows in the top right corner; H x W x 3 uint8, the image's size exactly."""
    plt = pyplot()
    h, w = labels.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    shown = labels != 0
    blend = image.astype(np.float32)
    blend[shown] = (1 - OVERLAY_ALPHA) * blend[shown] + OVERLAY_ALPHA * colorize(labels)[shown]
    fig = plt.figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(blend.astype(np.uint8), interpolation="nearest", aspect="auto")
    handles = legend_handles(classes)  # classes, then ignore / uncertain
    present = [int(c) for c in np.unique(labels) if 0 < c < len(classes) or c == IGNORE]
    entries = [handles[c] if c != IGNORE else handles[-1] for c in present]
    if not entries:
        from matplotlib.patches import Patch

        entries = [Patch(facecolor="none", edgecolor="none", label=f"{classes[0]} only")]
    ax.legend(handles=entries, loc="upper right", fontsize=max(4.0, min(11.0, min(h, w) / 22)), framealpha=0.75,
              borderpad=0.3, handlelength=1.0, handletextpad=0.4, labelspacing=0.2)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    # Agg rounds the canvas to whole pixels: crop, or repeat the last row/column, to the exact image size.
    rgb = rgb[:h, :w]
    if rgb.shape[:2] != (h, w):
        rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
    return np.ascontiguousarray(rgb)


def sweep_figure(title: str, labels: list[str], scores: dict[str, list[tuple[float, float, int]]]):
    """One panel per score: its mean over seeds at each point of a sweep (x: the point's values), with a band of
    +- one standard deviation (none for a single seed)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(scores), squeeze=False, figsize=(max(3.6, 0.9 * len(labels) + 1.5) * len(scores),
                                                                    3.2))
    x = np.arange(len(labels))
    for ax, (name, stats) in zip(axes[0], scores.items()):
        mean = np.array([s[0] for s in stats])
        std = np.nan_to_num(np.array([s[1] for s in stats]))
        ax.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.2, label="± 1 std over seeds")
        ax.plot(x, mean, "o-", color="tab:blue", label="mean")
        ax.set_xticks(x, labels, fontsize=7, rotation=20 if len(labels) > 4 else 0)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
