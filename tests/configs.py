"""The shipped configs as Snakemake sees them: config/config.yaml with a config file merged over it, key by key."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from snakemake.utils import update_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"
SHIPPED = ("voc2012.yaml", "coco2014.yaml", "cub.yaml", "ilsvrc.yaml", "folder.yaml", "wsol.yaml")


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` over ``base`` as Snakemake merges config files (its own update_config), on a copy."""
    out = copy.deepcopy(base)
    update_config(out, copy.deepcopy(override))
    return out


def load(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / name).read_text()) or {}


def merged(name: str) -> dict:
    """config/config.yaml with config/<name> merged over it."""
    return deep_merge(load("config.yaml"), load(name))
