"""A real single-node SLURM cluster: the tiny DAG submitted through profiles/slurm, every job an sbatch job;
a training job cancelled or requeued mid-run resumes; a failed job's error line ends the terminal output.

The module fixture starts munged, slurmctld and slurmd by hand (a config at /etc/slurm/slurm.conf, because the
plugin's job step does not pass SLURM_CONF on) and stops them afterwards. Without slurmdbd there is no sacct, so
job status comes from squeue. The test profile turns the GPU requests to 0 (this machine has none) and shrinks
threads and memory to fit the node. Skipped when SLURM is not installed (.ci/run installs it) or we are not root.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from c2am.data.voc import Manifest
from tests.test_pipeline import SCORE_FILES, tiny
from tests.test_shards import local_tiny_run
from tests.test_workflow import job_counts, snakemake, write_config

ROOT = Path(__file__).resolve().parents[1]
CONF = Path("/etc/slurm/slurm.conf")
MARK = "# c2am-wsss test cluster (tests/test_slurm.py); removed when the test ends"
BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel")
SUBMITTED_RULES = {"prepare_dataset", "train_c2am", "infer_c2am", "cue_threshold", "extract_cues",
                   "train_classifier", "infer_cam", "train_saliency", "infer_saliency", "refine_cams",
                   "refine_fixed_tau", "crf_labels", "robust_labels", "train_deeplab", "infer_deeplab",
                   "evaluate", "eval_c2am", "c2am_boxes", "train_affinity", "random_walk", "eval_pseudo", "visualize"}


def skip_reason() -> str | None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}); .ci/run installs slurm-wlm and munge"
    if os.geteuid() != 0:
        return "starting munged, slurmctld and slurmd by hand needs root"
    if CONF.exists() and not CONF.read_text().startswith(MARK):
        return f"{CONF} exists and is not ours: not touching a configured SLURM"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a slurmctld is already running"
    return None


REASON = skip_reason()
needs_slurm = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def slurm_conf(state: Path) -> str:
    cpus = os.cpu_count() or 1
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"""{MARK}
ClusterName=c2amtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
DefMemPerCPU=1000
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
NodeName=localhost CPUs={cpus} RealMemory={int(mem_mb * 0.8)} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"SLURM test cluster: {what} not ready after {timeout:.0f} s")


def munge_works() -> bool:
    return subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0


def node_idle() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
    return out.strip() == "idle"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node SLURM (node 'localhost', partition 'debug'); yields its state folder (daemon logs)."""
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("ctld", "spool"):
        (state / sub).mkdir()
    procs: list[subprocess.Popen] = []

    def start(cmd):
        log = open(state / f"{cmd[0]}.out", "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    try:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], check=True)
        start(["munged", "--foreground", "--force", f"--log-file={state}/munged.log",
               f"--pid-file={state}/munged.pid", f"--seed-file={state}/munged.seed"])
        wait_for(munge_works, "munged")
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(state))
        start(["slurmctld", "-D"])
        start(["slurmd", "-D", "-N", "localhost"])
        wait_for(node_idle, "node localhost")
        yield state
    finally:
        if procs:
            subprocess.run(["scancel", "--partition", "debug"], capture_output=True)
        for proc in reversed(procs):  # slurmd, slurmctld, munged
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if CONF.exists() and CONF.read_text().startswith(MARK):
            CONF.unlink()


def test_profile(folder: Path, **overrides) -> Path:
    """Overrides for this machine on top of profiles/slurm: no GPUs, one CPU and 1 GB per job, fast polling."""
    defaults = yaml.safe_load((ROOT / "workflow/rule_resources.yaml").read_text())
    profile = {
        "jobs": 4,
        "latency-wait": 5,
        "retries": 0,
        "slurm-no-account": True,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-keep-successful-logs": True,
        "set-threads": {rule: 1 for rule in defaults["set-threads"]},
        "set-resources": {rule: {"gpu": 0, "mem_mb": 1000} for rule in defaults["set-resources"]},
        **overrides,
    }
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


test_profile.__test__ = False  # a helper, not a test


def job_resources(stdout: str) -> dict[str, dict[str, str]]:
    """{rule: {resource: value}} from a dry run's job listing (the first job of each rule)."""
    jobs: dict[str, dict[str, str]] = {}
    for block in stdout.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        line = next((x for x in block.splitlines() if x.strip().startswith("resources:")), "")
        pairs = (item.split("=", 1) for item in line.split(":", 1)[-1].split(", ") if "=" in item)
        jobs.setdefault(rule, {k.strip(): v for k, v in pairs})
    return jobs


