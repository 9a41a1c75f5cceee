"""The Snakemake DAG: config validation before any job, lint, and the full DAG on both configs (dry runs)."""

import pytest
import yaml

from tests.conftest import ROOT, job_counts, snakemake, write_config  # noqa: F401  (re-exported to other modules)
from tests.test_voc_reader import make_sbd_fixture

# The rules of the DAG of results/voc_miou.txt (`all` adds eval_c2am, c2am_boxes, eval_pseudo and visualize).
STAGE_RULES = {
    "prepare_dataset", "train_c2am", "infer_c2am", "cue_threshold", "extract_cues", "train_classifier", "infer_cam",
    "train_saliency", "infer_saliency", "refine_cams", "crf_labels", "robust_labels", "train_deeplab",
    "infer_deeplab", "evaluate",
}
# The default DeepLab learns from cam_sal_crf_robust; the real-data configs keep cam_cues_crf.
CUE_RULES = STAGE_RULES - {"train_saliency", "infer_saliency", "robust_labels"}


def test_lint_is_clean():
    result = snakemake("--lint", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_dry_run_lists_the_whole_dag(tmp_path):
    result = snakemake("-n", "results/voc_miou.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(job_counts(result.stdout)) == STAGE_RULES
    assert not (tmp_path / "artifacts").exists()


def test_voc2012_config_on_a_voc_fixture_lists_the_whole_dag(tmp_path):
    make_sbd_fixture(tmp_path / "data" / "VOCdevkit" / "VOC2012")
    result = snakemake("-n", "-p", "results/voc_miou.txt", "--configfile", str(ROOT / "config" / "voc2012.yaml"),
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(job_counts(result.stdout)) == CUE_RULES
    assert "--backbone resnet50" in result.stdout and "--backbone deeplabv3_resnet101" in result.stdout
    assert "--n-train" not in result.stdout  # the default config's synthetic keys do not leak into a VOC run


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["c2am"]["train"].update(alpah=0.25), "alpah"),
        (lambda c: c.update(sed=1), "sed"),
        (lambda c: c["deeplab"]["train"].update(epochs="six"), "six"),
        (lambda c: c["c2am"]["cues"].update(threshold="median"), "median"),
    ],
)
def test_bad_config_is_rejected_before_any_job(tmp_path, edit, key):
    config = write_config(tmp_path / "bad.yaml", edit)
    result = snakemake("--cores", "1", "results/voc_miou.txt", "--configfile", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "Error validating config file" in result.stderr and key in result.stderr
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "logs").exists()


def test_every_job_rule_has_threads_and_resources_in_the_profile():
    # A rule without its own entry would keep its default 8 threads on a cluster whose profile scales the others
    # down (tests/test_slurm.py: such a job waited forever for a node with 8 CPUs).
    import re

    defaults = yaml.safe_load((ROOT / "workflow/rule_resources.yaml").read_text())
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    # a rule of its own (`rule x:`) or a reused one (`use rule y as x with:`)
    pattern = r"^(?:rule (\w+):|use rule \w+ as (\w+))"
    found = {name for f in files for match in re.findall(pattern, f.read_text(), re.M) for name in match if name}
    rules = found - {"all", "wsol"}
    assert {"wsol_train_c2am", "test_boxes"} <= rules  # the reused rules are seen
    assert rules - set(defaults["set-threads"]) == set()
    assert rules - set(defaults["set-resources"]) == set()
