"""Do the two independent training branches (C2AM, classifier) oversubscribe the cores when run at once?

Runs both training stages on the same small generated dataset three ways and prints the wall times:
  serial      one after the other, each with all the cores (what `snakemake --cores N` does: the rules ask
              for 8 threads, so two never fit at once, and each stage caps its threads at the real CPUs);
  parallel-N  both at once, each with all the cores (what a naive rule with threads=1 under --cores 8 would
              risk if stages did not cap: 2 x N threads on N cores);
  parallel-1  both at once, one thread each.
usage: python bench/bench_parallel_branches.py [--n-train 96] [--epochs 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from c2am.runtime import available_cpus

ROOT = Path(__file__).resolve().parents[1]


def stage_commands(work: Path, threads: int, epochs: int, config: dict) -> list[list[str]]:
    manifest = str(work / "manifest.json")
    c2am, cls = config["c2am"]["train"], config["classifier"]["train"]
    common = ["--manifest", manifest, "--split", "train", "--epochs", str(epochs), "--threads", str(threads),
              "--no-resume", "--device", "cpu"]
    return [
        [sys.executable, "-m", "c2am.stages.train_c2am", *common, "--out", str(work / f"c2am{threads}.pt"),
         "--log-csv", str(work / "c2am.csv"), "--batch-size", str(c2am["batch_size"]),
         "--resize", str(c2am["resize"]), "--crop", str(c2am["crop"])],
        [sys.executable, "-m", "c2am.stages.train_classifier", *common, "--val-split", "val",
         "--out", str(work / f"cls{threads}.pt"), "--log-csv", str(work / "cls.csv"),
         "--out-txt", str(work / "cls.txt"), "--batch-size", str(cls["batch_size"]), "--crop", str(cls["crop"])],
    ]


def timed(commands: list[list[str]], parallel: bool) -> float:
    start = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(c, stderr=subprocess.DEVNULL) for c in commands]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(c, stderr=subprocess.DEVNULL).returncode for c in commands]
    if any(codes):
        raise SystemExit(f"a stage failed: exit codes {codes}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cpus = available_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "c2am.stages.prepare_dataset", "--kind", "synthetic", "--root", str(work / "voc"),
             "--classes", *config["dataset"]["classes"], "--n-train", str(args.n_train), "--n-val", "16",
             "--image-size", str(config["dataset"]["synthetic"]["image_size"]), "--out", str(work / "manifest.json")],
            check=True, stderr=subprocess.DEVNULL,
        )
        print(f"{cpus} CPUs, {args.n_train} images, {args.epochs} epoch(s) of C2AM and of the classifier")
        for name, threads, parallel in (("serial", cpus, False), (f"parallel-{cpus}", cpus, True),
                                        ("parallel-1", 1, True)):
            seconds = timed(stage_commands(work, threads, args.epochs, config), parallel)
            print(f"{name:>12}: {seconds:6.1f} s wall")


if __name__ == "__main__":
    main()