def test_slurm_profile_dry_run_shows_each_jobs_resources(tmp_path):
    result = snakemake("--profile", str(ROOT / "profiles/slurm"), "-n", "--cores", "8", "results/voc_miou.txt",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_resources(result.stdout)
    assert set(jobs) >= {"train_c2am", "infer_c2am", "extract_cues", "train_deeplab", "evaluate"}
    assert jobs["train_c2am"]["gpu"] == "1" and jobs["train_c2am"]["mem_mb"] == "8000"
    assert jobs["train_c2am"]["runtime"] == "240" and jobs["train_deeplab"]["mem_mb"] == "12000"
    assert jobs["extract_cues"]["gpu"] == "0" and "slurm_partition" in jobs["evaluate"]
    assert "threads: 8" in result.stdout


def test_a_user_profile_overrides_resources_key_by_key(tmp_path):
    profile = test_profile(tmp_path / "p")
    result = snakemake("--profile", str(ROOT / "profiles/slurm"), "--profile", str(profile), "-n",
                       "results/voc_miou.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_resources(result.stdout)
    assert jobs["train_c2am"]["gpu"] == "0" and jobs["train_c2am"]["mem_mb"] == "1000"
    assert jobs["train_c2am"]["runtime"] == "240"  # not named by the override: the default stays


def test_local_profile_lists_the_dag(tmp_path):
    result = snakemake("--profile", str(ROOT / "profiles/local"), "-n", "results/voc_miou.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_resources(result.stdout)["infer_c2am"]["gpu"] == "1"


@needs_slurm
def test_tiny_dag_runs_through_a_real_slurm(cluster, tmp_path_factory):
    local_work, _, local_wall = local_tiny_run(tmp_path_factory)
    work = tmp_path_factory.mktemp("dag_slurm")

    def edit(config):
        tiny(config)
        config["shards"] = 2  # scattered jobs and gathers on the cluster too

    config = write_config(work / "tiny.yaml", edit)
    profile = test_profile(work / "test_profile")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles/slurm"),
           "--profile", str(profile), "--configfile", str(config)]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    wall = time.perf_counter() - start
    print(f"\ntiny DAG wall time: SLURM {wall:.0f} s (shards 2), local --cores 2 {local_wall:.0f} s (shards 1)")
    logs = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, logs

    # Every stage ran as its own SLURM job (the plugin keeps a log per job with slurm-keep-successful-logs).
    slurm_logs = work / ".snakemake" / "slurm_logs"
    submitted = {p.name.removeprefix("rule_") for p in slurm_logs.iterdir() if p.is_dir()}
    assert SUBMITTED_RULES <= submitted, SUBMITTED_RULES - submitted
    assert "gather_shards" not in submitted  # local rules stay on the submitting host
    assert len(list((slurm_logs / "rule_infer_c2am").rglob("*.log"))) == 2  # one job per shard
    assert set(job_counts(result.stdout + result.stderr)) >= SUBMITTED_RULES

    manifest = Manifest.load(work / "artifacts/dataset/manifest.json")
    for folder, split in [("artifacts/c2am/maps", "train"), ("artifacts/pseudo/cam_cues_crf", "train"),
                          ("artifacts/deeplab/cam_sal_crf_robust/pred_val", "val")]:
        files = [p.stem for p in (work / folder).iterdir() if not p.name.startswith(".")]
        assert sorted(files) == sorted(manifest.ids(split)), folder
    for name in SCORE_FILES:
        assert (work / "results" / f"{name}.txt").read_text().strip(), name
    assert (work / "results/voc_miou.txt").read_text().startswith("mIoU: ")
    # the same DAG locally produced the same set of results
    assert sorted(p.name for p in (work / "results").glob("*.txt")) == \
        sorted(p.name for p in (local_work / "results").glob("*.txt"))


def slurm_run(work: Path, profile: Path, *args: str) -> list[str]:
    """The command of a run through profiles/slurm plus the test profile ``profile``, in ``work``."""
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles/slurm"),
            "--profile", str(profile), *args]


def venv_env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def slurm_run_id(output: Path) -> str | None:
    """The run's own id, from its log: the plugin names every job of a run by it (``SLURM run ID: <uuid>``)."""
    text = output.read_text() if output.is_file() else ""
    match = re.search(r"SLURM run ID: (\S+)", text)
    return match.group(1) if match else None


def slurm_job_id(run_id: str | None, comment: str) -> str | None:
    """The id of the queued or running SLURM job of run ``run_id`` whose comment is ``comment`` (the plugin's
    rule_<name>): a job of another run on the same cluster, even of the same rule, is never taken."""
    if run_id is None:
        return None
    out = subprocess.run(["squeue", "-h", "-t", "PD,R", "-o", "%i %j %k"], capture_output=True, text=True).stdout
    return next((line.split()[0] for line in out.splitlines() if line.split()[1:] == [run_id, comment]), None)


def two_epochs(config):
    tiny(config)
    config["c2am"]["train"]["epochs"] = 2


_LOCAL_C2AM: dict = {}


def local_c2am(tmp_path_factory) -> Path:
    """Folder of an uninterrupted local run of train_c2am (2 epochs, 1 thread as on the test cluster); once."""
    if "work" not in _LOCAL_C2AM:
        work = tmp_path_factory.mktemp("c2am_local")
        write_config(work / "tiny.yaml", two_epochs)
        result = snakemake("--cores", "1", "artifacts/c2am/model.pt", "--configfile", "tiny.yaml", cwd=work)
        assert result.returncode == 0, result.stderr[-3000:]
        _LOCAL_C2AM["work"] = work
    return _LOCAL_C2AM["work"]


def job_state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


@needs_slurm
@pytest.mark.parametrize("how", ["scancel", "requeue"])
def test_a_training_job_ended_by_slurm_resumes_after_its_last_epoch(cluster, tmp_path_factory, how):
    """Preemption or a time limit as SLURM deals it: the training job ends once its first epoch is written.

    When ``artifacts/c2am/model.pt.resume`` (the state after epoch 1 of 2) appears, the job is either
    cancelled (``scancel``: what a time limit or a cancelling preemption does; profiles/slurm's ``retries: 1``
    makes Snakemake submit it again) or requeued by SLURM (``scontrol requeue``: what a preemption with
    PreemptMode=REQUEUE does; the plugin waits for the same job, no retry). Either way the job that runs next
    resumes after epoch 1, and weights and training log equal, byte for byte, those of an uninterrupted local
    run with the same threads. Only train_c2am and what it needs run: the whole DAG is the test above.
    """
    target = "artifacts/c2am/model.pt"
    local = local_c2am(tmp_path_factory)
    work = tmp_path_factory.mktemp(f"c2am_slurm_{how}")
    write_config(work / "tiny.yaml", two_epochs)
    # retries as profiles/slurm sets them for the cancel; none for the requeue, which SLURM alone must handle
    profile = test_profile(work / "test_profile", retries=1 if how == "scancel" else 0)
    state = work / "artifacts/c2am/model.pt.resume"
    with open(work / "snakemake.out", "w") as out:
        proc = subprocess.Popen(slurm_run(work, profile, target, "--configfile", "tiny.yaml"), cwd=work,
                                env=venv_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, job = time.monotonic() + 600, None
        while not state.is_file():  # the job id first (the job is running), then the end of epoch 1
            assert proc.poll() is None, (work / "snakemake.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "train_c2am never finished its first epoch on SLURM"
            job = job or slurm_job_id(slurm_run_id(work / "snakemake.out"), "rule_train_c2am")
            time.sleep(0.05)
        job = job or slurm_job_id(slurm_run_id(work / "snakemake.out"), "rule_train_c2am")
        assert job, "no SLURM job for train_c2am"
        if how == "scancel":
            subprocess.run(["scancel", job], check=True)
        else:  # SLURM holds a requeued job back (BeginTime, about 2 min); a test need not wait for that
            subprocess.run(["scontrol", "requeue", job], check=True)
            wait_for(lambda: job_state(job) == "PENDING", "requeued job", timeout=60)
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        assert not (work / target).exists(), f"train_c2am had already finished: the {how} came too late"
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (work / "snakemake.out").read_text()
    assert proc.returncode == 0, text[-4000:]
    if how == "scancel":
        assert f"SLURM-job '{job}' failed" in text and "Trying to restart job" in text
    else:
        assert "Trying to restart job" not in text
    assert slurm_run_id(work / "snakemake.out") is not None
    assert slurm_job_id(slurm_run_id(work / "snakemake.out"), "rule_train_c2am") is None
    log = (work / "logs/train_c2am.log").read_text()
    assert "resuming from artifacts/c2am/model.pt.resume after epoch 1/2" in log, log[-2000:]
    assert not state.exists()
    for name in (target, "artifacts/c2am/train_log.csv"):
        assert (work / name).read_bytes() == (local / name).read_bytes(), f"{name} differs from the local run"


@needs_slurm
def test_a_failing_slurm_job_shows_its_error_line_last(cluster, tmp_path):
    def edit(config):
        config["dataset"].update(kind="voc", root="data/nowhere")

    write_config(tmp_path / "bad.yaml", edit)
    profile = test_profile(tmp_path / "test_profile")
    result = subprocess.run(slurm_run(tmp_path, profile, "results/voc_miou.txt", "--configfile", "bad.yaml"),
                            cwd=tmp_path, env=venv_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    tail = result.stderr.strip().splitlines()[-8:]  # the job ran on a SLURM node; its log is on the shared disk
    assert any(line.strip().startswith("error: data/nowhere") for line in tail), "\n".join(tail)


def test_a_run_finds_only_its_own_jobs(tmp_path, monkeypatch):
    """Two runs on one cluster, each with a train_c2am job: each run's lookup gives its own job (no SLURM needed)."""
    (tmp_path / "snakemake.out").write_text("Building DAG of jobs...\nSLURM run ID: 7f3a-ours\nSubmitted...\n")
    queue = "101 0c1d-theirs rule_train_c2am\n102 7f3a-ours rule_train_saliency\n103 7f3a-ours rule_train_c2am\n"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=queue))
    run_id = slurm_run_id(tmp_path / "snakemake.out")
    assert run_id == "7f3a-ours"
    assert slurm_job_id(run_id, "rule_train_c2am") == "103"
    assert slurm_job_id("0c1d-theirs", "rule_train_c2am") == "101"
    assert slurm_job_id(run_id, "rule_train_classifier") is None
    assert slurm_run_id(tmp_path / "missing.out") is None and slurm_job_id(None, "rule_train_c2am") is None
