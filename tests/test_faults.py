"""Faults as users meet them: a run killed at any point continues with the README's command as it is, and
a failing stage's one-line error reaches the terminal.

The fault matrix kills the whole Snakemake process group (``kill -9``: the stage and its DataLoader workers die
with it, as in a reboot) during each of train_c2am, infer_c2am, crf_labels and train_deeplab, reruns the
plain command, and compares every file under artifacts/ and results/ byte for byte with ONE uninterrupted run
of the same config (the module's reference run). The training stages train 2 epochs here and are killed once
the resume state of epoch 1 exists, so the rerun must resume after epoch 1.

train_c2am is killed in a fresh run. The later stages are killed in a copy of the finished reference run in
which that stage is forced to run again (``--forcerun``): the run then redoes that stage and everything
downstream of it, as a fresh run does from there, at a third of the cost (the module must fit in a few minutes
on 2 cores). That the rerun really redid every job the killed run had planned is checked from the job stats,
so no output copied from the reference can pass the comparison unrecomputed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2am import hooks
from tests.test_pipeline import tiny
from tests.test_workflow import job_counts, snakemake, write_config

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL = 16, 8
RUN = ("--cores", "2", "results/voc_miou.txt", "--configfile", "tiny.yaml")  # the README's command, tiny config
DEADLINE_S = 240  # no single run or poll of this module may take longer


def fault_tiny(config: dict) -> None:
    """The tiny config, smaller still, with 2 epochs for the two training stages that get killed."""
    tiny(config)
    config["dataset"]["synthetic"].update(n_train=N_TRAIN, n_val=N_VAL)
    config["c2am"]["train"]["epochs"] = 2
    config["deeplab"]["train"]["epochs"] = 2


def start(work: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """Snakemake in the background, leader of its own process group (so the group can be killed); its output
    goes to a file (returned), not a pipe that nobody reads."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = work / f"snakemake_{time.monotonic_ns()}.out"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args]
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, out


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_when(proc: subprocess.Popen, ready, what: str) -> float:
    """Poll ``ready()`` every 5 ms; when true, SIGKILL the run's whole process group. Returns the run's age."""
    t0, deadline = time.monotonic(), time.monotonic() + DEADLINE_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{what}: not reached in {DEADLINE_S} s")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    age = time.monotonic() - t0
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while group_alive(proc.pid):  # orphans of the group would keep writing into the rerun's files
        assert time.monotonic() < deadline, "processes of the killed run survived SIGKILL"
        time.sleep(0.05)
    return age


def snapshot(work: Path) -> dict[str, bytes]:
    """Every file under artifacts/ and results/, by relative path. logs/ and benchmarks/ (times, progress bars)
    and .snakemake/ (Snakemake's own records) are outside these folders; nothing inside them is excluded."""
    return {str(p.relative_to(work)): p.read_bytes()
            for top in ("artifacts", "results") for p in sorted((work / top).rglob("*")) if p.is_file()}


def assert_same_files(work: Path, reference: dict[str, bytes]) -> None:
    files = snapshot(work)
    assert sorted(files) == sorted(reference), (
        f"only in the resumed run: {sorted(set(files) - set(reference))}; "
        f"only in the reference: {sorted(set(reference) - set(files))}")
    differ = [name for name in reference if files[name] != reference[name]]
    assert not differ, f"{len(differ)} file(s) differ from the uninterrupted run: {differ[:10]}"


