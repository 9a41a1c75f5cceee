"""Sharded inference: shard arithmetic, the gather step, the sharded DAG, and 1 vs 3 shards giving the same bytes.

The integration test reuses the trained networks of one local tiny run (``local_tiny_run``, shared with
tests/test_slurm.py) and reruns only the per-image stages with ``shards: 3``: sharding touches nothing else.
"""

import argparse
import filecmp
import os
import shutil
from pathlib import Path

import pytest

from c2am.io import InputError
from c2am.shards import gather_dirs, parse_shard, select_shard, shard_bounds
from tests.conftest import tiny, tiny_dag_run
from tests.test_workflow import STAGE_RULES, job_counts, snakemake, write_config

SHARD_RULES = {"gather_shards"}
# Per-image outputs that must not depend on the shard count.
PER_IMAGE = [
    "artifacts/c2am/maps", "artifacts/c2am/cues", "artifacts/classifier/cams",
    "artifacts/pseudo/cam_cues", "artifacts/pseudo/cam_fixed_tau", "artifacts/pseudo/cam_cues_crf",
]
SALIENCY_PER_IMAGE = ["artifacts/saliency/maps", "artifacts/pseudo/cam_sal", "artifacts/pseudo/cam_sal_crf",
                      "artifacts/pseudo/cam_sal_crf_robust"]
PREDICTIONS = "artifacts/deeplab/cam_sal_crf_robust/pred_val"
TRAINED = ["artifacts/dataset", "artifacts/c2am/model.pt", "artifacts/c2am/train_log.csv",
           "artifacts/classifier/model.pt", "artifacts/classifier/train_log.csv",
           "artifacts/saliency/model.pt", "artifacts/saliency/train_log.csv",
           "artifacts/deeplab/cam_sal_crf_robust/model.pt", "artifacts/deeplab/cam_sal_crf_robust/train_log.csv"]

# The session's one tiny DAG run (tests/conftest.py), also read by tests/test_slurm.py; nothing writes into it.
local_tiny_run = tiny_dag_run


# ----------------------------------------------------------------------------- shard arithmetic


def test_shards_partition_the_list_in_order():
    # 10 items in 3 shards: sizes 4, 3, 3 (the first 10 % 3 = 1 shard gets one more)
    assert [shard_bounds(10, k, 3) for k in (1, 2, 3)] == [(0, 4), (4, 7), (7, 10)]
    ids = [f"im{i}" for i in range(10)]
    assert select_shard(ids, (2, 3)) == ["im4", "im5", "im6"]
    for n in (1, 2, 3, 7, 12):
        assert sum((select_shard(ids, (k, n)) for k in range(1, n + 1)), []) == ids
    assert select_shard(ids, (12, 12)) == []  # more shards than items: trailing shards are empty
    assert select_shard(ids, None) == ids


@pytest.mark.parametrize("text", ["0-of-3", "4-of-3", "2/3", "1-of-0", "x-of-2"])
def test_bad_shard_names_are_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="of"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("2-of-3") == (2, 3)


# ----------------------------------------------------------------------------- gather


def _shard_dirs(tmp_path, groups):
    dirs = []
    for k, names in enumerate(groups, 1):
        d = tmp_path / f"{k}-of-{len(groups)}"
        d.mkdir()
        for name in names:
            (d / name).write_text(name)
        dirs.append(d)
    return dirs


def test_gather_links_every_id_once(tmp_path):
    dirs = _shard_dirs(tmp_path, [["a.png", "b.png", ".snakemake_timestamp"], ["c.png", ".snakemake_timestamp"]])
    out = tmp_path / "out"
    assert gather_dirs(dirs, out, ["a", "b", "c"]) == 3
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert (out / "c.png").read_text() == "c.png"
    assert (out / "a.png").stat().st_ino == (dirs[0] / "a.png").stat().st_ino  # a link, not a copy
    assert not (tmp_path / "out.gather-tmp").exists()


