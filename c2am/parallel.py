"""Run a per-item function over many items on several processes, in order, with a progress bar.

Used by the CPU-bound per-image stages (dense CRF, scoring). Workers are started with ``spawn`` so that no
OpenMP/torch thread pool of the parent is forked in a broken state; hence ``fn`` must be a top-level
(picklable) function and its arguments picklable. Each worker runs single-threaded (torch, OpenCV, OpenMP/BLAS)
so that N workers use N cores, not N x cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

# Read by OpenMP / BLAS runtimes when they load; set before a worker imports numpy, torch or cv2.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)


ITEMS_PER_WORKER = 400  # a worker process costs about 3 s to start (torch import), some 400 maps' work


def pool_size(items: int, threads: int) -> int:
    """Worker processes for ``items`` cheap per-map jobs: at most ``threads``, one per ITEMS_PER_WORKER items."""
    return max(1, min(int(threads or 1), items // ITEMS_PER_WORKER))


def map_items(
    fn: Callable[[T], R],
    items: Iterable[T],
    threads: int = 1,
    desc: str | None = None,
    chunksize: int | None = None,
    start_method: str = "spawn",
) -> list[R]:
    """``[fn(x) for x in items]``, on a pool of ``threads`` processes when ``threads > 1``.

    Results keep the order of ``items``. An exception raised by ``fn`` (e.g. an InputError naming a file)
    propagates to the caller with its message; the pool is then shut down.
    """
    items = list(items)
    workers = min(int(threads or 1), len(items))
    bar = tqdm(total=len(items), desc=desc, unit="item", file=sys.stderr)
    try:
        if workers <= 1:
            return [_advance(bar, fn(x)) for x in items]
        if chunksize is None:
            # Several chunks per worker balance uneven items; chunks keep IPC overhead low for many small ones.
            chunksize = max(1, min(16, len(items) // (workers * 4)))
        ctx = multiprocessing.get_context(start_method)
        with single_threaded_env(), ctx.Pool(workers, initializer=limit_worker_threads) as pool:
            calls = ((fn, x) for x in items)
            return [_advance(bar, r) for r in pool.imap(call_single_threaded, calls, chunksize=chunksize)]
    finally:
        bar.close()


def _advance(bar: tqdm, result: R) -> R:
    bar.update(1)
    return result


@contextlib.contextmanager
def single_threaded_env() -> Iterator[None]:
    """Set the thread-count variables to 1 while workers start (they inherit the environment), then restore."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    os.environ.update({k: "1" for k in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def call_single_threaded(fn_and_item: tuple[Callable[[T], R], T]) -> R:
    """Worker side: re-limit threads (``fn`` may have imported torch or cv2 since the last item), then call."""
    fn, item = fn_and_item
    limit_worker_threads()
    return fn(item)


def limit_worker_threads() -> None:
    """Pool initializer: one thread per worker for the libraries already imported, and the env for later ones."""
    os.environ.update({k: "1" for k in THREAD_ENV_VARS})
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