def resumed_epoch(log: Path) -> int | None:
    match = re.search(r"resuming from \S+ after epoch (\d+)/\d+", log.read_text())
    return int(match.group(1)) if match else None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (work dir, file snapshot). While it runs, a second run in its folder is refused."""
    work = tmp_path_factory.mktemp("reference")
    write_config(work / "tiny.yaml", fault_tiny)
    t0 = time.monotonic()
    proc, out = start(work, *RUN)
    deadline = time.monotonic() + DEADLINE_S
    while not list((work / ".snakemake/locks").glob("*.lock")):  # Snakemake locks once its DAG is built
        assert proc.poll() is None and time.monotonic() < deadline, "the reference run never took its lock"
        time.sleep(0.05)
    second = snakemake(*RUN, cwd=work)
    proc.wait(timeout=DEADLINE_S)
    assert proc.returncode == 0, out.read_text()[-4000:]
    print(f"\nreference run: {time.monotonic() - t0:.0f} s")
    return work, snapshot(work), second


def test_a_second_run_beside_a_live_one_is_refused_and_leaves_its_lock(reference):
    work, files, second = reference
    assert second.returncode != 0
    assert "another Snakemake run is live in this folder" in second.stderr
    assert "Directory cannot be locked" in second.stderr + second.stdout
    assert "results/voc_miou.txt" in files  # and the live run went on to the end, its lock intact


CASES = {
    # stage: (when to kill, the check that the kill landed inside the stage)
    "train_c2am": ("artifacts/c2am/model.pt.resume", "artifacts/c2am/model.pt"),
    "infer_c2am": ("artifacts/c2am/maps", N_TRAIN),
    "crf_labels": ("artifacts/pseudo/cam_sal_crf", N_TRAIN),
    "train_deeplab": ("artifacts/deeplab/cam_sal_crf_robust/model.pt.resume",
                      "artifacts/deeplab/cam_sal_crf_robust/model.pt"),
}
STAGE_LOGS = {"train_c2am": "logs/train_c2am.log", "train_deeplab": "logs/train_deeplab_cam_sal_crf_robust.log"}


def written(folder: Path) -> int:
    """Finished files in a per-image output folder (temporary and Snakemake's hidden files start with '.')."""
    return sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0


@pytest.mark.parametrize("stage", list(CASES))
def test_kill_9_then_the_same_command_ends_byte_identical(reference, tmp_path, stage):
    ref_work, ref_files, _ = reference
    watch, inside = CASES[stage]
    if stage == "train_c2am":
        work = tmp_path / "run"
        work.mkdir()
        shutil.copy(ref_work / "tiny.yaml", work)
        proc, out = start(work, *RUN)
    else:
        work = tmp_path / "run"
        shutil.copytree(ref_work, work, symlinks=True)  # copy2 keeps the mtimes Snakemake compares
        if isinstance(inside, int):  # Snakemake would delete it when the job starts; the poll must not see it first
            shutil.rmtree(work / watch)
        proc, out = start(work, *RUN, "--forcerun", stage)
    if isinstance(inside, int):  # a per-image stage: kill once some, not all, of its files are written
        age = kill_when(proc, lambda: written(work / watch) > 0, f"{stage} writing {watch}")
        done = written(work / watch)
        assert done < inside, f"the kill came after {stage} had written all {inside} files"
    else:  # a training stage: kill in epoch 2, once the resume state of epoch 1 is there
        age = kill_when(proc, lambda: (work / watch).is_file(), f"{stage}'s resume state")
        done = None
        assert not (work / inside).exists(), f"the kill came after {stage} had finished"
    planned = job_counts(out.read_text())
    assert list((work / ".snakemake/locks").glob("*.lock")), "the killed run left no lock: nothing tested"

    t0 = time.monotonic()
    rerun = snakemake(*RUN, cwd=work)
    seconds = time.monotonic() - t0
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    text = rerun.stdout + rerun.stderr
    assert "removed the lock of a Snakemake run that was killed" in text
    jobs = job_counts(text)
    if stage == "train_c2am":  # the rerun does what was left: all but the jobs that may have finished before
        assert set(planned) - {"prepare_dataset", "train_classifier", "infer_cam"} <= set(jobs) <= set(planned)
    else:  # the forced stage was the killed run's first job, so nothing it planned was done
        assert "prepare_dataset" not in planned, "code or config changed since the reference run: all reran"
        assert jobs == planned
    if stage in STAGE_LOGS:
        assert resumed_epoch(work / STAGE_LOGS[stage]) == 1, f"{stage} did not resume after epoch 1"
    else:
        assert all(resumed_epoch(work / log) is None for log in STAGE_LOGS.values())
    assert not list(work.rglob("*.resume")), "a resume state was left behind"
    assert_same_files(work, ref_files)
    what = f"{done}/{inside} files written" if done is not None else "resumed after epoch 1"
    print(f"\nkill -9 during {stage}, {age:.1f} s into the run ({what}); rerun {seconds:.0f} s: "
          + ", ".join(jobs))


def test_a_missing_dataset_root_shows_the_stages_error_line_last(tmp_path):
    def edit(config):
        config["dataset"].update(kind="voc", root="data/nowhere")

    write_config(tmp_path / "bad.yaml", edit)
    result = snakemake("--cores", "1", "results/voc_miou.txt", "--configfile", "bad.yaml", cwd=tmp_path)
    assert result.returncode != 0
    tail = result.stderr.strip().splitlines()[-8:]  # what a newcomer sees last
    assert any(line.strip().startswith("error: data/nowhere") for line in tail), "\n".join(tail)
    assert any(line.startswith("Last lines of logs/prepare_dataset.log") for line in tail)


# ----------------------------------------------------------------------------- the run lock itself


def holder(state: Path) -> subprocess.Popen:
    """Another process that claims the run lock of ``state`` and stays alive until killed."""
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from c2am import hooks; "
            f"print(hooks.claim({str(state)!r}), flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stale_lock(state: Path) -> Path:
    (state / "locks").mkdir(parents=True, exist_ok=True)
    lock = state / "locks" / "0.output.lock"
    lock.write_text("/some/output\n")
    return lock


def test_claim_keeps_the_lock_of_a_live_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hooks, "_held", None)
    live = holder(tmp_path)
    try:
        lock = stale_lock(tmp_path)
        assert hooks.claim(tmp_path) == "live run"
        assert lock.exists()
        assert f"pid {live.pid}" in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()
    # its holder gone (as after kill -9), the same lock is stale and is removed
    assert hooks.claim(tmp_path) == "removed stale lock"
    assert not lock.exists()
    hooks._held.close()


def test_claim_keeps_a_lock_left_on_another_host(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hooks, "_held", None)
    (tmp_path / hooks.LOCK_NAME).write_text("host elsewhere pid 123\n")
    lock = stale_lock(tmp_path)
    assert hooks.claim(tmp_path) == "other host"
    assert lock.exists() and "host elsewhere" in capsys.readouterr().err
    assert (tmp_path / hooks.LOCK_NAME).read_text() == f"host {socket.gethostname()} pid {os.getpid()}\n"
    hooks._held.close()