@pytest.mark.parametrize(
    "groups, message",
    [
        ([["a.png"], ["c.png"]], "b: no output"),
        ([["a.png", "b.png"], ["b.png", "c.png"]], "also in"),
        ([["a.png", "b.png"], ["c.png", "z.png"]], "not an id of the split"),
    ],
)
def test_gather_refuses_incomplete_or_overlapping_shards(tmp_path, groups, message):
    dirs = _shard_dirs(tmp_path, groups)
    with pytest.raises(InputError, match=message):
        gather_dirs(dirs, tmp_path / "out", ["a", "b", "c"])
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the DAG


def test_sharded_dry_run_scatters_the_per_image_stages(tmp_path):
    config = write_config(tmp_path / "s3.yaml", lambda c: c.update(shards=3))
    result = snakemake("-n", "results/voc_miou.txt", "--configfile", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert set(counts) == STAGE_RULES | {"cue_threshold"} | SHARD_RULES
    for rule in ("infer_c2am", "extract_cues", "infer_saliency", "infer_cam", "refine_cams", "crf_labels",
                 "robust_labels", "infer_deeplab"):
        assert counts[rule] == 3, rule
    # one gather per sharded folder this target needs: maps, cues, saliency maps, CAMs, refined labels, their CRF,
    # the robust labels, DeepLab predictions; the cue threshold is computed once over the gathered maps
    assert counts["gather_shards"] == 8 and counts["cue_threshold"] == 1
    assert counts["train_c2am"] == 1 and counts["evaluate"] == 1


def _same_tree(a: Path, b: Path) -> list[str]:
    """Files that differ (or exist on one side only) between two folders."""
    cmp = filecmp.dircmp(a, b, ignore=[".snakemake_timestamp"])
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return sorted(cmp.left_only + cmp.right_only + mismatch + errors)


def test_three_shards_give_the_same_bytes_as_one(tmp_path_factory):
    work1, _, _ = local_tiny_run(tmp_path_factory)
    work3 = tmp_path_factory.mktemp("dag_shards3")
    for rel in TRAINED:  # the trained networks of the 1-shard run: sharding must change nothing downstream of them
        src, dst = work1 / rel, work3 / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)

    def edit(config):
        tiny(config)
        config["shards"] = 3

    config = write_config(work3 / "tiny3.yaml", edit)
    # Step 1: maps, cues, CAMs and the cue pseudo labels. Step 2: saliency maps and their pseudo labels with the
    # copied saliency network; step 3: predictions with the copied DeepLab. Each copied network is first made newer
    # than the regenerated files it learnt from (else Snakemake would retrain it).
    step1 = snakemake("--cores", "2", *PER_IMAGE, "artifacts/c2am/cue_threshold.json",
                      "--configfile", str(config), cwd=work3)
    assert step1.returncode == 0, step1.stderr[-4000:]
    ran = set(job_counts(step1.stdout + step1.stderr))  # a real run logs to stderr
    assert not ran & {"prepare_dataset", "train_c2am", "train_classifier"}, ran
    assert {"gather_shards", "cue_threshold"} <= ran
    for rel, targets, jobs in ((TRAINED[-4:-2], SALIENCY_PER_IMAGE, {"infer_saliency", "refine_cams", "crf_labels",
                                                                      "robust_labels", "gather_shards"}),
                               (TRAINED[-2:], [PREDICTIONS], {"infer_deeplab", "gather_shards"})):
        for path in rel:
            os.utime(work3 / path)
        step = snakemake("--cores", "2", *targets, "--configfile", str(config), cwd=work3)
        assert step.returncode == 0, step.stderr[-4000:]
        assert set(job_counts(step.stdout + step.stderr)) == jobs

    assert len(list((work3 / "artifacts/shards/c2am/maps").iterdir())) == 3
    for rel in PER_IMAGE + SALIENCY_PER_IMAGE + [PREDICTIONS]:
        assert len(list((work1 / rel).iterdir())) > 0, rel
        assert _same_tree(work1 / rel, work3 / rel) == [], rel
    assert filecmp.cmp(work1 / "artifacts/c2am/cue_threshold.json", work3 / "artifacts/c2am/cue_threshold.json",
                       shallow=False)
