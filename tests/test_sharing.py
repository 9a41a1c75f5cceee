"""Sharing jobs between the runs of a sweep (c2am/sharing.py, c2am/sweep.py): which jobs are the same, that a
downstream-only sweep trains each upstream network once per seed, and that Snakemake takes the shared files as
done."""

import copy
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from c2am import sharing
from c2am import sweep as sw

REPO = Path(__file__).resolve().parents[1]
PSEUDO = ["results/pseudo_masks.json"]
UPSTREAM = ("prepare_dataset", "train_c2am", "infer_c2am", "train_classifier", "infer_cam", "train_saliency",
            "train_affinity", "random_walk")

DRY_RUN = """\
Building DAG of jobs...
Job stats:
job      count
-----  -------
a          1

[Mon Dec  7 17:29:44 2026]
rule make_a:
    output: out/a.txt, out/folder
    log: logs/a.log
    jobid: 1
    benchmark: benchmarks/a.tsv
    reason: Forced execution
    resources: tmpdir=/tmp
Shell command: python -m c2am.stages.make_a --x 1 2> logs/a.log

[Mon Dec  7 17:29:44 2026]
localrule all:
    input: out/a.txt, out/folder/part.npy, data/raw.csv
    jobid: 0
    reason: Forced execution
"""


def base_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_key(key: str, value) -> dict:
    config = base_config()
    sw.set_key(config, key, value)
    return config


def test_the_dry_run_gives_each_jobs_rule_files_and_command():
    make_a, done = sharing.parse_dry_run(DRY_RUN)
    assert (make_a.rule, make_a.outputs, make_a.logs, make_a.benchmark) == (
        "make_a", ("out/a.txt", "out/folder"), ("logs/a.log",), "benchmarks/a.tsv")
    assert make_a.command == "python -m c2am.stages.make_a --x 1 2> logs/a.log" and make_a.inputs == ()
    assert (done.rule, done.inputs, done.outputs, done.command) == (
        "all", ("out/a.txt", "out/folder/part.npy", "data/raw.csv"), (), "")


def job(rule, command, inputs=(), outputs=()):
    return sharing.Job(rule=rule, command=command, inputs=tuple(inputs), outputs=tuple(outputs))


def ids(jobs):
    sharing.job_ids(jobs)
    return [j.id for j in jobs]


def test_a_job_is_its_rule_its_command_and_the_jobs_of_its_inputs():
    chain = [job("train", "--lr 1", outputs=["m.pt"]), job("infer", "--scale 1", ["m.pt"], ["maps"]),
             job("score", "--k 2", ["maps/x.npy", "raw.csv"], ["s.json"])]
    first = ids(chain)
    assert len(set(first)) == 3
    assert ids(copy.deepcopy(chain)) == first  # the same jobs, the same identities
    upstream = copy.deepcopy(chain)
    upstream[0].command = "--lr 2"  # only the first command differs: every job below it is another job
    assert [a != b for a, b in zip(ids(upstream), first)] == [True, True, True]
    downstream = copy.deepcopy(chain)
    downstream[2].command = "--k 3"
    assert [a != b for a, b in zip(ids(downstream), first)] == [False, False, True]
    renamed = copy.deepcopy(chain)
    renamed[2].inputs = ("maps/x.npy", "other.csv")  # an input no job writes counts by its path
    assert ids(renamed)[2] != first[2]


@pytest.fixture(scope="module")
def plans():
    """The pseudo-mask jobs of the default config and of three one-key changes (dry runs)."""
    configs = {"base": base_config(), "floor": with_key("refine.robust.region_floor", 0.5),
               "classifier": with_key("classifier.train.lr", 0.01), "cue": with_key("c2am.cues.threshold", "otsu")}
    return {name: sharing.plan_run(config, PSEUDO, 2) for name, config in configs.items()}


def rerun(plans, name) -> set[str]:
    """The rules with a job that ``name``'s change makes another job than the default config's."""
    base = {j.id for j in plans["base"]}
    return {j.rule for j in plans[name] if j.id not in base}


def test_a_key_reaches_the_jobs_that_read_it_and_the_jobs_below_them(plans):
    assert rerun(plans, "floor") == {"robust_labels", "eval_pseudo"}
    assert rerun(plans, "classifier") == {"train_classifier", "infer_cam", "refine_cams", "crf_labels",
                                          "robust_labels", "train_affinity", "random_walk", "eval_pseudo"}
    assert rerun(plans, "cue") == {"cue_threshold", "extract_cues", "train_saliency", "infer_saliency",
                                   "refine_cams", "crf_labels", "robust_labels", "train_affinity", "random_walk",
                                   "eval_pseudo"}
    again = sharing.plan_run(base_config(), PSEUDO, 2)  # the same jobs (Snakemake may list them in another order)
    assert sorted(j.id for j in plans["base"]) == sorted(j.id for j in again)


