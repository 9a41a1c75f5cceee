"""Stage 6: pseudo labels from class CAMs refined with the C2AM background cues, plus the constant-tau baseline.

Per image (c2am.refine.refine_labels; docs/method.md §5): ``--out-cues-dir`` gets argmax over [1 - cue, CAMs];
``--out-tau-dir`` gets argmax over [tau, CAMs] with the constant ``--fixed-tau``. Both are label maps
(c2am.artifacts), so the same scoring reads them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from c2am import defaults
from c2am.artifacts import load_cams, load_cue, save_labels
from c2am.data.voc import Manifest
from c2am.io import run_stage, set_threads
from c2am.parallel import map_items
from c2am.refine import background_from_cue, refine_labels
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.refine_cams")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.refine_cams", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--cams-dir", type=Path, required=True, help="<id>.npz from infer_cam")
    p.add_argument("--cues-dir", type=Path, required=True, help="<id>.png cues from extract_cues (255 = foreground)")
    p.add_argument("--fixed-tau", type=float, help="constant background score of the baseline")
    p.add_argument("--out-cues-dir", type=Path, required=True)
    p.add_argument("--out-tau-dir", type=Path, required=True)
    add_shard_arg(p)
    p.add_argument("--threads", type=int, default=1)
    defaults.apply(p, "refine", exclude=("tau_sweep",))
    return p.parse_args(argv)


def refine_one(image_id: str, cams_dir: Path, cues_dir: Path, tau: float, out_cues: Path, out_tau: Path) -> None:
    cams, classes = load_cams(cams_dir / f"{image_id}.npz")
    cue = load_cue(cues_dir / f"{image_id}.png", cams.shape[1:])
    save_labels(out_cues / f"{image_id}.png", refine_labels(cams, classes, background_from_cue(cue)))
    save_labels(out_tau / f"{image_id}.png", refine_labels(cams, classes, tau))


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)  # capped at the CPUs available (rules ask for up to 8)
    manifest = Manifest.load(args.manifest)
    ids = select_shard(manifest.ids(args.split), args.shard)
    for d in (args.out_cues_dir, args.out_tau_dir):
        d.mkdir(parents=True, exist_ok=True)
    work = partial(refine_one, cams_dir=args.cams_dir, cues_dir=args.cues_dir, tau=args.fixed_tau,
                   out_cues=args.out_cues_dir, out_tau=args.out_tau_dir)
    map_items(work, ids, threads=threads, desc="refine")
    log.info("wrote %d pseudo labels to %s and %s", len(ids), args.out_cues_dir, args.out_tau_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
