"""Jobs that two runs of the workflow have in common, and sharing their outputs between the runs' folders.

A sweep (c2am/sweep.py) runs the workflow once per point x seed, each in its own folder. Most points differ in a
key that only a few stages read, so most of their jobs are the same job. What a job computes is given by

- its rule and its shell command: every rule hands the config to its stage as flags (``flags`` in
  workflow/rules/common.smk) and no stage reads the config in any other way, so the command carries every key
  the stage reads, and nothing else;
- the identities of the jobs that wrote its inputs (recursively), or the path of an input no job writes.

The hash of these is the job's identity (``job_ids``). Snakemake's dry run (``-n -p --forceall``) lists every job
of a run with its rule, files and command, before anything runs (``plan_run``); the first run that has a job owns
it, and every later run gets the owner's outputs, logs and benchmark as hard links (``share_job``): no copy, and
the same mtimes, so that Snakemake takes them as up to date and schedules only the jobs that differ.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from c2am.io import InputError, save_text

REPO = Path(__file__).resolve().parents[1]
_JOB_HEAD = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_FIELD = re.compile(r"^    (\w+): (.*)$")


@dataclass
class Job:
    rule: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()
    benchmark: str = ""
    command: str = ""
    id: str = field(default="", compare=False)

    def files(self) -> tuple[str, ...]:
        """What sharing the job links: its outputs, then its logs and benchmark (those may be missing)."""
        return self.outputs + self.logs + ((self.benchmark,) if self.benchmark else ())


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of Snakemake's ``--dry-run --printshellcmds`` output, in its order."""
    jobs, job = [], None
    for line in text.splitlines():
        head = _JOB_HEAD.match(line)
        if head:
            job = Job(rule=head.group(1))
            jobs.append(job)
            continue
        if job is None:
            continue
        match = _FIELD.match(line)
        if match and match.group(1) in ("input", "output", "log", "benchmark"):
            files = tuple(match.group(2).split(", "))
            name = {"input": "inputs", "output": "outputs", "log": "logs"}.get(match.group(1), "benchmark")
            setattr(job, name, files[0] if name == "benchmark" else files)
        elif line.startswith("Shell command: "):
            job.command = line[len("Shell command: "):].strip()
        elif not line.strip():
            job = None
    return jobs


def snakemake_command(workdir: Path, configfile: Path, cores: int, extra=(), targets=()) -> list[str]:
    """This interpreter's Snakemake on the repository's Snakefile, in ``workdir`` with ``configfile``."""
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--configfile", str(configfile), "--cores", str(cores), "--max-threads", str(max(1, cores // 2)),
            *extra, "--", *targets]


def snakemake_env() -> dict:
    """The environment of a nested Snakemake: this env's bin folder first, so that the stages' ``python`` is ours."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def plan_run(config: dict, targets, cores: int, extra=()) -> list[Job]:
    """Every job a run of ``config`` needs for ``targets``, with its identity, from a dry run in a scratch folder
    (the commands hold paths relative to the run's folder, so the folder does not change them)."""
    with tempfile.TemporaryDirectory(prefix="c2am-plan-") as scratch:
        configfile = Path(scratch) / "config.yaml"
        save_text(configfile, yaml.safe_dump(config, sort_keys=False))
        command = snakemake_command(Path(scratch), configfile, cores, [*extra, "-n", "-p", "--forceall", "--nocolor"],
                                    targets)
        result = subprocess.run(command, env=snakemake_env(), capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise InputError("the workflow's dry run failed for a sweep point: " + " / ".join(tail))
    jobs = parse_dry_run(result.stdout + "\n" + result.stderr)
    if not jobs and "Nothing to be done" not in result.stdout + result.stderr:
        raise InputError("the workflow's dry run listed no job; is its output format still Snakemake 9's?")
    job_ids(jobs)
    return jobs


def _producer(path: str, producers: dict) -> int | None:
    """The job writing ``path``, or the folder output that holds it."""
    p = PurePosixPath(path)
    for candidate in (p, *p.parents):
        if str(candidate) in producers:
            return producers[str(candidate)]
    return None


def job_ids(jobs: list[Job]) -> None:
    """Set each job's identity: a hash of its rule, its command and its inputs' identities (see the module doc)."""
    producers = {out: i for i, job in enumerate(jobs) for out in job.outputs}
    done: dict[int, str] = {}

    def identity(i: int) -> str:
        if i not in done:
            job = jobs[i]
            parts = [job.rule, job.command]
            for path in sorted(job.inputs):
                source = _producer(path, producers)
                parts.append(f"file:{path}" if source is None or source == i else identity(source))
            done[i] = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
            job.id = done[i]
        return done[i]

    for i in range(len(jobs)):
        identity(i)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links of ``src`` (a file, or a folder's files) at ``dst``, with the mtimes of ``src``'s folders."""
    if dst.exists() or dst.is_symlink():
        if dst.is_file() and src.is_file() and os.path.samefile(src, dst):
            return
        shutil.rmtree(dst) if dst.is_dir() and not dst.is_symlink() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        os.link(src, dst)
        return
    for folder, _, names in os.walk(src):
        out = dst / Path(folder).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.link(Path(folder) / name, out / name)
    for folder, _, _ in sorted(os.walk(src), key=lambda entry: -len(Path(entry[0]).parts)):
        stat = os.stat(folder)
        os.utime(dst / Path(folder).relative_to(src), ns=(stat.st_atime_ns, stat.st_mtime_ns))


def share_job(owner: Path, folder: Path, job: Job, products=()) -> None:
    """Give ``folder`` the files of ``job`` that ran in ``owner`` (and ``products``, files it writes beside its
    declared outputs). A path outside the folders is the same file for both and is left alone."""
    for path in (*job.files(), *products):
        if Path(path).is_absolute():
            continue
        src = owner / path
        if not src.exists():
            if path in job.outputs:
                raise InputError(f"{src}: missing, though {owner} ran {job.rule}; rerun the sweep to redo it")
            continue
        _link_tree(src, folder / path)
