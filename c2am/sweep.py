"""Sweeps: the pipeline over a grid of config values and several seeds, gathered into one table with mean ± std.

``python -m c2am.sweep config/sweeps/<name>.yaml [--cores N]`` reads a sweep file::

    name: alpha                        # the table is results/sweeps/<name>.md and .tsv
    base: config/config.yaml           # the config every point starts from (relative to the repository)
    seeds: [0, 1, 2]
    vary:                              # dotted config keys -> values; the points are their grid (product)
      c2am.train.alpha: [0.1, 0.25, 0.5]
    scores:                            # what the table shows: <results JSON stem>:<dotted key>, or weak_full
      - pseudo_masks:variants.cam_sal_crf.miou
      - voc_miou:miou
      - weak_full

The whole file is checked before any job runs (unknown or missing keys, an empty value list, a value the config
schema rejects, an unknown score file): one line naming the key, exit 2, nothing written. Then each point x seed
runs the workflow in its own folder ``sweeps/<name>/p<i>/seed<k>/`` (its full config in ``config.yaml``, its
artifacts and results beside it; a rerun resumes, as any Snakemake run does), one after the other, each with
``--cores N``; finally the table is written from the points' ``results/*.json``.

Not done yet (issue 20): stages whose inputs and keys are the same in two points are not shared between points; each
point x seed runs the whole chain its scores need.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from c2am.defaults import lookup
from c2am.figures import save_figure, sweep_figure
from c2am.io import InputError, save_text
from c2am.runtime import run_stage

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SWEEP_KEYS = {"name", "base", "seeds", "vary", "scores"}
# results/<stem>.json that the workflow writes, and weak_full, the ratio of two of them
SCORE_FILES = ("pseudo_masks", "voc_miou", "fully_supervised_miou", "wsol")
WEAK_FULL = "weak_full"


@dataclass(frozen=True)
class Sweep:
    name: str
    base: dict
    seeds: tuple[int, ...]
    vary: dict  # dotted key -> list of values
    scores: tuple[str, ...]

    def points(self) -> list[dict]:
        """The grid of ``vary``, in file order: one dict dotted key -> value per point (one empty point if none)."""
        keys = list(self.vary)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.vary[k] for k in keys))]


def set_key(config: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def point_config(sweep: Sweep, point: dict, seed: int) -> dict:
    config = copy.deepcopy(sweep.base)
    for key, value in point.items():
        set_key(config, key, value)
    config["seed"] = seed
    return config


def score_targets(scores) -> list[str]:
    """The results files the scores are read from (the Snakemake targets of each point)."""
    stems = set()
    for score in scores:
        stems.update(("voc_miou", "fully_supervised_miou") if score == WEAK_FULL else (score.partition(":")[0],))
    return [f"results/{stem}.json" for stem in SCORE_FILES if stem in stems]


def _fail(where: str, what: str):
    raise InputError(f"{where}: {what}")


def _check_score(path: Path, score) -> None:
    if score == WEAK_FULL:
        return
    stem, sep, key = str(score).partition(":")
    if not sep or not key:
        _fail(f"{path}: scores: {score!r}", f"expected <results JSON stem>:<dotted key> or {WEAK_FULL}")
    if stem not in SCORE_FILES:
        _fail(f"{path}: scores: {score!r}", f"unknown results file {stem!r}; one of {', '.join(SCORE_FILES)}")


def load_sweep(path: str | Path) -> Sweep:
    """The sweep file, checked in full (see the module doc); InputError naming the key otherwise."""
    path = Path(path)
    if not path.is_file():
        _fail(str(path), "sweep file not found")
    with open(path) as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        _fail(str(path), "a sweep file is a mapping with name, seeds, vary and scores")
    for key in sorted(set(raw) - SWEEP_KEYS):
        _fail(f"{path}: {key}", f"unknown key; a sweep file has {', '.join(sorted(SWEEP_KEYS))}")
    for key in ("name", "seeds", "scores"):
        if key not in raw:
            _fail(f"{path}: {key}", "missing")
    name = raw["name"]
    if not isinstance(name, str) or not name or "/" in name:
        _fail(f"{path}: name", f"{name!r} is not a folder name")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        _fail(f"{path}: seeds", f"{seeds!r}: expected a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        _fail(f"{path}: seeds", f"{seeds!r} repeats a seed")
    scores = raw["scores"]
    if not isinstance(scores, list) or not scores:
        _fail(f"{path}: scores", "expected a non-empty list")
    for score in scores:
        _check_score(path, score)
    base_path = REPO / raw.get("base", "config/config.yaml")
    if not base_path.is_file():
        _fail(f"{path}: base", f"{base_path}: config not found")
    with open(base_path) as f:
        base = yaml.safe_load(f)
    vary = raw.get("vary") or {}
    if not isinstance(vary, dict):
        _fail(f"{path}: vary", "expected a mapping of dotted config keys to lists of values")
    for key, values in vary.items():
        if key == "seed":
            _fail(f"{path}: vary.seed", "seeds are given by the seeds key")
        try:
            lookup(base, key)
        except KeyError:
            _fail(f"{path}: vary.{key}", f"not a key of {base_path.name}")
        if not isinstance(values, list) or not values:
            _fail(f"{path}: vary.{key}", "expected a non-empty list of values")
    sweep = Sweep(name=name, base=base, seeds=tuple(seeds), vary=vary, scores=tuple(scores))
    _check_values(path, sweep)
    return sweep


def _check_values(path: Path, sweep: Sweep) -> None:
    """Each value against the config schema, one key at a time, so that the error names the key and value."""
    with open(SCHEMA) as f:
        schema = yaml.safe_load(f)
    for key, values in sweep.vary.items():
        for value in values:
            config = point_config(sweep, {key: value}, sweep.seeds[0])
            try:
                jsonschema.validate(config, schema)
            except jsonschema.ValidationError as e:
                _fail(f"{path}: vary.{key}", f"value {value!r}: {e.message}")


def read_score(folder: Path, score: str) -> float:
    """One score of a finished point: a number from its results JSON, or weak_full = val mIoU / GT-trained mIoU."""
    if score == WEAK_FULL:
        return read_score(folder, "voc_miou:miou") / read_score(folder, "fully_supervised_miou:miou")
    stem, _, key = score.partition(":")
    path = folder / "results" / f"{stem}.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (score {score})")
    with open(path) as f:
        data = json.load(f)
    try:
        number = lookup(data, key)
    except KeyError:
        raise InputError(f"{path}: no key {key!r} (score {score})") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise InputError(f"{path}: {key} is {number!r}, not a number (score {score})")
    return float(number)


def summarize(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1; nan for one seed) and n."""
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), std, len(values)


