"""Stage 3a: the cue threshold of a split, from its C2AM maps alone (no GT; c2am.thresholds, docs/method.md §4).

One threshold for the whole split (Otsu over the pooled histogram of all maps, by default), so it runs once
before the per-image cue stage, sharded or not. Writes the threshold record as JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys

from c2am import defaults
from c2am.artifacts import require_files
from c2am.data.voc import Manifest
from c2am.io import save_json
from c2am.runtime import run_stage, set_threads
from c2am.thresholds import parse_threshold, resolve_threshold

log = logging.getLogger("c2am.cue_threshold")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.cue_threshold", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--maps-dir", required=True, help="<id>.npy maps from infer_c2am")
    p.add_argument("--threshold", help="otsu / otsu3 (dataset histogram), otsu_image, or a number in (0, 1)")
    p.add_argument("--out", required=True, help="JSON threshold record")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(threshold=defaults.value("c2am.cues.threshold"))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.threshold = parse_threshold(str(args.threshold))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    paths = require_files(args.maps_dir, manifest.ids(args.split), ".npy", "map")
    record = resolve_threshold(args.threshold, paths, threads)
    save_json(args.out, record)
    log.info("cue threshold over %d maps: %s %s", len(paths), record["method"], record["threshold"])
    return record


if __name__ == "__main__":
    sys.exit(run_stage(main))
