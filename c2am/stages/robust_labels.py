"""Stage 7b: the distractor-robust test on a pseudo-label map (c2am.refine.robust_labels; docs/method.md §5).

Per image: colour regions of the image (Felzenszwalb, ``--segment-*``), then the labelled pixels of every region
whose mean strongest CAM is under ``--region-floor`` become uncertain (255): a salient thing of no class (a
distractor) should not take the class of a CAM that only bleeds onto it. Background and 255 pixels are kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults
from c2am.artifacts import load_cams, load_labels, require_files, save_labels
from c2am.data.voc import Manifest
from c2am.parallel import map_items
from c2am.refine import colour_regions, robust_labels
from c2am.runtime import run_stage, set_threads
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.robust_labels")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.robust_labels", __doc__)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--labels-dir", type=Path, required=True, help="<id>.png pseudo labels to test")
    p.add_argument("--cams-dir", type=Path, required=True, help="<id>.npz from infer_cam")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--region-floor", type=float, help="a colour region whose mean strongest CAM is under it: 255")
    p.add_argument("--segment-scale", type=float, help="Felzenszwalb scale (larger = larger regions)")
    p.add_argument("--segment-sigma", type=float, help="Gaussian smoothing before segmenting")
    p.add_argument("--segment-min-size", type=int, help="smallest region, in pixels")
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "refine.robust")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def robust_one(image_id: str, args: argparse.Namespace, manifest: Manifest) -> None:
    image = manifest.load_image(image_id)
    size = image.shape[:2]
    cams, classes = load_cams(args.cams_dir / f"{image_id}.npz", size)
    labels = load_labels(args.labels_dir / f"{image_id}.png", size, manifest.num_classes, "pseudo label")
    regions = colour_regions(image, args.segment_scale, args.segment_sigma, args.segment_min_size)
    save_labels(args.out_dir / f"{image_id}.png", robust_labels(labels, cams, classes, regions, args.region_floor))


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    require_files(args.labels_dir, ids, ".png", "pseudo label")
    require_files(args.cams_dir, ids, ".npz", "CAM file")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    map_items(partial(robust_one, args=args, manifest=manifest), ids, threads=threads, desc="robust labels")
    log.info("wrote %d robust pseudo labels to %s (region floor %.2f)", len(ids), args.out_dir, args.region_floor)


if __name__ == "__main__":
    sys.exit(run_stage(main))
