"""Both shipped configs validate, and every config key is documented in config/README.md."""

import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaf_paths(value, prefix + (key,))
    else:
        yield prefix


@pytest.mark.parametrize("name", ["config.yaml", "voc2012.yaml"])
def test_shipped_configs_validate(name):
    validate(yaml.safe_load((ROOT / "config" / name).read_text()), SCHEMA)


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
