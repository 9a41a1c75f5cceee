"""Stage 7: dense-CRF post-processing of pseudo labels (c2am.crf.crf_from_labels), per image in parallel.

The CRF runs over the labels present in the image's label map plus background, renumbered 0..n-1 and mapped
back, so it can neither invent a class the image does not have nor pay for the absent ones. Input pixels
labelled 255 get a uniform unary and are filled by the CRF. With ``--ignore-disagreement``, pixels where the
CRF output differs from ``--compare-dir``'s labels (default: the input labels) become 255, so DeepLab
ignores them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

from c2am.crf import IGNORE, add_crf_args, crf_args, crf_from_labels
from c2am.data.voc import Manifest, check_mask
from c2am.io import InputError, load_image, load_label_png, run_stage, save_label_png, set_threads
from c2am.parallel import map_items
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.crf_labels")



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.crf_labels", description=__doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--labels-dir", type=Path, required=True, help="<id>.png pseudo labels to refine")
    p.add_argument("--out-dir", type=Path, required=True)
    add_crf_args(p)
    p.add_argument("--ignore-disagreement", action=argparse.BooleanOptionalAction, default=False,
                   help="set pixels where the CRF output and --compare-dir disagree to 255")
    p.add_argument("--compare-dir", type=Path, default=None,
                   help="labels compared with the CRF output (default: --labels-dir)")
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def crf_present_labels(image: np.ndarray, labels: np.ndarray, **crf) -> np.ndarray:
    """CRF over background + the classes present in ``labels``; returns uint8 H x W in the original indices.

    With a single label present there is nothing to decide and the labels come back unchanged (255s become
    background when no other class is present).
    """
    labels = np.asarray(labels)
    present = np.unique(labels[labels != IGNORE])
    classes = np.union1d([0], present).astype(np.int64)  # background always takes part
    if classes.size < 2:
        return np.where(labels == IGNORE, 0, labels).astype(np.uint8)
    compact = np.full(labels.shape, IGNORE, dtype=np.int64)
    valid = labels != IGNORE
    compact[valid] = np.searchsorted(classes, labels[valid])
    out = crf_from_labels(image, compact, int(classes.size), **crf)
    return classes[out].astype(np.uint8)


def mark_disagreement(refined: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``refined`` with 255 wherever it differs from ``reference``."""
    if refined.shape != reference.shape:
        raise ValueError(f"label shapes differ: {refined.shape} vs {reference.shape}")
    return np.where(refined == reference, refined, IGNORE).astype(np.uint8)


def crf_one(paths: tuple[Path, Path, Path | None, Path], num_classes: int, crf: dict) -> None:
    """One image: ``paths`` = (image, labels, comparison labels or None, output). Workers get paths only, so
    nothing large is pickled per item."""
    image_path, labels_path, compare_path, out_path = paths
    image = load_image(image_path)
    labels = load_label_png(labels_path)
    check_mask(labels, labels_path, image.shape[:2], num_classes)
    out = crf_present_labels(image, labels, **crf)
    if compare_path is not None:
        reference = labels
        if compare_path != labels_path:
            reference = load_label_png(compare_path)
            check_mask(reference, compare_path, image.shape[:2], num_classes)
        out = mark_disagreement(out, reference)
    save_label_png(out_path, out)


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    if not args.labels_dir.is_dir():
        raise InputError(f"{args.labels_dir}: labels folder not found")
    compare = None
    if args.ignore_disagreement:
        compare = args.compare_dir or args.labels_dir
    elif args.compare_dir is not None:
        log.info("--compare-dir given without --ignore-disagreement: not used")
    crf = crf_args(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    items = [
        (
            manifest.image_path(i),
            manifest.mask_path(i, args.labels_dir),
            manifest.mask_path(i, compare) if compare is not None else None,
            args.out_dir / f"{i}.png",
        )
        for i in ids
    ]
    work = partial(crf_one, num_classes=manifest.num_classes, crf=crf)
    map_items(work, items, threads=threads, desc="label CRF")
    log.info("wrote %d CRF labels to %s (crf %s, ignore_disagreement=%s)", len(ids), args.out_dir, crf,
             args.ignore_disagreement)


if __name__ == "__main__":
    sys.exit(run_stage(main))
