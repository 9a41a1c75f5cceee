"""Run summary: the table printed at the end of a successful run (Snakefile ``onsuccess``; ``python -m c2am.summary``).

Reads what the run left in its working directory and prints:

- pseudo-mask mIoU of each variant (``results/pseudo_masks.json``, written by eval_pseudo);
- the final val mIoU (``results/voc_miou.txt``) and, when ``results/fully_supervised_miou.txt`` exists, the fully
  supervised reference and the weak/full ratio;
- the wall time of each stage from its ``benchmarks/<rule>.tsv`` (Snakemake benchmark format, column ``s``; the
  mean over repeats), in DAG order, and their sum;
- the number of new images predicted (``results/predict/``), when the run predicted any;
- the WSOL scores (``results/wsol.json``, eval_wsol), when the run made them; a WSOL-only run shows no
  segmentation lines.

A split whose images have no GT mask (``artifacts/dataset/manifest.json``: a folder dataset) is shown as
"no ground truth: not scored"; one with masks for some images says how many were scored.

A file that is absent (a run that stopped at an earlier target) is shown as ``—``; one that cannot be read is
named with the reason. Only the standard library is used, so that the Snakemake process can import this module
whatever environment it runs in.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

MISSING = "—"
NOT_SCORED = "no ground truth: not scored"  # a split without GT masks (users' own data), here and in the report
WIDTH = 46  # label column
# Rule names in DAG order; a benchmark file is <rule>.tsv or <rule>_<wildcards>.tsv.
STAGE_ORDER = (
    "prepare_dataset", "train_c2am", "infer_c2am", "extract_cues", "eval_c2am", "c2am_boxes", "train_classifier",
    "infer_cam", "train_saliency", "infer_saliency", "refine_cams", "refine_fixed_tau", "crf_labels", "robust_labels",
    "train_affinity", "random_walk", "eval_pseudo", "train_deeplab", "infer_deeplab", "evaluate",
    "visualize", "predict",
    "prepare_wsol", "wsol_train_c2am", "wsol_infer_c2am", "box_threshold", "pseudo_boxes", "test_boxes",
    "train_localizer", "infer_localizer", "wsol_train_classifier", "infer_classes", "eval_wsol", "wsol_figures",
)
# What people read for each pseudo-label variant, here and in the figures (c2am.figures).
VARIANT_TITLES = {
    "cam_best_tau": "CAM only, best {symbol}{value} (oracle-tuned)",
    "cam_fixed_tau": "CAM only, fixed {symbol}{value}",
    "cam_cues": "CAM + C2AM cue",
    "cam_cues_crf": "CAM + C2AM cue + CRF",
    "cam_cues_crf_robust": "CAM + C2AM cue + CRF, robust",
    "cam_sal": "CAM + saliency",
    "cam_sal_crf": "CAM + saliency + CRF",
    "cam_sal_crf_robust": "CAM + saliency + CRF, robust",
}


def variant_title(name: str, symbol: str = "tau", value: str = "") -> str:
    """The title of a variant (its name when unknown); ``symbol`` names tau, ``value`` follows it. The random
    walk's variants ``<base>_rw[_robust]`` are titled after their base."""
    for suffix, added in (("_rw_robust", " + random walk, robust"), ("_rw", " + random walk")):
        if name.endswith(suffix) and name[: -len(suffix)] in VARIANT_TITLES:
            return variant_title(name[: -len(suffix)], symbol, value) + added
    return VARIANT_TITLES[name].format(symbol=symbol, value=value) if name in VARIANT_TITLES else name


class Unreadable(Exception):
    """A result file that exists but cannot be parsed; the message says why."""


def row(label: str, value: str) -> str:
    return f"  {label:<{WIDTH}} {value}"


