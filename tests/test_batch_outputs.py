"""Batch outputs that nothing else writes to (issue 9.16): one run at a time per answers file,
and resume records keyed by corpus and corpus state, never reused across corpora."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from docmem.cli.main import cli
from tests.agent_helpers import build_corpus, citing_server_policy
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
DOCS = {"apples.txt": "Apples\n\nThe Granny Smith apple was first grown in Australia in 1868.",
        "volcano.txt": "Volcanoes\n\nMount Etna is the most active volcano in Europe."}
QUESTIONS = ["Where was the Granny Smith apple first grown?", "Which volcano in Europe is the most active?"]


def _corpora(settings: Any, tmp_path: Path) -> None:
    """Two corpora with identical files: the same corpus state, different corpora."""
    build_corpus(settings, tmp_path / "docs", DOCS)
    build_corpus(dataclasses.replace(settings, corpus="other"), tmp_path / "docs-other", DOCS)


def _run(server: FakeOpenAI, *args: str) -> Any:
    return CliRunner().invoke(cli, ["ask", *args, "--model", server.model, "--base-url", server.url],
                              catch_exceptions=False)


def test_a_second_batch_on_the_same_out_is_refused_and_the_first_loses_nothing(settings, tmp_path):
    _corpora(settings, tmp_path)
    qfile, out = tmp_path / "q.txt", tmp_path / "a.jsonl"
    qfile.write_text("".join(f"{q} ({n})\n" for n in range(4) for q in QUESTIONS), encoding="utf-8")
    lock = out.with_name("a.jsonl.lock")
    with FakeOpenAI(latency=0.05) as server:
        server.policy = citing_server_policy
        cmd = [sys.executable, "-m", "docmem.cli", "ask", "--questions", str(qfile), "--out", str(out),
               "-j", "1", "--model", server.model, "--base-url", server.url]
        first = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (lock.exists() and lock.read_text().startswith("PID ") and server.chat_requests):
                assert first.poll() is None and time.monotonic() < deadline, first.communicate()
                time.sleep(0.01)  # polling the observable state: the first run holds the file
            second = _run(server, "--questions", str(qfile), "--out", str(out), "--corpus", "other")
        finally:
            stdout, stderr = first.communicate(timeout=120)
    assert second.exit_code == 1
    message = second.output.strip().splitlines()
    assert len(message) == 1 and message[0] == (
        f"Error: {out} is being written by another docmem batch (PID {first.pid}): wait for it to finish, "
        "or give another --out")
    assert first.returncode == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 8 and {r["corpus"] for r in records} == {"default"}
    assert oct(lock.stat().st_mode & 0o777) == "0o600" and lock.read_text() == ""  # released, no argv kept


def test_answers_made_over_another_corpus_are_never_reused(settings, tmp_path):
    _corpora(settings, tmp_path)
    qfile, out = tmp_path / "q.txt", tmp_path / "a.jsonl"
    qfile.write_text("\n".join(QUESTIONS) + "\n", encoding="utf-8")
    with FakeOpenAI() as server:
        server.policy = citing_server_policy
        made = _run(server, "--questions", str(qfile), "--out", str(out))
        n = len(server.chat_requests)
        same = _run(server, "--questions", str(qfile), "--out", str(out))  # same corpus, same state
        assert len(server.chat_requests) == n
        refused = _run(server, "--questions", str(qfile), "--out", str(out), "--corpus", "other")
        assert len(server.chat_requests) == n
        redone = _run(server, "--questions", str(qfile), "--out", str(out), "--corpus", "other", "--rerun-stale")
        asked_again = len(server.chat_requests) - n
    assert made.exit_code == 0 and same.exit_code == 0 and "(kept: 2 already answered)" in same.stdout
    assert refused.exit_code == 1
    assert "2 answers in" in refused.output and "(from corpus 'default')" in refused.output
    assert redone.exit_code == 0, redone.output
    assert asked_again == 4  # both questions, search + answer each: nothing from 'default' reused
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["corpus"] for r in records] == ["other", "other"]


EVIL = ('<img src=x onerror=alert(1)> ![t](http://tracker.example/x.png) [click](javascript:alert(1)) '
        '<script>alert(2)</script> `code`')


def test_the_markdown_report_shows_hostile_text_as_text():
    """Quotes, answers, paths, queries and errors come from documents and models: a report
    opened in a Markdown viewer must not load an image, run HTML or offer a javascript: link."""
    from markdown_it import MarkdownIt

    from docmem.batch.reports import ReportInfo, render_markdown

    records = [
        {"id": "1", "question": "Q " + EVIL, "status": "answered", "answer": f"It is so [1]. {EVIL} [2]",
         "citations": [{"chunk_id": "c-1", "quote": EVIL, "verified": True, "path": f"docs/{EVIL}.md"},
                       {"chunk_id": "c-2", "quote": "plain", "verified": False, "reason": EVIL, "path": "a.md"}]},
        {"id": "2", "question": "Q2", "status": "abstained", "answer": EVIL,
         "searches": [{"query": EVIL, "page": 1, "total": 3, "path": "*`x`*"}]},
        {"id": "3", "question": "Q3", "status": "error", "error": EVIL},
    ]
    markdown = render_markdown(records, ReportInfo("questions.txt", "c", "s", "a.jsonl"))
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    assert not [t for t in ("<img", "<script", 'href="javascript', 'src="') if t in html]
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 5  # shown, as typed
    assert "It is so [^q1-1]." in markdown and "[^q1-2]" in markdown  # the markers still footnote
