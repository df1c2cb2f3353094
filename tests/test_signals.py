"""Ctrl+C and ``kill`` reach the main thread: the threads docmem starts (and the native pools
it makes) block SIGINT, SIGTERM and SIGHUP, so the kernel cannot hand them one of those while
the main thread waits in a read (see docmem/threads.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from docmem.threads import signals_to_main, start_thread
from tests.conftest import write_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/task")

_MAIN_ONLY = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _mask(status: str, field: str) -> set[int]:
    line = next(line for line in status.splitlines() if line.startswith(field + ":"))
    bits = int(line.split()[1], 16)
    return {n for n in range(1, 65) if bits >> (n - 1) & 1}


def _threads() -> dict[str, list[set[int]]]:
    """Every thread of this process: name (Python's, else the kernel's) -> the signals each
    thread of that name blocks."""
    python = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, list[set[int]]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = python.get(int(tid)) or Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            status = Path(f"/proc/self/task/{tid}/status").read_text()
        except OSError:  # it ended meanwhile
            continue
        out.setdefault(name, []).append(_mask(status, "SigBlk"))
    return out


def test_a_started_thread_blocks_them_and_the_caller_gets_its_mask_back():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    seen: list[set[int]] = []
    start_thread(lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, set())), name="t").join()
    assert _MAIN_ONLY <= seen[0]
    with signals_to_main():
        assert _MAIN_ONLY <= signal.pthread_sigmask(signal.SIG_BLOCK, set())
        inner = threading.Thread(target=lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, set())))
        inner.start()  # a library's own thread, started inside: it inherits the mask
        inner.join()
    assert _MAIN_ONLY <= seen[1]
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before


def test_an_owner_serving_its_corpus_leaves_them_to_the_main_thread(tmp_path, settings):
    from docmem.api import connect
    from docmem.schema import IngestOptions

    root = write_tree(tmp_path / "docs", {"a.txt": "The lighthouse keeper lit the lamp every evening."})
    main = _mask(Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text(), "SigBlk")
    assert not _MAIN_ONLY & main, "this test needs a main thread that takes the signals"
    with connect(settings) as service:
        service.ingest([root], options=IngestOptions(embedder="none", workers=1)).wait()
        assert service.search("lighthouse keeper").hits
        service.wait_serving()
        threads = _threads()
    ours = {name: masks for name, masks in threads.items()
            if name.startswith(("edge-search", "docmem-serve", "ingest-"))}
    assert any(name.startswith("edge-search") for name in ours) and "docmem-serve-unix" in ours, threads
    assert all(_MAIN_ONLY <= mask for masks in ours.values() for mask in masks), ours


def _worker_masks(queue) -> None:  # type: ignore[no-untyped-def]
    from ingest.workers import init_worker

    init_worker(os.getppid(), 4096)
    status = Path("/proc/self/status").read_text()
    queue.put((_mask(status, "SigBlk"), _mask(status, "SigIgn"), _mask(status, "SigCgt")))


def test_an_extraction_worker_started_from_such_a_thread_answers_sigterm():
    """The pool stops a worker that is over its time with SIGTERM; a worker spawned from a
    thread that blocks it would inherit the mask, and one with a Python handler for it waits
    for the parser's C call: either way pebble's SIGKILL came three seconds later."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()

    def spawn() -> None:
        proc = context.Process(target=_worker_masks, args=(queue,))
        proc.start()
        proc.join(60)

    start_thread(spawn, name="spawner").join()
    blocked, ignored, caught = queue.get(timeout=5)
    assert not {signal.SIGTERM, signal.SIGHUP} & blocked and signal.SIGINT in ignored
    assert signal.SIGTERM not in caught | ignored  # its default action: the process ends at once
