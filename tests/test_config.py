"""Each shipped config, merged over the default as Snakemake merges it, validates, holds only overrides and gives
the values it documents; every config key is documented in config/README.md."""

import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from tests import configs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaf_paths(value, prefix + (key,))
    else:
        yield prefix


def test_the_default_config_validates():
    validate(configs.load("config.yaml"), SCHEMA)


@pytest.mark.parametrize("name", configs.SHIPPED)
def test_each_shipped_config_merged_validates(name):
    validate(configs.merged(name), SCHEMA)


@pytest.mark.parametrize("name", configs.SHIPPED)
def test_each_shipped_config_holds_only_overrides(name):
    """A key repeated with the default's value is a copy that drifts when the default changes."""
    default = configs.load("config.yaml")
    copies = []
    for path in leaf_paths(configs.load(name)):
        node = default
        for key in path:
            node = node.get(key, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError and node == _get(configs.load(name), path):
            copies.append(".".join(path))
    assert not copies, f"config/{name} repeats the default's value of {copies}"


def _get(config: dict, path: tuple):
    for key in path:
        config = config[key]
    return config


# What each file's header comment says it is, read back from the merged config.
DOCUMENTED = {
    "voc2012.yaml": {"dataset.kind": "voc", "c2am.backbone": "resnet50", "deeplab.backbone": "deeplabv3_resnet101",
                     "deeplab.labels": "cam_cues_crf", "deeplab.infer.scale_reference": "native",
                     "deeplab.train.warmup_iters": 0, "c2am.cues.crf.gt_prob": 0.7},
    "coco2014.yaml": {"dataset.kind": "coco", "c2am.backbone": "resnet50", "deeplab.backbone": "deeplabv3_resnet101",
                      "deeplab.infer.scale_reference": "native"},
    "cub.yaml": {"wsol.dataset.kind": "cub", "c2am.backbone": "resnet50", "c2am.train.alpha": 0.75,
                 "c2am.train.batch_size": 16, "c2am.train.epochs": 20},
    "ilsvrc.yaml": {"wsol.dataset.kind": "wsolmeta", "c2am.backbone": "resnet50"},
    "folder.yaml": {"dataset.kind": "folder", "dataset.root": "data/embedded_folder",
                    "dataset.classes": configs.load("config.yaml")["dataset"]["classes"]},
    "wsol.yaml": {"wsol.dataset.kind": "synthetic", "c2am.backbone": "lite0"},
}


@pytest.mark.parametrize("name", configs.SHIPPED)
def test_each_shipped_config_gives_the_values_it_documents(name):
    config = configs.merged(name)
    got = {key: _get(config, tuple(key.split("."))) for key in DOCUMENTED[name]}
    assert got == DOCUMENTED[name]


def test_every_key_is_documented():
    readme = (ROOT / "config" / "README.md").read_text()
    sections = dict(re.findall(r"^## `(\w+)`.*?\n(.*?)(?=^## |\Z)", readme, flags=re.S | re.M))
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    undocumented = []
    for path in leaf_paths(config):
        if path[0] == "seed":
            continue
        text = readme if any("crf" in part for part in path) else sections.get(path[0], "")
        if f"`{path[-1]}`" not in text and f"`{'.'.join(path)}`" not in text:
            undocumented.append(".".join(path))
    assert not undocumented, f"keys missing from config/README.md: {undocumented}"
    assert "`seed`" in readme
