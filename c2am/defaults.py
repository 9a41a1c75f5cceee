"""The stages' command-line defaults, read from the default config: one source of truth for every hyperparameter.

A stage called directly (``python -m c2am.stages.<stage>``) must compute what the DAG computes, so its flags
default to the values of ``config/config.yaml`` that the rule would pass. :func:`apply` sets them on a parser
from config sections; a section key without a matching flag is an error, so the two cannot drift apart
silently (tests/test_defaults.py compares every rule's command with the stage's defaults).
"""

from __future__ import annotations

import argparse
import copy
import functools
from pathlib import Path

import yaml

from c2am.io import InputError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


@functools.cache
def default_config() -> dict:
    if not DEFAULT_CONFIG.is_file():
        raise InputError(f"{DEFAULT_CONFIG}: default config not found (install the package from its repository "
                         "checkout, `pip install -e .`, or pass every flag)")
    with open(DEFAULT_CONFIG) as f:
        return yaml.safe_load(f)


def lookup(node: dict, key: str):
    """The entry of a nested mapping at a dotted key (``"c2am.train.lr"``); KeyError(key) when absent."""
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def value(key: str):
    """A config entry by dotted key, e.g. ``"c2am.train"`` or ``"seed"``."""
    try:
        return lookup(default_config(), key)
    except KeyError:
        raise KeyError(f"{DEFAULT_CONFIG}: no key {key!r}") from None


def flatten(section: dict, exclude=()) -> dict:
    """A config section as flag values; nested sections (e.g. ``crf``) contribute their own keys, as the rules'
    ``flags()`` (workflow/rules/common.smk) passes them."""
    out = {}
    for key, item in section.items():
        if key in exclude:
            continue
        out.update(flatten(item) if isinstance(item, dict) else {key: item})
    return out


def _typed(action: argparse.Action, item):
    """``item`` converted by the flag's type, as if it had been typed on the command line (10 -> 10.0)."""
    if action.type is None or item is None or isinstance(item, bool):
        return item
    if isinstance(item, list):
        return [action.type(v) for v in item]
    return action.type(item)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, i.e. the value the DAG passes (set by :func:`apply`), options
    without a help text included; required options and those without a default (None, or [] for a repeatable
    one) show none."""

    @staticmethod
    def _has_default(action: argparse.Action) -> bool:
        return not action.required and action.default not in (None, [], argparse.SUPPRESS)

    def _format_action(self, action):
        if action.help is None and action.option_strings and self._has_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action):
        if not self._has_default(action):
            return action.help
        return super()._get_help_string(action)


def stage_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The parser of stage ``module`` (``c2am.stages.<stage>``): its docstring's first paragraph as description,
    each option's default in ``--help``."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0],
                                   formatter_class=HelpFormatter)


def apply(parser: argparse.ArgumentParser, key: str, exclude=(), rename: dict | None = None) -> None:
    """Defaults of ``parser`` from config section ``key`` (or a scalar entry such as ``seed``).

    ``exclude``: keys of the section that are not this stage's; ``rename``: config key -> flag dest.
    """
    node = value(key)
    entries = flatten(node, exclude) if isinstance(node, dict) else {key.rsplit(".", 1)[-1]: node}
    actions = {a.dest: a for a in parser._actions}
    for name, item in entries.items():
        dest = (rename or {}).get(name, name)
        if dest not in actions:
            raise KeyError(f"{parser.prog}: config key {key}.{name} has no flag --{dest.replace('_', '-')}")
        actions[dest].default = _typed(actions[dest], item)
        actions[dest].config_key = f"{key}.{name}"  # the key this flag stands for (tests/test_defaults.py)
