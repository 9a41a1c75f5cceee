"""Stage 7: dense-CRF post-processing of pseudo labels (c2am.crf.crf_present_labels), per image in parallel.

The CRF runs over the labels present in the image's label map plus background, so it can neither invent a
class the image does not have nor pay for the absent ones; IGNORE pixels get a uniform unary and are filled.
With ``--ignore-disagreement``, pixels where the CRF output differs from ``--compare-dir``'s labels (default:
the input labels) become IGNORE, so DeepLab ignores them (docs/method.md §6).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults
from c2am.artifacts import load_labels, save_labels
from c2am.crf import add_crf_args, crf_args, crf_present_labels, mark_disagreement
from c2am.data.voc import Manifest
from c2am.io import InputError, load_image
from c2am.parallel import map_items
from c2am.runtime import run_stage, set_threads
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.crf_labels")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.crf_labels", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--labels-dir", type=Path, required=True, help="<id>.png pseudo labels to refine")
    p.add_argument("--out-dir", type=Path, required=True)
    add_crf_args(p)
    p.add_argument("--ignore-disagreement", action=argparse.BooleanOptionalAction,
                   help="set pixels where the CRF output and --compare-dir disagree to 255")
    p.add_argument("--compare-dir", type=Path, default=None,
                   help="labels compared with the CRF output (default: --labels-dir)")
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "crf_labels")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def crf_one(paths: tuple[Path, Path, Path | None, Path], num_classes: int, crf: dict) -> None:
    """One image: ``paths`` = (image, labels, comparison labels or None, output). Workers get paths only, so
    nothing large is pickled per item."""
    image_path, labels_path, compare_path, out_path = paths
    image = load_image(image_path)
    labels = load_labels(labels_path, image.shape[:2], num_classes)
    out = crf_present_labels(image, labels, **crf)
    if compare_path is not None:
        same = compare_path == labels_path
        reference = labels if same else load_labels(compare_path, image.shape[:2], num_classes)
        out = mark_disagreement(out, reference)
    save_labels(out_path, out)


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    if not args.labels_dir.is_dir():
        raise InputError(f"{args.labels_dir}: labels folder not found")
    compare = (args.compare_dir or args.labels_dir) if args.ignore_disagreement else None
    if args.compare_dir is not None and not args.ignore_disagreement:
        log.info("--compare-dir given without --ignore-disagreement: not used")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    items = [
        (manifest.image_path(i), args.labels_dir / f"{i}.png", compare / f"{i}.png" if compare else None,
         args.out_dir / f"{i}.png")
        for i in ids
    ]
    map_items(partial(crf_one, num_classes=manifest.num_classes, crf=crf_args(args)), items, threads=threads,
              desc="label CRF")
    log.info("wrote %d CRF labels to %s (ignore_disagreement=%s)", len(ids), args.out_dir, args.ignore_disagreement)


if __name__ == "__main__":
    sys.exit(run_stage(main))