def point_folder(root: Path, sweep: Sweep, index: int, seed: int) -> Path:
    return root / "sweeps" / sweep.name / f"p{index}" / f"seed{seed}"


def gather(root: Path, sweep: Sweep) -> list[dict]:
    """One row per point: its values and, per score, (mean, std, n) over the seeds."""
    rows = []
    for i, point in enumerate(sweep.points()):
        folders = [point_folder(root, sweep, i, seed) for seed in sweep.seeds]
        stats = {s: summarize([read_score(folder, s) for folder in folders]) for s in sweep.scores}
        rows.append({"point": f"p{i}", "values": point, "scores": stats})
    return rows


def best_points(rows: list[dict], scores) -> dict:
    """The point with the highest mean per score (the first on ties)."""
    return {s: max(rows, key=lambda r: r["scores"][s][0])["point"] for s in scores}


def mean_std_cell(mean: float, std: float) -> str:
    """``mean ± std``, both with the mean's decimals (2 for percents, 3 for ratios); ``—`` for no std."""
    digits = 2 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} ± " + ("—" if math.isnan(std) else f"{std:.{digits}f}")


def format_markdown(sweep: Sweep, rows: list[dict]) -> str:
    best = best_points(rows, sweep.scores)
    keys = list(sweep.vary)
    head = ["point", *keys, "seeds", *sweep.scores]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["point"], *(str(row["values"][k]) for k in keys), str(len(sweep.seeds))]
        for s in sweep.scores:
            mean, std, _ = row["scores"][s]
            cell = mean_std_cell(mean, std)
            cells.append(f"**{cell}**" if best[s] == row["point"] and len(rows) > 1 else cell)
        lines.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(map(str, sweep.seeds))
    return (f"# Sweep {sweep.name}\n\nMean ± sample std over seeds {seeds}; the best point per score in bold.\n\n"
            + "\n".join(lines) + "\n")


