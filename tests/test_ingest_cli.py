"""What `docmem ingest` tells its user: retries, progress without a terminal, honest lines (issue 13)."""

from __future__ import annotations

import os

from click.testing import CliRunner

from docmem.cli.ingest_cmd import _Lines
from docmem.cli.main import cli
from docmem.store.corpus import open_corpus
from docmem.store.manifest import FileRecord
from ingest.pipeline import LOADING_EMBEDDER, Progress, ingest
from ingest.workers import FileBudget
from tests.conftest import write_tree


def _failed_record(root, rel: str, reason: str) -> FileRecord:  # type: ignore[no-untyped-def]
    st = (root / rel).stat()
    return FileRecord(rel, str(root), "", st.st_size, st.st_mtime_ns, "failed", reason, None, 0, 0, 0.0)


def test_failures_whose_cause_may_have_gone_are_retried(settings, tmp_path):
    root = write_tree(tmp_path / "docs", {"was-locked.txt": "Readable now.", "corrupt.txt": "Still corrupt.",
                                          "slow.txt": "Was slow once.", "ok.txt": "Fine."})
    with open_corpus(settings, create=True, embedder="none") as corpus:
        ingest(corpus, [root], workers=0, budget=FileBudget(seconds=2))
        for rel, reason in (("was-locked.txt", "permission denied"), ("corrupt.txt", "corrupt PDF: bad xref"),
                            ("slow.txt", "took longer than 2 s (file_timeout; --file-timeout to raise it)")):
            corpus.manifest.put(_failed_record(root, rel, reason))
        corpus.store.delete_paths(["was-locked.txt", "corrupt.txt", "slow.txt"])

        same_budget = ingest(corpus, [root], workers=0, budget=FileBudget(seconds=2))
        assert same_budget.retried == ["was-locked.txt"] and same_budget.added == ["was-locked.txt"]
        failed = dict(same_budget.failed)
        assert failed["corrupt.txt"] == "corrupt PDF: bad xref (unchanged since last run; --force retries it)"
        assert failed["slow.txt"].endswith("(unchanged since last run; --force retries it)")

        raised = ingest(corpus, [root], workers=0, budget=FileBudget(seconds=30))
        assert raised.retried == ["slow.txt"] and raised.added == ["slow.txt"]

    result = CliRunner().invoke(cli, ["ingest", str(root)], catch_exceptions=False)
    assert "corrupt PDF: bad xref (unchanged since last run; --force retries it)" in result.output


def test_retried_files_are_announced(tmp_path):
    root = write_tree(tmp_path / "docs", {"a.txt": "Readable now."})
    runner = CliRunner()
    runner.invoke(cli, ["ingest", str(root), "--embedder", "none"], catch_exceptions=False)
    from docmem.config import load_settings

    with open_corpus(load_settings()) as corpus:
        corpus.manifest.put(_failed_record(root, "a.txt", "permission denied"))
    result = runner.invoke(cli, ["ingest", str(root)], catch_exceptions=False)
    assert "Read again 1 unchanged file that had failed" in result.output and "1 added" in result.output


def test_without_a_terminal_progress_is_printed_every_few_seconds(monkeypatch):
    from rich.console import Console

    clock = [100.0]
    monkeypatch.setattr("docmem.cli.ingest_cmd.time.monotonic", lambda: clock[0])
    console = Console(record=True, width=200, force_terminal=False)
    show = _Lines(console, every=5)
    show(Progress("dense", total=300, message=LOADING_EMBEDDER))
    for done in range(0, 301, 20):  # an event every 2 s; a line every 5 s, and the last
        show(Progress("dense", done=done, total=300))
        clock[0] += 2
    lines = console.export_text().splitlines()
    assert lines[0] == "dense: 300 chunks to embed; loading embedder"
    assert lines[1].startswith("dense: 60/300 chunks (20%), ") and lines[-1].startswith("dense: 300/300 chunks (100%)")
    assert 6 <= len(lines) <= 9


def test_dense_stage_says_it_loads_the_embedder_and_rates_exclude_it(settings, tmp_path):
    root = write_tree(tmp_path / "docs", {"a.txt": "Herons stand in shallow water.", "b.txt": "Owls hunt."})
    events: list[Progress] = []
    with open_corpus(settings, create=True, embedder="bundled") as corpus:
        summary = ingest(corpus, [root], workers=0, progress=events.append)
    dense = [e for e in events if e.stage == "dense"]
    assert dense[0].message == LOADING_EMBEDDER and dense[1].message is None and dense[-1].done == 2
    assert 0 < summary.seconds_embedder_load < summary.seconds_dense

    result = CliRunner().invoke(cli, ["ingest", str(root), "--force"], catch_exceptions=False)
    assert "chunks/s dense" in result.output


def test_summary_lines_agree_and_count_in_words(tmp_path):
    root = write_tree(tmp_path / "docs", {"only.txt": "One short file about lighthouses."})
    runner = CliRunner()
    first = runner.invoke(cli, ["ingest", str(root), "--embedder", "none"], catch_exceptions=False)
    assert "1 added — 1 chunk written in" in first.output
    assert "pages" not in first.output and "0 updated" not in first.output
    os.utime(root / "only.txt", ns=(1, 1))  # touched, same content: read again, nothing new
    again = runner.invoke(cli, ["ingest", str(root)], catch_exceptions=False)
    assert "extract: 1 file to read" in again.output
    assert "is up to date: 1 file unchanged (1 read again: same content)." in again.output
    assert "nothing extracted" not in again.output and "1 files" not in again.output
