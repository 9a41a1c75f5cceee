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
is a run of the workflow in its own folder ``sweeps/<name>/p<i>/seed<k>/`` (its full config in ``config.yaml``, its
artifacts and results beside it; a rerun resumes, as any Snakemake run does), with ``--cores N``.

Runs share their common jobs (c2am/sharing.py): a dry run of every run lists its jobs before anything runs; a job
whose rule, command (every config key its stage reads) and inputs' jobs are those of a job in an earlier run is
run once, by the first run that has it, and the later runs get its files as hard links. So a run waits for the
runs it shares jobs with; the others run side by side (``--parallel K``). ``--dry-run`` prints, per rule, how many
jobs the runs hold and how many will run. Finally the table is written from the points' ``results/*.json``.
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
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from c2am import sharing
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


# Scores where less is better: the share of distractor pixels labelled as a class, error rates and losses.
LOWER_IS_BETTER = ("distractors_labelled", "error", "loss")


def lower_is_better(score: str) -> bool:
    return score.rsplit(".", 1)[-1].endswith(LOWER_IS_BETTER)


def best_points(rows: list[dict], scores) -> dict:
    """The point with the best mean per score: the highest, the lowest for LOWER_IS_BETTER (the first on ties)."""
    pick = {s: (min if lower_is_better(s) else max) for s in scores}
    return {s: pick[s](rows, key=lambda r: r["scores"][s][0])["point"] for s in scores}


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
    return (f"# Sweep {sweep.name}\n\nMean ± sample std over seeds {seeds}; the best point per score in bold"
            " (the lowest for a distractor share, error or loss).\n\n" + "\n".join(lines) + "\n")


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


@dataclass(frozen=True)
class Run:
    """One point x seed: its folder and full config."""
    point: int
    seed: int
    folder: Path
    config: dict

    def label(self) -> str:
        return f"p{self.point}/seed{self.seed}"

    def products(self, job: sharing.Job) -> tuple[str, ...]:
        """Files a job writes beside its declared outputs: the generated dataset of prepare_dataset (not an output,
        because Snakemake would delete a folder that dataset.root points at by mistake; the stage refuses to)."""
        data = self.config["dataset"]
        return (data["root"],) if job.rule == "prepare_dataset" and data["kind"] == "synthetic" else ()


def sweep_runs(root: Path, sweep: Sweep) -> list[Run]:
    return [Run(i, seed, point_folder(root, sweep, i, seed).resolve(), point_config(sweep, point, seed))
            for i, point in enumerate(sweep.points()) for seed in sweep.seeds]


