"""Shared test helpers and the one run of the whole tiny DAG per test session.

``tiny_dag`` (session fixture) runs the DAG once, on the tiny config, locally with ``--cores 2`` (one to two
minutes on 2 cores); every module that needs a finished run uses it. Tests that write into a run's folder work on
a copy (``shutil.copytree``) so that the shared run stays as the DAG left it.

The helpers (``snakemake``, ``job_counts``, ``stage_commands``, ``write_config``, ``tiny``) are re-exported by tests/test_workflow.py
and tests/test_pipeline.py, where other test modules import them from.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args, cwd) -> subprocess.CompletedProcess:
    """``python -m snakemake -s <repo>/Snakefile *args`` in ``cwd``, with this interpreter's env first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's "Job stats:" table."""
    lines = stdout.split("Job stats:")[1].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def stage_commands(output: str) -> list[tuple[str, list[str]]]:
    """(stage, argv) of every ``python -m c2am.stages.<stage>`` command a ``snakemake -n -p`` run printed, in
    order; argv without the ``2> log`` redirection."""
    found = []
    for line in output.splitlines():
        line = line.strip().removeprefix("Shell command:").strip()
        if line.startswith("python -m c2am.stages."):
            argv = shlex.split(line.split(" 2> ")[0])
            found.append((argv[2].rsplit(".", 1)[1], argv[3:]))
    return found


def write_config(path: Path, edit) -> Path:
    """The default config, changed in place by ``edit(config)``, written to ``path``."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    return path


def tiny(config: dict) -> None:
    """The tiny config: a few dozen 64-px images, one epoch per network, one scale, 2 CRF iterations."""
    config["dataset"]["synthetic"] = {"n_train": 24, "n_val": 8, "image_size": 64}
    for net in ("c2am", "classifier", "saliency", "affinity", "deeplab"):
        config[net]["train"].update(epochs=1, batch_size=8)
    config["c2am"]["train"].update(resize=64, crop=56)
    config["classifier"]["train"]["crop"] = 64
    config["deeplab"]["train"]["crop"] = 64
    config["saliency"]["train"]["crop"] = 64
    config["affinity"]["train"]["crop"] = 64
    for net in ("c2am", "classifier"):
        config[net]["infer"]["scales"] = [1.0]
    for crf in (config["c2am"]["cues"]["crf"], config["crf_labels"]["crf"]):
        crf["iters"] = 2


_TINY_RUN: dict = {}


def tiny_dag_run(tmp_path_factory) -> tuple[Path, Path, float]:
    """(work dir, config path, wall seconds) of the whole tiny DAG, run locally with --cores 2 once per session.

    A plain function as well as the ``tiny_dag`` fixture, for helpers that are not fixtures themselves.
    """
    if "run" not in _TINY_RUN:
        work = tmp_path_factory.mktemp("dag")
        config = write_config(work / "tiny.yaml", tiny)
        start = time.perf_counter()
        result = snakemake("--cores", "2", "--configfile", str(config), cwd=work)
        wall = time.perf_counter() - start
        # A failed run is remembered too: every test that needs it fails with its log, none runs it again.
        _TINY_RUN["run"] = (work, config, wall) if result.returncode == 0 else result.stderr[-4000:]
    if isinstance(_TINY_RUN["run"], str):
        pytest.fail(f"the tiny DAG run failed:\n{_TINY_RUN['run']}", pytrace=False)
    return _TINY_RUN["run"]


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> tuple[Path, Path]:
    """(work dir, config path) of the session's finished tiny DAG run. Read it; copy it before writing into it."""
    work, config, _ = tiny_dag_run(tmp_path_factory)
    return work, config
