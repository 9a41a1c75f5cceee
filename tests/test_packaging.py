"""The conda environment of the rules names the same packages as pyproject.toml, and pins stay out of it."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def package_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {package_name(r) for r in project["dependencies"]}


def env_packages(path: Path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return {package_name(r) for r in pip if not r.startswith("-e")}


def test_rule_env_matches_pyproject():
    assert env_packages(ROOT / "envs" / "c2am.yaml") == pyproject_packages()


def test_torch_pins_live_in_constraints_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [r for r in project["dependencies"] if "==" in r], "hard pins belong in constraints.txt"
    pins = (ROOT / "constraints.txt").read_text()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins


def test_every_rule_uses_a_declared_env():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        assert text.count("\nrule ") == text.count("        ENV\n"), f"{smk.name}: a rule without conda: ENV"
