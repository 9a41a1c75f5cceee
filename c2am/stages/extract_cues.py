"""Stage 3b: background cues from C2AM maps: map > t (the record of cue_threshold), then a 2-label dense CRF.

One grayscale PNG per image, 255 = foreground, 0 = background (c2am.artifacts; docs/method.md §4).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults
from c2am.artifacts import require_files, save_cue
from c2am.crf import add_crf_args, crf_args
from c2am.cues import cue_for_image
from c2am.data.voc import Manifest
from c2am.io import load_json
from c2am.parallel import map_items
from c2am.runtime import run_stage, set_threads
from c2am.shards import add_shard_arg, select_shard
from c2am.thresholds import check_record

log = logging.getLogger("c2am.extract_cues")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.extract_cues", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--maps-dir", required=True, help="<id>.npy maps from infer_c2am")
    p.add_argument("--threshold-json", required=True, help="threshold record from cue_threshold")
    p.add_argument("--out-dir", required=True, help="folder for <id>.png cues (255 = foreground)")
    add_crf_args(p)
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "c2am.cues.crf")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def write_cue(image_id: str, manifest: Manifest, maps_dir: Path, out_dir: Path, record: dict, crf: dict) -> float:
    cue = cue_for_image(manifest, image_id, maps_dir, record, crf)
    save_cue(out_dir / f"{image_id}.png", cue)
    return float(cue.mean())


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    record = check_record(load_json(args.threshold_json), args.threshold_json)
    ids = select_shard(manifest.ids(args.split), args.shard)
    require_files(args.maps_dir, ids, ".npy", "map")  # every map of this shard is there, before any CRF
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fn = partial(write_cue, manifest=manifest, maps_dir=Path(args.maps_dir), out_dir=out_dir, record=record,
                 crf=crf_args(args))
    shares = map_items(fn, ids, threads=threads, desc="c2am cues")
    log.info("wrote %d cues to %s (threshold %s %s, mean foreground share %.3f)", len(ids), out_dir,
             record["method"], record["threshold"], sum(shares) / max(1, len(shares)))


if __name__ == "__main__":
    sys.exit(run_stage(main))
