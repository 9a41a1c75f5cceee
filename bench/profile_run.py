"""Profile a whole run: per stage wall time, CPU time, threads, peak RSS and where the training time goes.

    python bench/profile_run.py                      # the default target in a fresh temporary folder
    python bench/profile_run.py --cores 2 --workdir /tmp/prof --keep -- results/voc_miou.txt

Runs Snakemake on a fresh folder (nothing cached), samples the summed RSS of the whole process tree (all
concurrent jobs together) every 0.2 s, then prints one row per job from its ``benchmarks/*.tsv`` (wall s, CPU s,
threads from the run log, peak RSS) and, for training stages, the share of their epochs spent waiting for the
data loader and writing checkpoints (from the epoch lines of ``logs/*.log``); the rest is forward/backward.
Run it with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"epoch \d+/\d+: .*?, ([\d.]+) s \(data ([\d.]+) s, checkpoint ([\d.]+) s\)")


def sample_tree_rss(proc: subprocess.Popen, peak: list[float], stop: threading.Event) -> None:
    """Keep in ``peak[0]`` the largest summed RSS (MB) of ``proc`` and its descendants."""
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak[0] = max(peak[0], total / 2**20)
        time.sleep(0.2)


def job_threads(run_log: str) -> dict[str, int]:
    """benchmark file stem -> threads, from the job blocks Snakemake prints."""
    out, bench = {}, None
    for line in run_log.splitlines():
        line = line.strip()
        if line.startswith("benchmark:"):
            bench = Path(line.split(":", 1)[1].strip()).stem
        elif line.startswith("threads:") and bench:
            out[bench], bench = int(line.split(":", 1)[1]), None
    return out


def training_split(log_file: Path) -> tuple[float, float, float] | None:
    """(epoch s, data-wait s, checkpoint s) summed over a training stage's epoch lines, or None."""
    rows = [tuple(map(float, m.groups())) for m in EPOCH_LINE.finditer(log_file.read_text())] if log_file.is_file() else []
    return tuple(sum(r[i] for r in rows) for i in range(3)) if rows else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="run folder (must not exist); default: a temporary one")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--max-threads", type=int, default=None, help="default: the Makefile's, cores / 2")
    p.add_argument("--keep", action="store_true", help="keep the run folder")
    p.add_argument("targets", nargs="*")
    args = p.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="c2am_profile_"))
    work.mkdir(parents=True, exist_ok=bool(not args.workdir))
    max_threads = args.max_threads or max(1, args.cores // 2)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", str(args.cores),
           "--max-threads", str(max_threads), *args.targets]
    peak, stop = [0.0], threading.Event()
    t0 = time.perf_counter()
    with open(work / "run.log", "w") as out:
        # the stages run as `python -m ...`: this interpreter's environment first on PATH, as `make run` has it
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample_tree_rss, args=(proc, peak, stop), daemon=True)
        sampler.start()
        code = proc.wait()
        stop.set()
    wall = time.perf_counter() - t0
    if code != 0:
        print(f"snakemake failed (exit {code}); see {work / 'run.log'}", file=sys.stderr)
        return code

    threads = job_threads((work / "run.log").read_text())
    print(f"| job | wall s | CPU s | threads | peak RSS MB | data wait | checkpoint |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for tsv in sorted((work / "benchmarks").glob("*.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        rows.append((float(row["s"]), tsv.stem, row))
    for secs, name, row in sorted(rows, reverse=True):
        split = training_split(work / "logs" / f"{name}.log")
        data = ckpt = ""
        if split and split[0] > 0:
            data, ckpt = f"{100 * split[1] / split[0]:.0f} %", f"{100 * split[2] / split[0]:.0f} %"
        print(f"| {name} | {secs:.1f} | {float(row['cpu_time']):.1f} | {threads.get(name, '?')} | "
              f"{float(row['max_rss']):.0f} | {data} | {ckpt} |")
    print(f"\nwhole run: {wall:.0f} s wall ({wall / 60:.1f} min) on --cores {args.cores} --max-threads {max_threads}; "
          f"peak RSS of all jobs together {peak[0]:.0f} MB; sum of job wall times {sum(r[0] for r in rows):.0f} s")
    if not args.keep and not args.workdir:
        import shutil

        shutil.rmtree(work)
    else:
        print(f"run folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
