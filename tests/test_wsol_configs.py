"""The shipped WSOL configs: they validate (merged over the default, as Snakemake merges them), carry the
paper's settings, list the whole WSOL DAG on a fixture of their layout, and prepare_wsol reads that fixture."""

import json

import pytest
import yaml
from snakemake.utils import validate

from tests import configs
from tests.conftest import ROOT, job_counts, snakemake
from tests.test_wsol_reader import make_cub_fixture, make_metadata_fixture

SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
WSOL_RULES = {"prepare_wsol", "wsol_train_c2am", "wsol_infer_c2am", "box_threshold", "pseudo_boxes", "test_boxes",
              "train_localizer", "infer_localizer", "wsol_train_classifier", "infer_classes", "eval_wsol",
              "wsol_figures", "wsol"}


def merged(*files) -> dict:
    """config/config.yaml with each file (a name under config/, or a path) merged over it in turn, as Snakemake
    merges --configfile files: deeply (tests/configs.py, Snakemake's own ``update_config``)."""
    config = configs.load("config.yaml")
    for file in files:
        config = configs.deep_merge(config, configs.load(file))
    return config


def key_paths(node, prefix=()) -> set[tuple]:
    if not isinstance(node, dict):
        return {prefix}
    return {path for key, value in node.items() for path in key_paths(value, prefix + (key,))}


@pytest.mark.parametrize("name", ["wsol.yaml", "cub.yaml", "ilsvrc.yaml"])
def test_wsol_configs_validate(name):
    validate(merged(name), SCHEMA)


def test_paper_settings():
    cub, ilsvrc = merged("cub.yaml"), merged("ilsvrc.yaml")
    for config in (cub, ilsvrc):
        assert config["c2am"]["backbone"] == config["classifier"]["backbone"] == "resnet50"
        assert config["wsol"]["localizer"]["backbone"] == "resnet50"
        assert config["c2am"]["train"]["lr"] == 0.0001
    assert "moco" in cub["c2am"]["weights"] and cub["c2am"]["train"]["alpha"] == 0.75  # 0.05 with supervised init
    assert cub["c2am"]["train"]["batch_size"] == 16 and cub["wsol"]["dataset"]["num_classes"] == 200
    assert ilsvrc["c2am"]["train"]["alpha"] == 0.05 and ilsvrc["wsol"]["dataset"]["num_classes"] == 1000


def fixture_config(work, name: str):
    """The shipped config plus what the fixture's size needs: 2 classes, and a val share that holds out one of the
    two training images per class (Snakemake merges the second file over the first)."""
    override = work / "override.yaml"
    override.write_text(yaml.safe_dump({"wsol": {"dataset": {"num_classes": 2, "val_fraction": 0.5}}}))
    return [str(ROOT / "config" / name), str(override)]


@pytest.mark.parametrize("name", ["wsol.yaml", "cub.yaml", "ilsvrc.yaml"])
def test_merging_keeps_what_an_override_leaves_out(tmp_path, name):
    """An override replaces the keys it names, at any depth, and nothing else: the fixture's two wsol.dataset keys
    leave the shipped config's other dataset keys (kind, root, ...) as they were, and a shipped config drops no key
    of the default."""
    shipped = merged(name)
    both = merged(*fixture_config(tmp_path, name))
    validate(both, SCHEMA)
    assert both["wsol"]["dataset"]["num_classes"] == 2 and both["wsol"]["dataset"]["val_fraction"] == 0.5
    rest = {k: v for k, v in shipped["wsol"]["dataset"].items() if k not in ("num_classes", "val_fraction")}
    assert rest and {k: both["wsol"]["dataset"][k] for k in rest} == rest
    assert {k: v for k, v in both.items() if k != "wsol"} == {k: v for k, v in shipped.items() if k != "wsol"}
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert key_paths(shipped) >= key_paths(default)


@pytest.mark.parametrize("name", ["cub.yaml", "ilsvrc.yaml"])
def test_real_data_configs_on_a_fixture_of_their_layout(tmp_path, name):
    if name == "cub.yaml":
        make_cub_fixture(tmp_path / "data" / "CUB_200_2011")
    else:
        make_metadata_fixture(tmp_path / "data" / "ILSVRC", tmp_path / "data" / "wsolevaluation" / "metadata" / "ILSVRC")
    configs = fixture_config(tmp_path, name)
    result = snakemake("-n", "-p", "--configfile", *configs, "--", "wsol", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(job_counts(result.stdout)) == WSOL_RULES
    assert "--backbone resnet50" in result.stdout and "--kind " + merged(name)["wsol"]["dataset"]["kind"] in result.stdout
    assert "--n-train" not in result.stdout  # the embedded data's keys do not leak into a real-data run
    # the dataset stage for real: the config's paths and keys read the fixture
    result = snakemake("--cores", "1", "--configfile", *configs, "--", "artifacts/wsol/dataset/manifest.json",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "artifacts/wsol/dataset/manifest.json").read_text())
    assert {k: len(v) for k, v in manifest["splits"].items()}["test"] == 2
    gt = json.loads((tmp_path / "artifacts/wsol/dataset/gt.json").read_text())
    assert all(manifest["splits"]["test"][k] in gt["boxes"] for k in range(2))


def test_bad_wsol_data_stops_with_the_file_and_line(tmp_path):
    root = make_cub_fixture(tmp_path / "data" / "CUB_200_2011")
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[1] = "2 3.0 4.0 30.0 5.0"  # runs over the 24-pixel-wide image
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    configs = fixture_config(tmp_path, "cub.yaml")
    result = snakemake("--cores", "1", "--configfile", *configs, "--", "artifacts/wsol/dataset/manifest.json",
                       cwd=tmp_path)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "prepare_wsol.log").read_text().strip().splitlines()
    assert log[-1].startswith("error: ") and "bounding_boxes.txt:2: box [3, 4, 33, 9] lies outside" in log[-1]
    assert not (tmp_path / "artifacts/wsol/dataset/manifest.json").exists()
