"""The house rules that a reader relies on: stages import no stage, and the workflow is formatted as its
ecosystem expects (snakefmt; `snakemake --lint` is checked in tests/test_workflow.py)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


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


def test_workflow_is_snakefmt_clean():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install -e '.[test]')")
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run([snakefmt, "--check", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
