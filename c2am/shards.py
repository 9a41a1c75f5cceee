"""Shards of a split's image list, so that a per-image stage can run as several jobs (Snakemake scattergather).

A shard is named as Snakemake names scatter items: ``"K-of-N"``, 1-based. Shard K holds a contiguous run of
the split's ids in manifest order, and shard sizes differ by at most one, so the shards of any N partition the
list and concatenating them in K order gives the list back. ``gather_dirs`` merges the per-shard folders of a
stage into its final folder, checking that every id of the split is there exactly once.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
from pathlib import Path
from typing import Sequence, TypeVar

from c2am.io import InputError

T = TypeVar("T")

SHARD_RE = re.compile(r"^([1-9]\d*)-of-([1-9]\d*)$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K-of-N"`` -> (K, N) with 1 <= K <= N; anything else is an ArgumentTypeError naming the text."""
    match = SHARD_RE.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K-of-N, e.g. 2-of-3")
    k, n = int(match.group(1)), int(match.group(2))
    if k > n:
        raise argparse.ArgumentTypeError(f"{text!r}: shard index {k} exceeds the shard count {n}")
    return k, n


def shard_bounds(n_items: int, k: int, n: int) -> tuple[int, int]:
    """[start, end) of shard k (1-based) of n over n_items; the first n_items % n shards get one item more."""
    base, extra = divmod(n_items, n)
    start = (k - 1) * base + min(k - 1, extra)
    return start, start + base + (1 if k <= extra else 0)


def select_shard(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The items of ``shard`` (from parse_shard); all of them when ``shard`` is None."""
    if shard is None:
        return list(items)
    start, end = shard_bounds(len(items), *shard)
    return list(items[start:end])


def add_shard_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard", type=parse_shard, default=None, metavar="K-of-N",
        help="process only shard K of N of the split's images (contiguous, in manifest order); default: all",
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (no second copy on disk); a copy where links are impossible (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(src, dst)


def shard_files(shard_dirs: Sequence[Path]) -> dict[str, Path]:
    """{id: file} over all shard folders (hidden files skipped); an id found twice, or a sub-folder, is an
    InputError."""
    found: dict[str, Path] = {}
    for folder in map(Path, shard_dirs):
        if not folder.is_dir():
            raise InputError(f"{folder}: shard folder not found")
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):  # Snakemake's .snakemake_timestamp in directory outputs
                continue
            if not path.is_file():
                raise InputError(f"{path}: unexpected entry in a shard folder (not a file)")
            if path.stem in found:
                raise InputError(f"{path}: id {path.stem!r} also in {found[path.stem]}")
            found[path.stem] = path
    return found


def gather_dirs(shard_dirs: Sequence[Path], out_dir: Path, ids: Sequence[str]) -> int:
    """Merge the shard folders into ``out_dir``: one file per id of ``ids``, nothing missing, nothing extra.

    Written to a temporary sibling folder and renamed into place, so an interrupted gather leaves no folder
    that looks complete. Returns the number of files.
    """
    found = shard_files(shard_dirs)
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(f"{missing[0]}: no output in any of {len(shard_dirs)} shard folders "
                         f"({len(missing)} of {len(ids)} ids missing; first shard {shard_dirs[0]})")
    extra = sorted(set(found) - set(ids))
    if extra:
        raise InputError(f"{found[extra[0]]}: not an id of the split ({len(extra)} such files)")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".gather-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for image_id in ids:
        src = found[image_id]
        _link_or_copy(src, tmp / src.name)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return len(ids)