def read_miou_txt(path: Path) -> float | None:
    """The number of the first line ``mIoU: xx.xx`` of an evaluate report; None when the file is absent."""
    if not path.is_file():
        return None
    first = (path.read_text().splitlines() or [""])[0]
    key, _, value = first.partition(":")
    try:
        if key.strip() != "mIoU":
            raise ValueError
        return float(value)
    except ValueError:
        raise Unreadable(f"{path}: first line {first!r} is not 'mIoU: <number>'") from None


def ground_truth(workdir: Path) -> dict[str, tuple[int, int]] | None:
    """Per split role, (images with a GT mask, images), from the run's manifest; None without a readable one."""
    try:
        data = json.loads((workdir / "artifacts" / "dataset" / "manifest.json").read_text())
        masked = None if data.get("masked") is None else set(data["masked"])
        return {role: (len(ids) if masked is None else sum(i in masked for i in ids), len(ids))
                for role, ids in data["splits"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def unscored(gt: dict | None, role: str) -> bool:
    """Whether the manifest says that no image of ``role`` has a GT mask."""
    return gt is not None and gt.get(role, (1, 1))[0] == 0


def image_count(n, total) -> str:
    return f"{n} images" if total in (None, n) else f"{n} of {total} images, those with a GT mask"


def pseudo_lines(path: Path, gt: dict | None = None) -> list[str]:
    if not path.is_file():
        value = NOT_SCORED if unscored(gt, "pseudo_eval") else MISSING
        return ["Pseudo masks (mIoU %):", row("results/pseudo_masks.json", value)]
    try:
        report = json.loads(path.read_text())
        variants = report["variants"]
        count = image_count(report.get("num_images", "?"), report.get("split_images"))
        head = f"Pseudo masks (mIoU %, split '{report.get('split', '?')}', {count}):"
        distractors = report.get("distractor_dir") is not None
        lines = [head + ("  [distractor pixels given a class]" if distractors else "")]
        for name, v in variants.items():
            tau = f" {v['tau']:.2f}" if isinstance(v.get("tau"), (int, float)) else ""
            title = variant_title(name, value=tau)
            value = MISSING if v.get("miou") is None else f"{v['miou']:.2f}"
            if distractors and v.get("distractors_labelled") is not None:
                value += f"  [{v['distractors_labelled']:.1f} %]"
            lines.append(row(title, value))
        return lines
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        return ["Pseudo masks (mIoU %):", row(str(path), f"unreadable ({type(e).__name__}: {e})")]


def trained_on(results: Path) -> str:
    """The pseudo-label variant DeepLab learned from, from the evaluate JSON's prediction folder."""
    path = results / "voc_miou.json"
    try:
        return Path(json.loads(path.read_text())["pred_dir"]).parent.name
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return "pseudo labels"


def final_lines(results: Path, gt: dict | None = None) -> list[str]:
    lines = ["Final model (val mIoU %):"]
    try:
        weak = read_miou_txt(results / "voc_miou.txt")
        full = read_miou_txt(results / "fully_supervised_miou.txt")
    except Unreadable as e:
        return lines + [row("results", f"unreadable ({e})")]
    if weak is None and unscored(gt, "val"):
        return lines + [row("DeepLab, val predictions (artifacts/deeplab/)", NOT_SCORED)]
    lines.append(row(f"DeepLab on {trained_on(results)}", MISSING if weak is None else f"{weak:.2f}"))
    if weak is not None and gt is not None and "val" in gt and gt["val"][0] != gt["val"][1]:
        lines.append(row("scored on", image_count(*gt["val"])))
    if full is not None:
        lines.append(row("DeepLab on GT (fully supervised)", f"{full:.2f}"))
        ratio = MISSING if weak is None or full == 0 else f"{weak / full:.3f}"
        lines.append(row("weak / full", ratio))
    return lines


def stage_key(name: str) -> tuple[int, str]:
    """DAG position of a benchmark file's rule (longest matching rule name), unknown rules last."""
    matches = [i for i, rule in enumerate(STAGE_ORDER) if name == rule or name.startswith(rule + "_")]
    best = max(matches, key=lambda i: len(STAGE_ORDER[i]), default=len(STAGE_ORDER))
    return best, name


def benchmark_seconds(path: Path) -> float:
    """Mean of column ``s`` over the rows of a Snakemake benchmark TSV (several rows with ``repeat``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    try:
        values = [float(r["s"]) for r in rows]
    except (KeyError, TypeError, ValueError):
        raise Unreadable("no numeric column 's'") from None
    if not values:
        raise Unreadable("no rows")
    return sum(values) / len(values)


def timing_lines(benchmarks: Path) -> list[str]:
    files = sorted(benchmarks.glob("*.tsv"), key=lambda p: stage_key(p.stem)) if benchmarks.is_dir() else []
    lines = ["Wall time per stage (s, from benchmarks/*.tsv):"]
    if not files:
        return lines + [row("benchmarks/", MISSING)]
    total = 0.0
    for path in files:
        try:
            seconds = benchmark_seconds(path)
        except (Unreadable, OSError) as e:
            lines.append(row(path.stem, f"unreadable ({e})"))
            continue
        total += seconds
        lines.append(row(path.stem, f"{seconds:8.1f}"))
    lines.append(row("total", f"{total:8.1f}"))
    return lines


def wsol_lines(path: Path) -> list[str]:
    """The WSOL scores of results/wsol.json (eval_wsol), when the run made them (percent)."""
    if not path.is_file():
        return []
    try:
        r = json.loads(path.read_text())
        loc, cam, maps = r["localizer"], r["c2am"], r["c2am_maps"]

        def pct(*values) -> str:
            return " / ".join(f"{100 * v:.1f}" for v in values)

        return [
            f"WSOL (%, split '{r['split']}', {loc['images']} images):",
            row("localizer: GT-known / top-1 / top-5 loc", pct(loc["gt_known_loc"], loc["top1_loc"], loc["top5_loc"])),
            row("localizer: MaxBoxAccV2 (one box)", pct(loc["maxboxacc_v2"])),
            row("C2AM map: GT-known / top-1 / top-5 loc", pct(cam["gt_known_loc"], cam["top1_loc"], cam["top5_loc"])),
            row(f"C2AM map: MaxBoxAccV2 (tau from {r['held_out_split']}) / oracle",
                pct(maps["held_out"]["maxboxacc_v2"], maps["oracle"]["maxboxacc_v2"])),
            row("classifier: top-1 / top-5", pct(loc["top1_cls"], loc["top5_cls"])),
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return ["WSOL (%):", row(str(path), f"unreadable ({type(e).__name__}: {e})")]


def predict_lines(results: Path) -> list[str]:
    """The new images predicted (results/predict/), when there are any."""
    masks = results / "predict" / "masks"
    if not masks.is_dir():
        return []
    n = sum(1 for p in masks.glob("*.png"))
    return ["New images (results/predict/):", row("masks and overlays", str(n))]


def summarize(workdir) -> str:
    """The run summary table of a working directory, as text ending in a newline."""
    workdir = Path(workdir)
    results = workdir / "results"
    gt = ground_truth(workdir)
    wsol = wsol_lines(results / "wsol.json")
    # a WSOL-only run (config/wsol.yaml) has no segmentation scores to show as missing
    segmentation = not wsol or any((results / n).exists() for n in ("pseudo_masks.json", "voc_miou.txt"))
    sections = [
        ["c2am-wsss run summary"],
        pseudo_lines(results / "pseudo_masks.json", gt) if segmentation else [],
        final_lines(results, gt) if segmentation else [],
        wsol,
        predict_lines(results),
        timing_lines(workdir / "benchmarks"),
    ]
    sections = [s for s in sections if s]
    return "\n".join("\n".join(s) for s in sections) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m c2am.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("."), help="the run's working directory")
    p.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    text = summarize(args.workdir)
    sys.stdout.write(text)
    if args.out is not None:
        from c2am.io import save_text

        save_text(args.out, text)


if __name__ == "__main__":
    from c2am.runtime import run_stage

    sys.exit(run_stage(main))
