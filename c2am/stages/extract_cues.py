"""Stage 3: background cues from C2AM maps: threshold, then a 2-label dense CRF.

Convention: one grayscale PNG per image, 255 = foreground, 0 = background (no other values).

The threshold is computed from the maps alone (never from GT) or fixed:

- ``otsu``: Otsu's method on the histogram of ALL map values of the split (one threshold for the dataset).
- ``otsu3``: the upper edge of a three-class Otsu split of that histogram. The maps are stride-16 activations
  upsampled to the image, so besides background and object they hold a third population: the blurred halo
  around each object (values in between). Two-class Otsu puts part of the halo in the foreground; three
  classes give it its own class and keep the object cores.
- ``otsu_image``: per-image Otsu (for comparison only: it always splits an image in two, so it invents
  foreground in object-free images and follows each map's own calibration noise).
- a number in (0, 1): a fixed t (the paper uses 0.3 with its own calibration).

One dataset-wide threshold rather than one per image: the dataset histogram captures the map's global
calibration, which is what differs from the official t = 0.3.
The chosen threshold goes to ``--out-threshold`` as JSON.

Sharded runs (config ``shards`` > 1) must still use ONE threshold computed over all maps of the split, so the
work is cut in three: ``--threshold-only`` writes the threshold record once; each ``--shard K-of-N`` job reads
it (``--threshold-json``) and writes its cues plus a shard record with every image's foreground share;
``--merge-records`` turns the shard records into the record an unsharded run writes, byte for byte.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

import numpy as np

from c2am.crf import add_crf_args, crf_args, crf_two_label
from c2am.data.voc import Manifest
from c2am.io import (
    InputError,
    load_json,
    load_npy,
    run_stage,
    save_gray_png,
    save_json,
    set_threads,
)
from c2am.parallel import map_items
from c2am.shards import add_shard_arg, select_shard

log = logging.getLogger("c2am.extract_cues")

HIST_BINS = 256
THRESHOLD_METHODS = ("otsu", "otsu3", "otsu_image")


# ----------------------------------------------------------------------------- thresholds


def map_histogram(fmap: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Counts of map values in ``bins`` equal bins over [0, 1] (value 1.0 in the last bin)."""
    fmap = np.asarray(fmap, dtype=np.float32).ravel()
    idx = np.clip((fmap * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins)


def otsu_from_histogram(hist: np.ndarray) -> float:
    """Otsu threshold of a histogram over [0, 1] in equal bins: the bin edge maximising between-class variance.

    Returns the upper edge of the last "low" bin, so ``value >= t`` (equivalently ``> t`` up to bin width)
    selects the high class. Ties go to the lowest such edge; a histogram with one occupied bin gives 0.5.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = hist.size
    total = hist.sum()
    if total <= 0:
        raise ValueError("otsu_from_histogram: empty histogram")
    centers = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(hist)[:-1]  # weight of bins 0..k
    w1 = total - w0
    m0 = np.cumsum(hist * centers)[:-1]
    mu_t = (hist * centers).sum()
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        return 0.5
    between = np.zeros(bins - 1)
    # sigma_b^2 * total^2 = (mu_t * w0 - m0 * total)^2 / (w0 * w1): same argmax, no division by total.
    between[valid] = (mu_t * w0[valid] - m0[valid] * total) ** 2 / (w0[valid] * w1[valid])
    k = int(np.argmax(between))
    return (k + 1) / bins


def otsu3_from_histogram(hist: np.ndarray) -> tuple[float, float]:
    """Three-class Otsu over a histogram on [0, 1]: the two bin edges maximising the between-class variance.

    Maximising sum_c S_c^2 / W_c (S_c = value sum, W_c = count of class c) is equivalent, since the total mean
    is fixed. Ties go to the lowest (t1, t2) in row-major order. Edges are (k + 1) / bins as in the 2-class case.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = hist.size
    if hist.sum() <= 0:
        raise ValueError("otsu3_from_histogram: empty histogram")
    centers = (np.arange(bins) + 0.5) / bins
    cw = np.concatenate([[0.0], np.cumsum(hist)])  # cw[k] = count of bins < k
    cs = np.concatenate([[0.0], np.cumsum(hist * centers)])
    k1 = np.arange(1, bins - 1)[:, None]  # class 0 = bins [0, k1), class 1 = [k1, k2), class 2 = [k2, bins)
    k2 = np.arange(2, bins)[None, :]

    def term(lo, hi):
        w = cw[hi] - cw[lo]
        s = cs[hi] - cs[lo]
        return np.where(w > 0, s * s / np.where(w > 0, w, 1.0), 0.0), w > 0

    a, ok_a = term(0, k1)
    b, ok_b = term(k1, k2)
    c, ok_c = term(k2, bins)
    score = np.where((k2 > k1) & ok_a & ok_b & ok_c, a + b + c, -np.inf)
    if not np.isfinite(score).any():
        return 0.5, 0.5
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(k1[i, 0]) / bins, float(k2[0, j]) / bins


def _histogram_of_file(path: Path) -> np.ndarray:
    return map_histogram(load_npy(path))


def load_map(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A C2AM map as float32 H x W in [0, 1]; wrong shape or range is an InputError naming the file."""
    fmap = load_npy(path)
    if fmap.ndim != 2:
        raise InputError(f"{path}: expected an H x W map, got shape {fmap.shape}")
    if size is not None and fmap.shape != tuple(size):
        raise InputError(f"{path}: map size {fmap.shape} differs from its image's {tuple(size)}")
    fmap = fmap.astype(np.float32)
    if not np.isfinite(fmap).all() or fmap.min() < 0 or fmap.max() > 1:
        raise InputError(f"{path}: map values must be finite and in [0, 1]")
    return fmap


def dataset_otsu(map_paths: list[Path], threads: int = 1, classes: int = 2) -> float:
    """Otsu threshold over the pooled histogram of every map (no GT involved).

    ``classes=3``: the upper edge of a three-class Otsu split (background / blurred halo / object core).
    """
    hists = map_items(_histogram_of_file, map_paths, threads=threads, desc="map histogram")
    hist = np.sum(hists, axis=0)
    if classes == 3:
        return otsu3_from_histogram(hist)[1]
    return otsu_from_histogram(hist)


def parse_threshold(text: str, flag: str = "--threshold", methods=THRESHOLD_METHODS) -> str | float:
    """One of ``methods`` (computed from the maps, no GT) or a number in (0, 1)."""
    if text in methods:
        return text
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} {text!r}: use one of {', '.join(methods)} or a number in (0, 1)") from None
    if not 0 < value < 1:
        raise InputError(f"{flag} {value}: must lie in (0, 1)")
    return value


def resolve_threshold(spec: str | float, map_paths: list[Path], threads: int = 1) -> dict:
    """The threshold record written to JSON: {"method", "threshold" (None for per-image), "bins"}."""
    if spec in ("otsu", "otsu3"):
        t = dataset_otsu(map_paths, threads, classes=3 if spec == "otsu3" else 2)
        return {"method": spec, "threshold": t, "bins": HIST_BINS, "maps": len(map_paths)}
    if spec == "otsu_image":
        return {"method": "otsu_image", "threshold": None, "bins": HIST_BINS, "maps": len(map_paths)}
    return {"method": "fixed", "threshold": float(spec), "bins": None, "maps": len(map_paths)}


def image_threshold(record: dict, fmap: np.ndarray) -> float:
    """The threshold one image uses under ``record`` (from resolve_threshold)."""
    if record["method"] == "otsu_image":
        return otsu_from_histogram(map_histogram(fmap, record["bins"]))
    return float(record["threshold"])


# ----------------------------------------------------------------------------- CRF cues


def cue_for_image(manifest: Manifest, image_id: str, maps_dir: Path, record: dict, crf: dict) -> np.ndarray:
    """Boolean H x W foreground cue: map > t, refined by the 2-label CRF over the image."""
    image = manifest.load_image(image_id)
    fmap = load_map(maps_dir / f"{image_id}.npy", image.shape[:2])
    fg = fmap > image_threshold(record, fmap)
    return crf_two_label(image, fg, **crf)


def _write_cue(image_id: str, manifest: Manifest, maps_dir: Path, out_dir: Path, record: dict, crf: dict) -> float:
    cue = cue_for_image(manifest, image_id, maps_dir, record, crf)
    save_gray_png(out_dir / f"{image_id}.png", np.where(cue, 255, 0).astype(np.uint8))
    return float(cue.mean())



def map_paths_for(manifest: Manifest, split: str, maps_dir: Path, ids: list[str] | None = None) -> list[Path]:
    paths = [maps_dir / f"{i}.npy" for i in (manifest.ids(split) if ids is None else ids)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: map not found ({len(missing)} of {len(paths)} maps missing)")
    return paths


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m c2am.stages.extract_cues", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--maps-dir", help="<id>.npy maps from infer_c2am (not read by --merge-records)")
    p.add_argument("--out-dir", help="folder for <id>.png cues (255 = foreground)")
    p.add_argument("--out-threshold", required=True, help="JSON recording the threshold used")
    p.add_argument("--threshold", default="otsu", help="otsu / otsu3 (dataset histogram), otsu_image, or a number")
    add_crf_args(p)
    add_shard_arg(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--threshold-only", action="store_true",
                      help="write the threshold record of the whole split to --out-threshold, no cues")
    mode.add_argument("--threshold-json", type=Path, default=None,
                      help="use this record (from --threshold-only) instead of computing the threshold")
    mode.add_argument("--merge-records", type=Path, nargs="+", default=None, metavar="JSON",
                      help="shard records of --shard runs, in shard order: write the whole split's record")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.threshold = parse_threshold(args.threshold)
    writes_cues = not (args.threshold_only or args.merge_records)
    if not args.maps_dir and not args.merge_records:
        p.error("--maps-dir is required unless --merge-records")
    if writes_cues and not args.out_dir:
        p.error("--out-dir is required unless --threshold-only or --merge-records")
    if args.shard is not None and not writes_cues:
        p.error("--shard applies to the cue-writing run only")
    return args


def check_record(record: dict, spec: str | float, path) -> dict:
    """A threshold record read from ``path`` must be the one ``--threshold spec`` would compute."""
    method = "fixed" if isinstance(spec, float) else spec
    if record.get("method") != method or (method == "fixed" and record.get("threshold") != spec):
        raise InputError(f"{path}: threshold record {record.get('method')} {record.get('threshold')} "
                         f"does not match --threshold {spec}")
    if method != "otsu_image" and not isinstance(record.get("threshold"), (int, float)):
        raise InputError(f"{path}: threshold record has no numeric 'threshold'")
    return {k: record[k] for k in ("method", "threshold", "bins", "maps")}


def merge_records(paths: list[Path], ids: list[str]) -> dict:
    """The whole split's record from shard records: same threshold and CRF everywhere, every id once, in order."""
    records = [load_json(p) for p in paths]
    shares = []
    for path, record in zip(paths, records):
        if "cue_foreground" not in record:
            raise InputError(f"{path}: not a shard record (no 'cue_foreground')")
        if {k: v for k, v in record.items() if k != "cue_foreground"} != \
                {k: v for k, v in records[0].items() if k != "cue_foreground"}:
            raise InputError(f"{path}: threshold or CRF differs from {paths[0]}")
        shares.extend(record["cue_foreground"])
    got = [image_id for image_id, _ in shares]
    if got != list(ids):
        raise InputError(f"{paths[0]}..: shard records cover {len(got)} ids, the split has {len(ids)} "
                         "(or the shards are out of order)")
    merged = {k: v for k, v in records[0].items() if k != "cue_foreground"}
    merged["mean_cue_foreground"] = float(np.mean([share for _, share in shares]))
    return merged


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    manifest = Manifest.load(args.manifest)
    if args.merge_records:
        record = merge_records(args.merge_records, manifest.ids(args.split))
        save_json(args.out_threshold, record)
        log.info("merged %d shard records (mean foreground share %.3f)", len(args.merge_records),
                 record["mean_cue_foreground"])
        return record
    maps_dir = Path(args.maps_dir)
    if args.threshold_json is not None:
        record = check_record(load_json(args.threshold_json), args.threshold, args.threshold_json)
    else:
        record = resolve_threshold(args.threshold, map_paths_for(manifest, args.split, maps_dir), args.threads)
    log.info("cue threshold: %s %s", record["method"], record["threshold"])
    if args.threshold_only:
        save_json(args.out_threshold, record)
        return record
    ids = select_shard(manifest.ids(args.split), args.shard)
    map_paths_for(manifest, args.split, maps_dir, ids)  # every map of this shard is there, before any CRF
    crf = crf_args(args)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fn = partial(_write_cue, manifest=manifest, maps_dir=maps_dir, out_dir=out_dir, record=record, crf=crf)
    fg_shares = map_items(fn, ids, threads=args.threads, desc="c2am cues")
    record["crf"] = crf
    if args.shard is not None:
        record["cue_foreground"] = [[image_id, share] for image_id, share in zip(ids, fg_shares)]
    else:
        record["mean_cue_foreground"] = float(np.mean(fg_shares))
    save_json(args.out_threshold, record)
    log.info("wrote %d cues to %s (mean foreground share %.3f)", len(ids), out_dir,
             float(np.mean(fg_shares)) if fg_shares else float("nan"))
    return record


if __name__ == "__main__":
    sys.exit(run_stage(main))
