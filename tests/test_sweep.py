"""Sweeps (c2am.sweep): the sweep file's checks, the grid of points, and the table built from the points' results."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from c2am import sweep as sw
from c2am.io import InputError

REPO = Path(__file__).resolve().parents[1]


def write_sweep(tmp_path, **fields):
    body = {"name": "tiny", "seeds": [0, 1], "vary": {"refine.robust.region_floor": [0.5, 0.7]},
            "scores": ["pseudo_masks:variants.cam_sal_crf.miou", "weak_full"], **fields}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def write_results(folder, cam_sal_crf, val, full):
    results = folder / "results"
    results.mkdir(parents=True)
    (results / "pseudo_masks.json").write_text(json.dumps({"variants": {"cam_sal_crf": {"miou": cam_sal_crf}}}))
    (results / "voc_miou.json").write_text(json.dumps({"miou": val}))
    (results / "fully_supervised_miou.json").write_text(json.dumps({"miou": full}))


def test_points_are_the_grid_of_vary_in_file_order(tmp_path):
    path = write_sweep(tmp_path, vary={"refine.robust.region_floor": [0.5, 0.7], "c2am.train.alpha": [0.1, 0.2, 0.3]})
    points = sw.load_sweep(path).points()
    assert len(points) == 6
    assert points[0] == {"refine.robust.region_floor": 0.5, "c2am.train.alpha": 0.1}
    assert points[1] == {"refine.robust.region_floor": 0.5, "c2am.train.alpha": 0.2}
    assert points[5] == {"refine.robust.region_floor": 0.7, "c2am.train.alpha": 0.3}


def test_a_point_config_is_the_base_with_its_values_and_seed(tmp_path):
    sweep = sw.load_sweep(write_sweep(tmp_path))
    config = sw.point_config(sweep, {"refine.robust.region_floor": 0.5}, seed=1)
    assert config["seed"] == 1 and config["refine"]["robust"]["region_floor"] == 0.5
    assert sweep.base["refine"]["robust"]["region_floor"] == 0.65  # the base is not changed
    assert sw.score_targets(sweep.scores) == ["results/pseudo_masks.json", "results/voc_miou.json",
                                              "results/fully_supervised_miou.json"]


def test_the_table_holds_the_points_scores_mean_and_std_over_seeds(tmp_path):
    sweep = sw.load_sweep(write_sweep(tmp_path))
    # point 0: cam_sal_crf 70 and 74 -> mean 72, sample std sqrt(8) = 2.828; weak/full 60/80 and 66/88 = 0.75 both
    write_results(sw.point_folder(tmp_path, sweep, 0, 0), 70.0, 60.0, 80.0)
    write_results(sw.point_folder(tmp_path, sweep, 0, 1), 74.0, 66.0, 88.0)
    # point 1: 71 and 71 -> 71 +- 0; weak/full 0.9 and 0.8 -> 0.85 +- 0.0707
    write_results(sw.point_folder(tmp_path, sweep, 1, 0), 71.0, 72.0, 80.0)
    write_results(sw.point_folder(tmp_path, sweep, 1, 1), 71.0, 64.0, 80.0)
    md, tsv, png = sw.write_tables(tmp_path, sweep)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md == tmp_path / "results" / "sweeps" / "tiny.md"
    text = md.read_text()
    assert "| p0 | 0.5 | 2 | **72.00 ± 2.83** | 0.750 ± 0.000 |" in text
    assert "| p1 | 0.7 | 2 | 71.00 ± 0.00 | **0.850 ± 0.071** |" in text
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert rows[0][:4] == ["point", "refine.robust.region_floor", "n_seeds", "pseudo_masks:variants.cam_sal_crf.miou_mean"]
    assert float(rows[1][3]) == 72.0 and math.isclose(float(rows[1][4]), math.sqrt(8)) and rows[1][5] == "1"
    assert math.isclose(float(rows[2][6]), 0.85) and math.isclose(float(rows[2][7]), math.sqrt(0.005))
    assert rows[2][8] == "1" and rows[1][8] == "0"


def test_one_seed_has_no_std(tmp_path):
    assert sw.summarize([3.0])[0] == 3.0 and math.isnan(sw.summarize([3.0])[1])
    assert sw.summarize([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)


def test_a_missing_score_names_the_file_and_key(tmp_path):
    write_results(tmp_path, 70.0, 60.0, 80.0)
    with pytest.raises(InputError, match=r"pseudo_masks.json: no key 'variants.cam_cues.miou'"):
        sw.read_score(tmp_path, "pseudo_masks:variants.cam_cues.miou")


@pytest.mark.parametrize("fields, named", [
    ({"grid": 1}, "grid: unknown key"),
    ({"vary": {"refine.robust.no_such_key": [1]}}, "vary.refine.robust.no_such_key: not a key"),
    ({"vary": {"refine.robust.region_floor": []}}, "vary.refine.robust.region_floor: expected a non-empty list"),
    ({"vary": {"refine.robust.region_floor": ["high"]}}, "vary.refine.robust.region_floor: value 'high'"),
    ({"vary": {"c2am.train.epochs": [2.5]}}, "vary.c2am.train.epochs: value 2.5"),
    ({"scores": ["nonsense:miou"]}, "scores: 'nonsense:miou': unknown results file"),
    ({"scores": ["voc_miou"]}, "scores: 'voc_miou': expected"),
    ({"seeds": []}, "seeds: "),
])
def test_a_bad_sweep_file_stops_before_any_run_naming_the_key(tmp_path, fields, named):
    path = write_sweep(tmp_path, **fields)
    result = subprocess.run([sys.executable, "-m", "c2am.sweep", str(path), "--root", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], result.stderr
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["seeds", "robust_floor"])
def test_the_shipped_sweeps_load(name):
    sweep = sw.load_sweep(REPO / "config" / "sweeps" / f"{name}.yaml")
    assert sweep.name == name and len(sweep.seeds) == 3


def test_each_point_runs_the_workflow_in_its_folder_with_its_config(tmp_path, monkeypatch):
    """main() on a 2 x 2 sweep, with Snakemake replaced by a fake that writes the results a run would."""
    calls = []

    def fake_run(command, env):
        folder = Path(command[command.index("-d") + 1])
        config = yaml.safe_load((folder / "config.yaml").read_text())
        calls.append((command, config))
        floor, seed = config["refine"]["robust"]["region_floor"], config["seed"]
        write_results(folder, 10.0 * floor + seed, 60.0, 80.0)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(sw.subprocess, "run", fake_run)
    monkeypatch.setattr(sw, "plan_runs", lambda runs, *args: [[] for _ in runs])  # no job shared (test_sharing.py)
    sw.main([str(write_sweep(tmp_path)), "--root", str(tmp_path), "--cores", "4", "--", "--profile", "p"])
    assert [(c["refine"]["robust"]["region_floor"], c["seed"]) for _, c in calls] == [
        (0.5, 0), (0.5, 1), (0.7, 0), (0.7, 1)]
    command = calls[0][0]
    assert command[command.index("--cores") + 1] == "4" and command[command.index("--profile") + 1] == "p"
    assert command[command.index("--") + 1:] == ["results/pseudo_masks.json", "results/voc_miou.json",
                                                 "results/fully_supervised_miou.json"]
    text = (tmp_path / "results" / "sweeps" / "tiny.md").read_text()
    assert "| p0 | 0.5 | 2 | 5.500 ± 0.707 | **0.750 ± 0.000** |" in text  # 5 and 6; a tie marks the first
    assert "| p1 | 0.7 | 2 | **7.500 ± 0.707** | 0.750 ± 0.000 |" in text  # 7 and 8


def test_a_failed_point_stops_the_sweep_naming_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sw.subprocess, "run", lambda command, env: subprocess.CompletedProcess(command, 1))
    monkeypatch.setattr(sw, "plan_runs", lambda runs, *args: [[] for _ in runs])
    with pytest.raises(InputError, match=r"p0/seed0: the workflow failed"):
        sw.main([str(write_sweep(tmp_path)), "--root", str(tmp_path)])
    assert not (tmp_path / "results" / "sweeps").exists()


def snakemake(workdir, *args):
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--nocolor", *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)


def test_the_sweep_rule_runs_the_sweep_file_and_its_figure_is_a_report_entry(tmp_path):
    (tmp_path / "config" / "sweeps").mkdir(parents=True)
    write_sweep(tmp_path / "config" / "sweeps")
    plan = snakemake(tmp_path, "-n", "-p", "--cores", "2", "results/sweeps/tiny.md")
    assert plan.returncode == 0, plan.stderr
    assert "python -m c2am.sweep config/sweeps/tiny.yaml --cores 2 --root ." in plan.stdout + plan.stderr
    # the figure of a finished sweep (made here from hand-written point results) goes into the report
    sweep = sw.load_sweep(tmp_path / "config" / "sweeps" / "tiny.yaml")
    for point, seed in ((0, 0), (0, 1), (1, 0), (1, 1)):
        write_results(sw.point_folder(tmp_path, sweep, point, seed), 70.0 + point + seed, 60.0, 80.0)
    sw.write_tables(tmp_path, sweep)
    report = snakemake(tmp_path, "--report", "report.html", "results/sweeps/tiny.png")
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report.html").read_text()
    assert "8. Sweeps" in html and "config/sweeps/tiny.yaml" in html


def test_the_best_point_is_the_lowest_for_the_distractor_share():
    rows = [{"point": "p0", "scores": {"a.miou": (70.0, 1.0, 3), "a.distractors_labelled": (20.0, 1.0, 3)}},
            {"point": "p1", "scores": {"a.miou": (60.0, 1.0, 3), "a.distractors_labelled": (5.0, 1.0, 3)}}]
    assert sw.best_points(rows, ["a.miou", "a.distractors_labelled"]) == {"a.miou": "p0", "a.distractors_labelled": "p1"}
