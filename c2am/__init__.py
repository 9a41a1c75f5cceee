"""c2am-wsss: weakly supervised semantic segmentation with contrastive class-agnostic activation maps."""

import os

# Idle OpenMP threads sleep instead of spinning. Set before torch loads its OpenMP runtime: when jobs share
# cores (parallel rules, a busy node) spinning threads made two concurrent 2-thread trainings on 2 cores
# 5.3x slower (bench/bench_parallel_branches.py: 83.7 s vs 15.8 s serial; 14.7 s with this setting).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
