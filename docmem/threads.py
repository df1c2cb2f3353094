"""Threads that leave Ctrl+C and ``kill`` to the main thread.

A signal sent to a process goes to whichever of its threads the kernel picks, and Python only
interrupts the main thread's blocking call (a read from the model's socket) if the main thread
is the one that took it. A thread that blocks and restores its signal mask at that moment (as
glibc's thread creation does, and libuv's loop set-up) can take it instead: its handler sets
Python's flag, and the main thread stays in its read until the read times out. A Ctrl+C during
a model call then did nothing for minutes (CI, once; a thread doing that in a loop took 2 of 30
SIGINTs from a main thread in ``recv``, and none once its own mask blocked SIGINT).

So the threads docmem starts, and the native pools it makes (Qdrant Edge's search threads,
onnxruntime's), are born with these signals blocked, and the threads and processes they start
inherit the mask: the kernel has only the main thread to give them to. A worker process that
must answer signals (an ingest's extraction workers) unblocks them itself (``unblock``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["signals_to_main", "start_thread", "unblock"]

_SIGNALS = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)}
_MASKS = hasattr(signal, "pthread_sigmask")  # not on Windows, where signals reach the main thread


@contextmanager
def signals_to_main() -> Iterator[None]:
    """Threads started inside (by Python or native code) block SIGINT, SIGTERM and SIGHUP. The
    calling thread blocks them too meanwhile: one that arrives is delivered on leaving."""
    if not _MASKS:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_thread(target: Callable[..., Any], *, name: str, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, daemon: bool = True) -> threading.Thread:
    """A started thread that cannot take the process's SIGINT, SIGTERM or SIGHUP."""
    thread = threading.Thread(target=target, name=name, args=args, kwargs=kwargs, daemon=daemon)
    with signals_to_main():
        thread.start()
    return thread


def unblock() -> None:
    """For a process started from such a thread: it inherited the mask."""
    if _MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
