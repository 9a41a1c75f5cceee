"""A run's setup, shared by every stage: seeding, the device choice (and AMP on it), threads, logging and the stage
entry point.

:func:`run_stage` turns an :class:`~c2am.io.InputError` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from typing import Callable

import numpy as np

from c2am.io import InputError

log = logging.getLogger("c2am")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(choice: str = "auto"):
    """The device of a stage's ``--device {auto,cpu,cuda}``: auto is cuda when available; logged.

    Asking for cuda where there is none is an InputError, not a silent fallback.
    """
    import torch

    if choice not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device: expected auto, cpu or cuda, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    dev = torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")
    log.info("device: %s", dev)
    return dev


def pin_memory(device) -> bool:
    """Whether DataLoaders feeding ``device`` pin host memory: only for CUDA, where it speeds up the copies."""
    import torch

    return torch.device(device).type == "cuda"


def use_amp(device, amp: bool) -> bool:
    """AMP (and channels_last) only on CUDA; on the CPU it would change results and rarely helps."""
    import torch

    return bool(amp) and torch.device(device).type == "cuda"


def autocast(device, amp: bool):
    """fp16 autocast on CUDA when ``amp``; a no-op context otherwise. For training and inference alike."""
    import torch

    if use_amp(device, amp):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a SLURM job's allocation, or the machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Use the threads Snakemake gave the rule, capped at the CPUs really available.

    Users type ``--cores 8`` on machines of any size; the cap keeps such a job from running 8 threads
    on 2 cores. Returns the thread count used.
    """
    import torch

    n = max(1, min(int(threads or 1), available_cpus()))
    torch.set_num_threads(n)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(n)
    return n


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )


def run_stage(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Entry point wrapper: logging set up; an InputError becomes one line on stderr and exit 2."""
    setup_logging()
    try:
        main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