def test_a_downstream_sweep_trains_each_upstream_network_once_per_seed(tmp_path, capsys):
    """The 4 x 3 sweep of the robust rule's floor, dry run: 12 runs, each upstream job 3 times (once per seed)."""
    sw.main([str(REPO / "config" / "sweeps" / "robust_floor.yaml"), "--root", str(tmp_path), "--dry-run"])
    table = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().err.splitlines()[2:]}
    for rule in UPSTREAM:
        assert table[rule] == ["12", "3"], (rule, table)
    assert table["robust_labels"] == ["36", "36"] and table["eval_pseudo"] == ["12", "12"]
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def fake_outputs(folder: Path, jobs) -> None:
    """Each job's outputs as Snakemake would leave them, in the dry run's order (upstream first), each newer than
    the last; a folder output (no suffix) holds a file and Snakemake's timestamp."""
    stamp = time.time() - 10_000
    for j in jobs:
        stamp += 10
        for out in j.outputs:
            path = folder / out
            made = [path] if Path(out).suffix else [path / "part.npy", path / ".snakemake_timestamp"]
            for f in made:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("x")
                os.utime(f, (stamp, stamp))
            os.utime(path, (stamp, stamp))
    root = folder / "artifacts" / "dataset" / "VOC2012" / "JPEGImages"
    root.mkdir(parents=True)
    (root / "0.jpg").write_text("image")


def dry_run(folder: Path, config: dict) -> str:
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    command = sharing.snakemake_command(folder, configfile, 2, ["-n", "--nocolor"], PSEUDO)
    result = subprocess.run(command, env=sharing.snakemake_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_shared_jobs_are_hard_links_that_snakemake_takes_as_done(tmp_path, plans):
    owner, other = tmp_path / "p0", tmp_path / "p1"
    fake_outputs(owner, plans["base"])
    run = sw.Run(point=1, seed=0, folder=other, config=with_key("refine.robust.region_floor", 0.5))
    shared = sw.owners([plans["base"], plans["floor"]])[1]
    assert {j.rule for _, j in shared} == {j.rule for j in plans["floor"]} - {"robust_labels", "eval_pseudo"}
    for _, j in shared:
        sharing.share_job(owner, other, j, run.products(j))
    maps = "artifacts/c2am/maps/part.npy"
    assert os.path.samefile(owner / maps, other / maps)  # a link, not a copy
    assert os.path.samefile(owner / "artifacts/dataset/VOC2012/JPEGImages/0.jpg",
                            other / "artifacts/dataset/VOC2012/JPEGImages/0.jpg")  # the generated dataset too
    assert os.stat(other / "artifacts/c2am/maps").st_mtime == os.stat(owner / "artifacts/c2am/maps").st_mtime
    stats = dry_run(other, run.config).split("Job stats:")[1].split("total")[0]
    assert {line.split()[0] for line in stats.splitlines()[3:] if line.strip()} == {"robust_labels", "eval_pseudo"}
    sharing.share_job(owner, other, shared[0][1], run.products(shared[0][1]))  # again, as a resumed sweep does
    assert os.path.samefile(owner / "artifacts/dataset/manifest.json", other / "artifacts/dataset/manifest.json")
    assert "Nothing to be done" in dry_run(owner, base_config())


def test_a_run_starts_once_the_runs_it_shares_jobs_with_are_done(tmp_path, monkeypatch):
    """Two seeds x two points, two runs at a time: each seed's second point waits for its first; seeds do not."""
    runs = [sw.Run(point=p, seed=s, folder=tmp_path / f"p{p}s{s}", config=base_config()) for p in (0, 1) for s in (0, 1)]
    plans = [[job("train", f"--seed {r.seed}", outputs=["m.pt"]), job("score", f"--p {r.point}", ["m.pt"], ["s"])]
             for r in runs]
    for jobs in plans:
        sharing.job_ids(jobs)
    shared = sw.owners(plans)
    assert [[(o, j.rule) for o, j in pairs] for pairs in shared] == [[], [], [(0, "train")], [(1, "train")]]
    events, lock = [], threading.Lock()

    def fake_run_point(run, targets, cores, extra, log):
        with lock:
            events.append(("start", run.label()))
        time.sleep(0.2)
        with lock:
            events.append(("end", run.label()))

    monkeypatch.setattr(sw, "run_point", fake_run_point)
    monkeypatch.setattr(sw.sharing, "share_job", lambda owner, folder, j, products: None)
    sw.execute(runs, shared, PSEUDO, 1, [], parallel=2)
    assert set(events[:2]) == {("start", "p0/seed0"), ("start", "p0/seed1")}  # the seeds side by side
    for point, owner in (("p1/seed0", "p0/seed0"), ("p1/seed1", "p0/seed1")):
        assert events.index(("end", owner)) < events.index(("start", point))
