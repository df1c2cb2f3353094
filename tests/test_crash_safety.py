"""Kills at the worst moments, in real processes: a rewrite cut in half, a killed parent (issue 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from docmem.search import search
from docmem.store.corpus import open_corpus
from ingest.pipeline import FAULT_ENV, ingest
from tests.conftest import write_tree

OLD = "The old boiler manual says the kestrel valve opens clockwise."
NEW = "The new boiler manual says the heron valve opens anticlockwise, with two turns."


def _cli(root: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, FAULT_ENV: fault} if fault else os.environ.copy()
    return subprocess.run([sys.executable, "-m", "docmem.cli", "ingest", str(root), "--embedder", "none",
                           "--workers", "0", "--json"], capture_output=True, text=True, env=env, timeout=300)


def _texts(settings, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    with open_corpus(settings) as corpus:
        return [h.chunk.text for h in search(corpus, query).hits]


@pytest.mark.parametrize("point", ["rewrite-begun", "old-deleted", "new-written"])
def test_a_replace_killed_at_any_point_leaves_only_the_new_version(settings, tmp_path, point):
    root = write_tree(tmp_path / "docs", {"manual.txt": OLD, "other.txt": "An unrelated file."})
    assert _cli(root).returncode == 0
    (root / "manual.txt").write_text(NEW)
    killed = _cli(root, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    rerun = _cli(root)
    assert rerun.returncode == 0, rerun.stderr
    assert _texts(settings, "kestrel valve clockwise") == [NEW]  # never OLD beside it
    with open_corpus(settings) as corpus:
        record = corpus.manifest.get("manual.txt")
        assert record is not None and corpus.store.count(paths=["manual.txt"]) == record.chunks == 1
        assert corpus.manifest.dirty() == []


def test_a_removal_killed_midway_is_finished_by_the_next_run(settings, tmp_path):
    root = write_tree(tmp_path / "docs", {"manual.txt": OLD, "other.txt": "An unrelated file."})
    assert _cli(root).returncode == 0
    (root / "manual.txt").unlink()
    assert _cli(root, "rewrite-begun").returncode == -signal.SIGKILL
    assert _cli(root).returncode == 0
    assert _texts(settings, "kestrel valve clockwise") == []


def test_points_left_without_a_row_are_replaced_not_kept(settings, tmp_path):
    # A corpus hurt by the old order (row dropped, then killed before the delete) heals.
    root = write_tree(tmp_path / "docs", {"manual.txt": OLD})
    with open_corpus(settings, create=True, embedder="none") as corpus:
        ingest(corpus, [root], workers=0)
        corpus.manifest.remove("manual.txt")
    (root / "manual.txt").write_text(NEW)
    with open_corpus(settings) as corpus:
        ingest(corpus, [root], workers=0)
    assert _texts(settings, "kestrel valve clockwise") == [NEW]


# -- budgets: a hostile file costs one failed file, not the run ----------------------------------

def _docx(body_xml: str, pad: int = 0) -> bytes:
    """A real DOCX (python-docx's template) whose body is ``body_xml``; ``pad`` bytes of XML comment."""
    import io
    import zipfile

    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template.getvalue())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "word/document.xml":
                head, _, rest = data.decode().partition("<w:body>")
                data = (head + "<w:body>" + body_xml + "<w:sectPr/></w:body></w:document>"
                        + ("<!--" + " " * pad + "-->" if pad else "")).encode()
            dst.writestr(item, data)
    return out.getvalue()


def test_a_docx_of_empty_paragraphs_fails_on_time_and_the_run_goes_on(tmp_path):
    from click.testing import CliRunner

    from docmem.cli.main import cli

    hostile = _docx("<w:p/>" * 1_500_000)  # ~9 MB of XML, a few KB on disk
    assert len(hostile) < 100_000
    root = write_tree(tmp_path / "docs", {"empty-paragraphs.docx": hostile, "fine.txt": "A normal file."})
    result = CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none", "--json", "--workers", "1",
                                      "--file-timeout", "4"], catch_exceptions=False)
    import json

    data = json.loads(result.output)
    assert data["added"] == ["fine.txt"]
    assert [(f["path"], f["reason"].split(" (")[0]) for f in data["failed"]] == \
        [("empty-paragraphs.docx", "took longer than 4 s")]


def test_a_zip_bomb_docx_is_refused_before_unpacking(settings, tmp_path):
    bomb = _docx("<w:p><w:r><w:t>tiny</w:t></w:r></w:p>", pad=120_000_000)  # 120 MB of spaces
    assert len(bomb) < 1_000_000
    root = write_tree(tmp_path / "docs", {"bomb.docx": bomb, "fine.txt": "A normal file."})
    with open_corpus(settings, create=True, embedder="none") as corpus:
        from ingest.workers import FileBudget

        summary = ingest(corpus, [root], workers=1, in_process=False, budget=FileBudget(memory_mb=100))
    assert summary.added == ["fine.txt"]
    assert dict(summary.failed)["bomb.docx"].startswith("too large when unpacked (115 MB, over 100 MB")


def _allocate(megabytes: int) -> int:
    blocks = [bytearray(1 << 20) for _ in range(megabytes)]  # touched: resident, not just reserved
    return len(blocks)


def test_a_worker_over_its_memory_budget_fails_that_file_only():
    from ingest.workers import FileBudget, run_pool

    budget = FileBudget(memory_mb=300)
    results = [r for r in run_pool([20, 2000, 30], 1, budget, _allocate, size=lambda _: 0,
                                   failed=lambda job, reason: (job, reason)) if r is not None]  # not heartbeats
    assert sorted(map(str, results)) == sorted(["20", "30", str((2000, budget.too_large()))])


def test_the_cli_loading_message_is_the_pipelines():
    from docmem.cli import ingest_cmd
    from ingest import pipeline

    assert ingest_cmd.LOADING_EMBEDDER == pipeline.LOADING_EMBEDDER


# -- a killed ingest takes its workers with it ---------------------------------------------------

def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_until(predicate, what: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_killing_ingest_leaves_no_worker_or_resource_tracker(tmp_path, sig):
    import psutil

    slow = _docx("<w:p/>" * 1_500_000)
    root = write_tree(tmp_path / "docs", {"a.docx": slow, "b.docx": slow, "c.txt": "Some text."})
    proc = subprocess.Popen([sys.executable, "-m", "docmem.cli", "ingest", str(root), "--embedder", "none",
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy(),  # SIGINT not ignored, even in a background job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    parent = psutil.Process(proc.pid)

    def workers() -> list[psutil.Process]:
        return [p for p in parent.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]

    _wait_until(lambda: len(workers()) == 2, "two workers started")
    descendants = [p.pid for p in parent.children(recursive=True)]  # workers and resource_tracker
    assert len(descendants) >= 3
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    _wait_until(lambda: not any(_alive(pid) for pid in descendants), "every child gone", timeout=60)
    if sig != signal.SIGKILL:  # stopped the way Ctrl+C stops it, and said what was saved
        assert proc.returncode == 128 + sig, stderr
        said = "Interrupted." if sig == signal.SIGINT else f"Stopped by {signal.Signals(sig).name}."
        assert said in stderr and "Run the same command again to resume" in stderr
        assert "Aborted!" not in stderr and "Traceback" not in stderr
