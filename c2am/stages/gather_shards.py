"""Gather the per-shard folders of a per-image stage into its final folder (config ``shards`` > 1).

Every id of the split must appear in exactly one shard folder, as one file; files are hard-linked (copied
across filesystems) into ``--out-dir``, which is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from c2am import defaults
from c2am.data.voc import Manifest
from c2am.runtime import run_stage
from c2am.shards import gather_dirs

log = logging.getLogger("c2am.gather_shards")


def build_parser() -> argparse.ArgumentParser:
    p = defaults.stage_parser("c2am.stages.gather_shards", __doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train", help="split role whose ids the shards must cover")
    p.add_argument("--out-dir", required=True, type=Path, help="final folder (replaced if present)")
    p.add_argument("shard_dirs", nargs="+", type=Path, help="shard folders, in shard order")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    manifest = Manifest.load(args.manifest)
    count = gather_dirs(args.shard_dirs, args.out_dir, manifest.ids(args.split))
    log.info("gathered %d files from %d shards into %s", count, len(args.shard_dirs), args.out_dir)
    return count


if __name__ == "__main__":
    sys.exit(run_stage(main))
