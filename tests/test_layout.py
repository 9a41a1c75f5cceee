"""The house rules that a reader relies on: stages import no stage (not even relatively), the networks
(c2am/models) import neither the data nor the training code, and the workflow is formatted as its ecosystem
expects (snakefmt; `snakemake --lint` is checked in tests/test_workflow.py)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def package_of(path: Path) -> str:
    """The dotted package a file of this repository belongs to (c2am/stages/x.py -> c2am.stages)."""
    try:
        return ".".join(path.resolve().relative_to(ROOT).parent.parts)
    except ValueError:  # a file outside the repository (the checks' own tests)
        return ""


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module (and ``module.name``) a file imports, at any depth; relative imports are resolved against
    ``package`` (default: the file's own package in this repository)."""
    package = package_of(path) if package is None else package
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                module = ".".join([*base, *([node.module] if node.module else [])])
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def relative_imports(path: Path) -> list[str]:
    """The relative imports of a file, as written (``from . import x`` -> ``. import x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]


UPWARD = ("c2am.data", "c2am.training")  # what the networks must not import


def upward_imports(path: Path) -> list[str]:
    return sorted(m for m in imported_modules(path) if any(m == u or m.startswith(f"{u}.") for u in UPWARD))


def test_no_library_module_stage_or_bench_script_imports_a_stage():
    offenders = []
    for path in sorted([*(ROOT / "c2am").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        bad = sorted(m for m in imported_modules(path) if m.startswith("c2am.stages."))
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {bad}")
    assert not offenders, offenders


def test_the_import_check_sees_an_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from c2am.stages.extract_cues import main\nimport c2am.stages.evaluate\n")
    assert {"c2am.stages.extract_cues", "c2am.stages.evaluate"} <= imported_modules(module)


def test_no_stage_imports_relatively():
    offenders = [f"{path.relative_to(ROOT)}: {bad}" for path in sorted((ROOT / "c2am" / "stages").glob("*.py"))
                 if (bad := relative_imports(path))]
    assert not offenders, offenders


def test_the_relative_import_check_sees_one(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from . import extract_cues\nfrom .evaluate import main\nimport c2am.io\n")
    assert relative_imports(module) == [". import extract_cues", ".evaluate import main"]
    # resolved, the stage-imports-a-stage check sees them too
    assert {"c2am.stages.extract_cues", "c2am.stages.evaluate.main"} <= imported_modules(module, "c2am.stages")


def test_models_import_neither_data_nor_training():
    offenders = [f"{path.relative_to(ROOT)}: {bad}" for path in sorted((ROOT / "c2am" / "models").rglob("*.py"))
                 if (bad := upward_imports(path))]
    assert not offenders, offenders


def test_the_upward_import_check_sees_one(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from c2am.data.voc import image_size\n    from c2am import training\n"
                      "from c2am.io import InputError\nimport c2am.datasets_like\n")
    assert upward_imports(module) == ["c2am.data.voc", "c2am.data.voc.image_size", "c2am.training"]
    relative = tmp_path / "r.py"
    relative.write_text("from ..data.datasets import ClassificationDataset\n")
    assert "c2am.data.datasets" in imported_modules(relative, "c2am.models")


def test_workflow_is_snakefmt_clean():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install -e '.[test]')")
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run([snakefmt, "--check", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