def plan_runs(runs: list[Run], targets, cores: int, extra) -> list[list[sharing.Job]]:
    """Each run's jobs with their identities (dry runs, two at a time)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda run: sharing.plan_run(run.config, targets, cores, extra), runs))


def owners(plans: list[list[sharing.Job]]) -> list[list[tuple[int, sharing.Job]]]:
    """Per run, the jobs it takes from earlier runs, as (the run that runs the job, the job)."""
    first: dict[str, int] = {}
    shared = []
    for r, jobs in enumerate(plans):
        shared.append([(first[job.id], job) for job in jobs if job.outputs and first.get(job.id, r) != r])
        for job in jobs:
            first.setdefault(job.id, r)
    return shared


def format_plan(plans, shared) -> str:
    """Per rule: the jobs of all runs, and how many of them run (the others are shared)."""
    total = Counter(job.rule for jobs in plans for job in jobs if job.outputs)
    taken = Counter(job.rule for pairs in shared for _, job in pairs)
    width = max(map(len, total), default=4)
    lines = [f"  {'rule':<{width}}  jobs  to run"]
    lines += [f"  {rule:<{width}}  {n:4d}  {n - taken[rule]:6d}" for rule, n in total.items()]
    n, k = sum(total.values()), sum(taken.values())
    lines.append(f"  {'total':<{width}}  {n:4d}  {n - k:6d}   ({k} shared)")
    return "\n".join(lines)


def run_point(run: Run, targets: list[str], cores: int, extra: list[str], log: Path | None = None) -> None:
    run.folder.mkdir(parents=True, exist_ok=True)
    config_path = run.folder / "config.yaml"
    save_text(config_path, yaml.safe_dump(run.config, sort_keys=False))
    command = sharing.snakemake_command(run.folder, config_path, cores, extra, targets)
    print(f"sweep: {run.folder}: {' '.join(command)}", file=sys.stderr, flush=True)
    if log is None:
        code = subprocess.run(command, env=sharing.snakemake_env()).returncode
    else:  # runs side by side: each run's Snakemake output in its folder
        with open(log, "w") as out:
            code = subprocess.run(command, env=sharing.snakemake_env(), stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        where = f"; see {log}" if log else ""
        raise InputError(f"{run.folder}: the workflow failed{where} (rerun the sweep to resume)")


def execute(runs: list[Run], shared, targets, cores: int, extra, parallel: int) -> None:
    """Run every run once the runs it shares jobs with are done, ``parallel`` at a time; stop at a failure."""
    needs = [{owner for owner, _ in pairs} for pairs in shared]
    pending, running, done, failure = list(range(len(runs))), {}, set(), None
    with ThreadPoolExecutor(parallel) as pool:
        while running or (pending and failure is None):
            ready = [] if failure else [r for r in pending if needs[r] <= done][: parallel - len(running)]
            for r in ready:
                pending.remove(r)
                for owner, job in shared[r]:
                    sharing.share_job(runs[owner].folder, runs[r].folder, job, runs[r].products(job))
                print(f"sweep: {runs[r].label()} ({len(done) + len(running) + 1}/{len(runs)}), "
                      f"{len(shared[r])} jobs shared", file=sys.stderr, flush=True)
                log = runs[r].folder / "sweep.log" if parallel > 1 else None
                running[pool.submit(run_point, runs[r], targets, cores, extra, log)] = r
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                r = running.pop(future)
                try:
                    future.result()
                    done.add(r)
                except InputError as e:
                    failure = failure or e
    if failure is not None:
        raise failure


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m c2am.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", type=Path, help="sweep file (config/sweeps/<name>.yaml)")
    p.add_argument("--cores", type=int, default=2, help="cores of each point's Snakemake run")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs side by side (each with --cores; on a cluster, each submits its jobs through the profile)")
    p.add_argument("--root", type=Path, default=Path("."), help="where sweeps/ and results/sweeps/ go")
    p.add_argument("--check", action="store_true", help="check the sweep file and list its runs; run nothing")
    p.add_argument("--dry-run", action="store_true", help="also list, per rule, the jobs that would run; run nothing")
    p.add_argument("--table-only", action="store_true", help="write the table from finished points; run nothing")
    p.epilog = "Arguments after -- go to each point's Snakemake run (e.g. -- --profile profiles/slurm)."
    return p


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, snakemake_args = build_parser().parse_args(argv[:cut]), argv[cut + 1:]
    if args.cores < 1 or args.parallel < 1:
        raise InputError(f"--cores {args.cores} --parallel {args.parallel}: both must be at least 1")
    sweep = load_sweep(args.sweep)
    runs, points = sweep_runs(args.root, sweep), sweep.points()
    print(f"sweep {sweep.name}: {len(points)} points x {len(sweep.seeds)} seeds = {len(runs)} runs", file=sys.stderr)
    if args.check:
        for run in runs:
            print(f"  {run.folder}  {points[run.point]}")
        return
    if not args.table_only:
        targets = score_targets(sweep.scores)
        plans = plan_runs(runs, targets, args.cores, snakemake_args)
        shared = owners(plans)
        print(format_plan(plans, shared), file=sys.stderr, flush=True)
        if args.dry_run:
            return
        execute(runs, shared, targets, args.cores, snakemake_args, args.parallel)
    for path in write_tables(args.root, sweep):
        print(path)


if __name__ == "__main__":
    sys.exit(run_stage(main))
