"""The WSOL scores of both box sources, their text report, and the report figure (docs/method.md §10).

Box sources on the test split: ``localizer`` (the box regressor trained on C2AM's pseudo boxes) and ``c2am``
(the largest-region box of the C2AM map itself, at the threshold of box_threshold). Both get GT-known, top-1 /
top-5 localisation and top-1 / top-5 classification (the classifier's ranking) and MaxBoxAccV2
(c2am.wsol_metrics). The map source has map thresholds to choose; its MaxBoxAccV2 is reported twice: with
each IoU threshold's map threshold chosen on the held-out ``val`` split (the honest figure) and chosen on the
test split itself (what the official protocol reports: an ORACLE, labelled so).
"""

from __future__ import annotations

import math

import numpy as np

from c2am.wsol_metrics import best_iou, box_acc_v2, box_ious, localization_scores, max_box_acc, transfer_thresholds

SOURCES = ("localizer", "c2am")


def score_source(boxes: list, gt: list, scores: np.ndarray, labels: np.ndarray, deltas) -> dict:
    """GT-known, top-k loc / cls and BoxAccV2 of one box per image (``labels``: 0-based class columns)."""
    ious = box_ious(boxes, gt)
    out = localization_scores(ious, scores, labels)
    v2 = box_acc_v2(ious, deltas)
    out.update(maxboxacc_v2=v2["maxboxacc_v2"], box_acc=v2["per_iou"], mean_iou=float(ious.mean()),
               images=len(boxes), no_box=sum(b is None for b in boxes))
    return out


def score_maps(val_curves: np.ndarray, test_curves: np.ndarray, taus, deltas) -> dict:
    """MaxBoxAccV2 of the C2AM maps: thresholds from the held-out split, and the test-split oracle."""
    return {"held_out": transfer_thresholds(val_curves, test_curves, taus, deltas),
            "oracle": max_box_acc(test_curves, taus, deltas)}


def _p(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_report(result: dict) -> str:
    """``key: value`` lines; the first is ``gt_known_loc`` of the localizer."""
    loc, cam, maps = result["localizer"], result["c2am"], result["c2am_maps"]
    deltas = list(loc["box_acc"])
    lines = [
        f"gt_known_loc: {_p(loc['gt_known_loc'])}",
        f"top1_loc: {_p(loc['top1_loc'])}",
        f"top5_loc: {_p(loc['top5_loc'])}",
        f"top1_cls: {_p(loc['top1_cls'])}",
        f"top5_cls: {_p(loc['top5_cls'])}",
        f"maxboxacc_v2: {_p(loc['maxboxacc_v2'])} (box regressor: one box, no map threshold; "
        f"mean BoxAcc over IoU {', '.join(deltas)})",
        "box_acc: " + ", ".join(f"IoU {d}: {_p(v)}" for d, v in loc["box_acc"].items()),
        f"mean_iou: {_p(loc['mean_iou'])}",
        f"c2am_gt_known_loc: {_p(cam['gt_known_loc'])} (largest region of the map at tau "
        f"{result['box_threshold']['threshold']:.2f}, method {result['box_threshold']['method']})",
        f"c2am_top1_loc: {_p(cam['top1_loc'])}",
        f"c2am_top5_loc: {_p(cam['top5_loc'])}",
        f"c2am_maxboxacc_v2: {_p(maps['held_out']['maxboxacc_v2'])} (map thresholds chosen on the held-out "
        f"'{result['held_out_split']}' split: "
        + ", ".join(f"IoU {d}: tau {v['tau']:.2f} -> {_p(v['box_acc'])}" for d, v in maps["held_out"]["per_iou"].items())
        + ")",
        f"c2am_maxboxacc_v2_oracle: {_p(maps['oracle']['maxboxacc_v2'])} (ORACLE: map thresholds chosen on this "
        "test split, as the official protocol reports it: "
        + ", ".join(f"IoU {d}: tau {v['tau']:.2f} -> {_p(v['box_acc'])}" for d, v in maps["oracle"]["per_iou"].items())
        + ")",
        f"split: {result['split']} ({loc['images']} images, {result['num_classes']} classes); "
        f"classifier top-1 {_p(loc['top1_cls'])}",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the report figure


def lowest_iou_ids(ids: list[str], gt, boxes: dict, n: int) -> list[str]:
    """The ``n`` ids whose box has the lowest IoU with its GT boxes, worst first (a missing box counts 0; ties in
    id order)."""
    ious = box_ious([boxes.get(i) for i in ids], [gt.boxes_of(i) for i in ids])
    return [i for _, i in sorted(zip(ious, ids))[:n]]


def wsol_boxes_figure(manifest, ids: list[str], gt, localizer: dict, c2am: dict, scores: dict, classes: list[str],
                      title: str = "WSOL on the test split"):
    """Test images with the GT box (green), the C2AM box (red, dashed) and the localizer box (yellow)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from c2am.data.wsol import class_index
    from c2am.figures import pyplot

    plt = pyplot()
    n_cols = min(4, len(ids))
    n_rows = math.ceil(len(ids) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(n_cols * 2.4, n_rows * 3.0 + 0.6))
    for ax in axes.flat:
        ax.axis("off")

    def draw(ax, box, colour, style):
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1, fill=False, edgecolor=colour,
                               linewidth=1.6, linestyle=style))

    for ax, image_id in zip(axes.flat, ids):
        ax.imshow(manifest.load_image(image_id))
        gts = gt.boxes_of(image_id)
        for b in gts:
            draw(ax, b, "lime", "-")
        parts = []
        for name, boxes, colour, style in (("C2AM", c2am, "red", "--"), ("loc", localizer, "yellow", "-")):
            box = boxes.get(image_id)
            if box is None:
                parts.append(f"{name} —")
                continue
            draw(ax, box, colour, style)
            parts.append(f"{name} {best_iou([box], gts):.2f}")
        true = class_index(manifest, image_id)
        pred = int(np.argmax(scores[image_id])) + 1
        mark = "✓" if pred == true else "✗"
        ax.set_title(f"IoU {' · '.join(parts)}\nclass {mark} {classes[pred]}", fontsize=6.5)
    handles = [Line2D([], [], color="lime", label="GT box"),
               Line2D([], [], color="red", linestyle="--", label="C2AM box (map)"),
               Line2D([], [], color="yellow", label="localizer box")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"{title}: GT (green), C2AM map box (red, dashed), localizer (yellow)", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95), h_pad=1.5)
    return fig
