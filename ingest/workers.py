"""Worker processes for extraction, each file under a time and memory budget.

A hostile file (a 77 KB DOCX of 5 million empty paragraphs, a zip bomb) must cost one failed
file, not the run. pebble's process pool gives every task its own timeout: past it the worker
is killed and replaced, and the file fails with "took longer than N s". Memory is watched from
inside each worker by a thread reading its resident size; past the budget the worker exits
with ``MEMORY_EXIT`` and the file fails with "too large when unpacked".

Workers must never outlive the ingest (a killed parent once left two spawn workers and the
resource tracker running, holding its stdout): on Linux each worker asks the kernel for
SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and the same watch thread exits
the worker if its parent changes, where prctl does not exist. Workers ignore SIGINT: a Ctrl+C
in the terminal reaches the whole process group, and the parent is the one that stops them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, TimeoutError as FutureTimeout, wait
from dataclasses import dataclass
from typing import TypeVar

from docmem.threads import signals_to_main, start_thread, unblock

MEMORY_EXIT = 86  # a worker's exit status when it went over its memory budget
_PR_SET_PDEATHSIG = 1
_WATCH_SECONDS = 0.1

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class FileBudget:
    """What one file may cost its worker: ``seconds`` plus ``seconds_per_mb`` of its size, and
    ``memory_mb`` of resident memory for the whole worker process."""

    seconds: float = 120.0
    memory_mb: int = 4096
    seconds_per_mb: float = 1.0

    def timeout(self, size: int) -> float:
        return self.seconds + self.seconds_per_mb * size / 1e6

    def too_long(self, size: int) -> str:
        return f"took longer than {self.timeout(size):.0f} s (file_timeout; --file-timeout to raise it)"

    def too_large(self) -> str:
        return f"too large when unpacked (over {self.memory_mb} MB of memory; --file-memory to raise it)"


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # not Linux: the peak is the best there is

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _watch(parent: int, memory_bytes: int) -> None:
    while True:
        if os.getppid() != parent:  # orphaned: the ingest is gone
            os._exit(1)
        if _resident_bytes() > memory_bytes:
            os._exit(MEMORY_EXIT)
        threading.Event().wait(_WATCH_SECONDS)


def init_worker(parent: int, memory_mb: int) -> None:
    """Runs first in every worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The pool stops a worker over its time with SIGTERM, and pebble's handler for it is Python
    # code, which waits for the parser's C call to return: the kill came 3 s later (pebble's
    # SIGKILL). The default action ends it at once (tests' hostile DOCX at 4 s: 10.0 s -> 6.8 s).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    unblock()  # spawned from a docmem thread, whose signal mask it inherited
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    start_thread(_watch, args=(parent, memory_mb * 1024 * 1024), name="docmem-worker-watch")


def run_pool(jobs: list[J], workers: int, budget: FileBudget, work: Callable[[J], R],
             size: Callable[[J], int], failed: Callable[[J, str], R], heartbeat: float = 1.0) -> Iterator[R | None]:
    """``work(job)`` for every job in ``workers`` processes, results as they complete; a job
    over its budget, or whose worker died, gives ``failed(job, reason)`` instead. ``None`` every
    ``heartbeat`` seconds without a result: the caller's chance to stop (its progress callback
    may raise), rather than waiting minutes for a slow file to end."""
    from pebble import ProcessExpired, ProcessPool

    # spawn, not fork: the parent holds Qdrant and onnxruntime thread pools.
    pool = ProcessPool(max_workers=workers, initializer=init_worker, initargs=(os.getpid(), budget.memory_mb),
                       context=multiprocessing.get_context("spawn"))
    try:
        pending: dict[Future[R], J] = {}
        queue = iter(jobs)

        def submit() -> None:
            for job in queue:
                pending[pool.schedule(work, (job,), timeout=budget.timeout(size(job)))] = job
                return

        with signals_to_main():  # pebble starts its threads and first workers with the first jobs
            for _ in range(workers * 2):  # a bounded number in flight: results hold whole documents
                submit()
        while pending:
            done, _ = wait(pending, timeout=heartbeat, return_when=FIRST_COMPLETED)
            if not done:
                yield None
            for future in done:
                job = pending.pop(future)
                try:
                    yield future.result()
                except FutureTimeout:
                    yield failed(job, budget.too_long(size(job)))
                except ProcessExpired as exc:
                    yield failed(job, budget.too_large() if exc.exitcode == MEMORY_EXIT
                                 else f"worker crashed (exit status {exc.exitcode})")
                except Exception as exc:  # noqa: BLE001 -- the work itself failed to pickle or run
                    yield failed(job, f"worker failed: {type(exc).__name__}: {exc}")
                submit()
    finally:
        pool.stop()  # kills busy workers at once: an interrupted ingest does not wait for them
        pool.join(timeout=10)
