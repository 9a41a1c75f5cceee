"""Hooks the Snakefile calls: the run lock (a killed run's lock is cleared, a live run's never) and the end of
each failed job's log on the terminal.

Run lock. A run killed with ``kill -9`` (or by a reboot) leaves Snakemake's lock in ``.snakemake/locks/``, and
every later run stops with "Directory cannot be locked" until someone runs ``snakemake --unlock``. Unlocking is
safe exactly when no live run uses the folder, and an OS lock tells that for sure: the Snakefile calls
:func:`claim` while it is parsed in the main Snakemake process, before Snakemake checks its own lock. ``claim``
takes an ``flock`` on ``.snakemake/c2am_run.lock`` and keeps it until the process exits (the kernel drops it
however the process dies). A run that gets it knows that no other run of this workflow is live in the folder,
so a Snakemake lock found there is stale and is removed. A run that does not get it leaves the lock alone, so
Snakemake refuses a second concurrent run as before. The lock file records the host and pid of its holder; a
stale lock left by a run on another host is not removed, because some shared filesystems keep flocks local to
each host, so that run might still be alive.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

LOCK_NAME = "c2am_run.lock"
_held = None  # this process's open lock file: the flock lasts as long as it stays open


def _snakemake_locks(state: Path) -> list[Path]:
    return sorted((state / "locks").glob("*.lock"))


def claim(state_dir: str | os.PathLike = ".snakemake") -> str:
    """Hold the run lock of ``state_dir`` (Snakemake's folder in the working directory) for this process.

    Returns what was done, one of "held", "removed stale lock", "live run", "other host", "unsupported";
    the last three print one line on stderr when a Snakemake lock is present (Snakemake will refuse the run).
    """
    global _held
    if _held is not None:
        return "held"
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    f = open(state / LOCK_NAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        if _snakemake_locks(state):
            if isinstance(e, BlockingIOError):
                print(f"c2am: another Snakemake run is live in this folder ({holder}); its lock stays",
                      file=sys.stderr)
                return "live run"
            print(f"c2am: cannot take {state / LOCK_NAME} ({e}); if no other run is live, "
                  "`snakemake --unlock` removes the stale lock", file=sys.stderr)
        return "live run" if isinstance(e, BlockingIOError) else "unsupported"
    f.seek(0)
    previous = f.read().split()
    host = socket.gethostname()
    f.seek(0)
    f.truncate()
    f.write(f"host {host} pid {os.getpid()}\n")
    f.flush()
    _held = f
    stale = _snakemake_locks(state)
    if not stale:
        return "held"
    # previous: ["host", name, "pid", n] from the run that left the lock
    if len(previous) != 4 or previous[1] != host:
        where = f"host {previous[1]}" if len(previous) == 4 else "an unknown run"
        print(f"c2am: Snakemake's lock in {state} was left by {where}; if no run is live there, "
              "`snakemake --unlock` removes it", file=sys.stderr)
        return "other host"
    for lock in stale:
        lock.unlink(missing_ok=True)
    print(f"c2am: removed the lock of a Snakemake run that was killed (pid {previous[3]} on this host)",
          file=sys.stderr)
    return "removed stale lock"


def log_tail(path: str | os.PathLike, lines: int = 5) -> list[str]:
    """The last ``lines`` non-empty lines of a log; progress-bar redraws (carriage returns) count as lines."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return [f"(cannot read: {e.strerror})"]
    kept = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return kept[-lines:] or ["(empty)"]


def print_failed_logs(jobs, file=sys.stderr) -> None:
    """For the onerror handler: each failed job's log tail, where a stage's one-line ``error: ...`` is.

    Snakemake only names the log of a failed job; a newcomer reads the terminal. ``jobs``: Snakemake's
    failed jobs (anything with ``name`` and ``log``); called at the very end of a failed run, any executor.
    """
    for job in jobs:
        for path in getattr(job, "log", ()):
            print(f"Last lines of {path} (rule {job.name}):", file=file)
            for line in log_tail(path):
                print(f"    {line}", file=file)