def format_tsv(sweep: Sweep, rows: list[dict]) -> str:
    best = best_points(rows, sweep.scores)
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["point", *sweep.vary, "n_seeds",
                     *(f"{s}_{part}" for s in sweep.scores for part in ("mean", "std", "best"))])
    for row in rows:
        cells = [row["point"], *(row["values"][k] for k in sweep.vary), len(sweep.seeds)]
        for s in sweep.scores:
            mean, std, _ = row["scores"][s]
            cells += [repr(mean), "" if math.isnan(std) else repr(std), int(best[s] == row["point"])]
        writer.writerow(cells)
    return out.getvalue()


def point_label(row: dict) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in row["values"].items()) or row["point"]


def write_tables(root: Path, sweep: Sweep) -> tuple[Path, Path, Path]:
    """results/sweeps/<name>.md, .tsv and .png (each score against the points, a band of one std over seeds)."""
    rows = gather(root, sweep)
    md, tsv, png = (root / "results" / "sweeps" / f"{sweep.name}{ext}" for ext in (".md", ".tsv", ".png"))
    save_text(md, format_markdown(sweep, rows))
    save_text(tsv, format_tsv(sweep, rows))
    seeds = ", ".join(map(str, sweep.seeds))
    save_figure(sweep_figure(f"Sweep {sweep.name} (seeds {seeds})", [point_label(r) for r in rows],
                             {s: [r["scores"][s] for r in rows] for s in sweep.scores}), png)
    return md, tsv, png


def run_point(folder: Path, config: dict, targets: list[str], cores: int, extra: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.yaml"
    save_text(config_path, yaml.safe_dump(config, sort_keys=False))
    # this interpreter's Snakemake, and its bin folder first on PATH so that the stages' `python` is this env's
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(folder), "--configfile", str(config_path),
               "--cores", str(cores), "--max-threads", str(max(1, cores // 2)), *extra, "--", *targets]
    print(f"sweep: {folder}: {' '.join(command)}", file=sys.stderr, flush=True)
    if subprocess.run(command, env=env).returncode != 0:
        raise InputError(f"{folder}: the workflow failed; its log says why (rerun the sweep to resume)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m c2am.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", type=Path, help="sweep file (config/sweeps/<name>.yaml)")
    p.add_argument("--cores", type=int, default=2, help="cores of each point's Snakemake run")
    p.add_argument("--root", type=Path, default=Path("."), help="where sweeps/ and results/sweeps/ go")
    p.add_argument("--check", action="store_true", help="check the sweep file and list its runs; run nothing")
    p.add_argument("--table-only", action="store_true", help="write the table from finished points; run nothing")
    p.epilog = "Arguments after -- go to each point's Snakemake run (e.g. -- --profile profiles/slurm)."
    return p


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, snakemake_args = build_parser().parse_args(argv[:cut]), argv[cut + 1:]
    sweep = load_sweep(args.sweep)
    points = sweep.points()
    runs = [(i, point, seed) for i, point in enumerate(points) for seed in sweep.seeds]
    print(f"sweep {sweep.name}: {len(points)} points x {len(sweep.seeds)} seeds = {len(runs)} runs", file=sys.stderr)
    if args.check:
        for i, point, seed in runs:
            print(f"  {point_folder(args.root, sweep, i, seed)}  {point}")
        return
    if not args.table_only:
        targets = score_targets(sweep.scores)
        for i, point, seed in runs:
            run_point(point_folder(args.root, sweep, i, seed).resolve(), point_config(sweep, point, seed), targets,
                      args.cores, snakemake_args)
    for path in write_tables(args.root, sweep):
        print(path)


if __name__ == "__main__":
    sys.exit(run_stage(main))
