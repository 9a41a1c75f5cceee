"""Stage 8: pseudo-mask quality (mIoU against the GT masks of the pseudo_eval split; GT used for scoring only).

Variants, in the order of the text report (``<name>: <mIoU percent, 2 decimals>``):

- ``cam_best_tau``: CAM-only labels (argmax over [tau, CAMs]) at the best tau of the sweep, computed straight from
  the CAMs. The tau is chosen on the scored split's GT, so this is an ORACLE-TUNED baseline, as in the
  literature; the line carries ``(tau=0.xx)`` and the JSON says ``oracle_tuned: true``.
- ``cam_fixed_tau``: the same at the configured ``--fixed-tau`` (no GT involved).
- one line per ``--variant name=DIR`` (label PNGs, scored with c2am.scoring.score_folder), in the order given.
  With ``--distractor-dir`` (the embedded world's ``Distractors/``), each such line also gives the share of
  distractor pixels (salient things of no class, background in the GT) that the variant labels a class.

The JSON holds each variant's per-class IoU and confusion counts and the whole sweep (tau -> mIoU).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from c2am import defaults
from c2am.data.voc import Manifest
from c2am.io import InputError, save_json, save_text
from c2am.runtime import run_stage, set_threads
from c2am.scoring import distractor_share, percent, score_folder, scores_dict, sweep_confusions
from c2am.thresholds import threshold_grid

log = logging.getLogger("c2am.eval_pseudo")

RESERVED = ("cam_best_tau", "cam_fixed_tau")


def parse_variant(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=DIR")
    if name in RESERVED:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: the name {name!r} is reserved")
    return name, Path(folder)


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.eval_pseudo", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="pseudo_eval")
    p.add_argument("--cams-dir", type=Path, required=True, help="<id>.npz from infer_cam (must cover the split)")
    p.add_argument("--tau-sweep", type=float, nargs=3, metavar=("START", "STOP", "STEP"))
    p.add_argument("--fixed-tau", type=float)
    p.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="NAME=DIR",
                   help="a folder of label PNGs to score; repeatable, reported in this order")
    p.add_argument("--distractor-dir", type=Path,
                   help="<id>.png masks of the distractor pixels (255): also score how many the variants give a class")
    p.add_argument("--out-txt", type=Path, required=True)
    p.add_argument("--out-json", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "refine", exclude=("tau_sweep", "robust"))
    sweep = defaults.value("refine.tau_sweep")
    p.set_defaults(tau_sweep=[float(sweep[k]) for k in ("start", "stop", "step")])
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def best_index(mious: list[float]) -> int:
    """Index of the highest mIoU; the first (smallest tau) on a tie."""
    return int(np.argmax(np.asarray(mious)))


def format_report(rows: list[tuple[str, float, str]]) -> str:
    """``name: XX.XX`` (+ suffix) per row; mIoU given as a fraction."""
    return "".join(f"{name}: {100.0 * miou:.2f}{suffix}\n" for name, miou, suffix in rows)


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    names = [n for n, _ in args.variant]
    if len(set(names)) != len(names):
        raise InputError(f"--variant: names repeat ({names})")
    if args.distractor_dir is not None and not args.distractor_dir.is_dir():
        raise InputError(f"{args.distractor_dir}: distractor mask folder not found")
    sweep = threshold_grid(*args.tau_sweep)
    taus = sweep + [args.fixed_tau]
    cms = sweep_confusions(manifest, args.split, args.cams_dir, taus, threads)
    sweep_miou = [cm.miou() for cm in cms[: len(sweep)]]
    b = best_index(sweep_miou)
    best_cm, fixed_cm = cms[b], cms[-1]

    rows = [("cam_best_tau", best_cm.miou(), f" (tau={sweep[b]:.2f})"), ("cam_fixed_tau", fixed_cm.miou(), "")]
    variants = {
        "cam_best_tau": {
            "tau": sweep[b], "oracle_tuned": True,
            "note": f"tau chosen for the best mIoU on the GT of split '{args.split}' (oracle-tuned)",
            **scores_dict(best_cm, manifest.classes),
        },
        "cam_fixed_tau": {"tau": args.fixed_tau, "oracle_tuned": False, **scores_dict(fixed_cm, manifest.classes)},
    }
    for name, folder in args.variant:
        cm = score_folder(manifest, args.split, folder, threads=threads)
        variants[name] = {"dir": str(folder), **scores_dict(cm, manifest.classes)}
        suffix = ""
        if args.distractor_dir is not None:
            share = distractor_share(manifest, args.split, folder, args.distractor_dir, threads=threads)
            variants[name]["distractors_labelled"] = percent(share.compute())
            variants[name]["distractor_pixels"] = share.total
            suffix = f" (distractors labelled {100.0 * share.compute():.1f} %)"
        rows.append((name, cm.miou(), suffix))

    save_text(args.out_txt, format_report(rows))
    save_json(args.out_json, {
        "split": args.split,
        "num_images": len(manifest.gt_ids(args.split)),  # the images with a GT mask: those scored
        "split_images": len(manifest.ids(args.split)),
        "cams_dir": str(args.cams_dir),
        "distractor_dir": None if args.distractor_dir is None else str(args.distractor_dir),
        "variants": variants,
        "tau_sweep": {"tau": sweep, "miou": [100.0 * m for m in sweep_miou]},
    })
    for name, miou, suffix in rows:
        log.info("%s: %.2f%s", name, 100.0 * miou, suffix)


if __name__ == "__main__":
    sys.exit(run_stage(main))
