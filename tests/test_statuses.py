"""Honest statuses (issues 10.3 and 9.13): an answer without a verified citation is never
"answered", in ``ask --json``, batch JSONL/CSV/Markdown, the batch counts and eval; an empty
reply is re-prompted once, then ends as an error. Batch ``--trace DIR``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from docmem import prompts
from docmem.agent.loop import Agent
from docmem.agent.recall import Recall
from docmem.cli.main import cli
from docmem.eval.report import Run, summarize
from docmem.llm.scripted import ScriptedProcessor, call, text
from docmem.protocols import Completion
from docmem.store.corpus import open_corpus
from tests.agent_helpers import build_corpus, citing_server_policy
from tests.fake_openai import FakeOpenAI

DOCS = {"valve.txt": "Valves\n\nThe alpha valve opens at 3 bar of pressure.",
        "pump.txt": "Pumps\n\nThe beta pump must be primed with water before every start."}


@pytest.fixture
def corpus_root(settings, tmp_path: Path) -> Path:
    build_corpus(settings, tmp_path / "docs", DOCS)
    return tmp_path / "docs"


def test_an_empty_reply_is_reprompted_once_then_ends_as_an_error(settings, corpus_root):
    corpus = open_corpus(settings)
    empty = Completion(text=None, finish_reason="stop")
    llm = ScriptedProcessor(empty, Completion(text="  ", finish_reason="stop"))
    result = Agent(llm, corpus, Recall(":memory:", "a"), window=8192).ask("When does the valve open?")
    assert result.status == "error" and result.answer == ""
    assert result.error == "the model sent 2 empty replies (no text and no function call)"
    assert llm.history[1][0][-1] == {"role": "user", "content": prompts.load("empty_reply").strip()}

    # One empty reply, then a real answer: the re-prompt is all it took.
    llm = ScriptedProcessor(empty, call("answer", text="Not in the documents.", not_found=True))
    assert Agent(llm, corpus, Recall(":memory:", "b"), window=8192).ask("Colour of the sky?").status == "abstained"
    corpus.close()


def _ask(server: FakeOpenAI, *args: str) -> Any:
    return CliRunner().invoke(cli, ["ask", *args, "--model", server.model, "--base-url", server.url],
                              catch_exceptions=False)


def test_ask_json_says_unverified_and_exits_1_unless_allowed(corpus_root):
    with FakeOpenAI() as server:
        server.policy = lambda body: {"content": "It opens at 3 bar, I think."}
        plain = _ask(server, "When does the alpha valve open?", "--json")
        allowed = _ask(server, "When does the alpha valve open?", "--json", "--allow-unverified")
        server.policy = lambda body: {"content": None}
        empty = _ask(server, "When does the alpha valve open?", "--json")
    data = json.loads(plain.stdout)
    assert plain.exit_code == 1 and data["status"] == "unverified" and data["citations"] == []
    assert data["answer"] == "It opens at 3 bar, I think." and "no citation was verified" in data["error"]
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["status"] == "unverified"
    assert empty.exit_code == 1 and json.loads(empty.stdout)["status"] == "error"


def _mixed_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Cited answers, except that a question about the pump gets a plain-text reply."""
    question = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if body.get("tools") and "pump" in question:
        return {"content": "Prime it with water, probably."}
    return citing_server_policy(body)


def test_batch_reports_unverified_everywhere_and_fails_unless_allowed(corpus_root, tmp_path):
    qfile = tmp_path / "q.txt"
    qfile.write_text("When does the alpha valve open at 3 bar?\nWhat must the beta pump be primed with?\n",
                     encoding="utf-8")
    out, table, report, traces = tmp_path / "a.jsonl", tmp_path / "a.csv", tmp_path / "a.md", tmp_path / "traces"
    with FakeOpenAI() as server:
        server.policy = _mixed_policy
        first = _ask(server, "--questions", str(qfile), "--out", str(out), "--out", str(table),
                     "--out", str(report), "--trace", str(traces), "--json")
        asked = len(server.chat_requests)
        again = _ask(server, "--questions", str(qfile), "--out", str(out), "--json")
        retried, asked = len(server.chat_requests) - asked, len(server.chat_requests)
        kept = _ask(server, "--questions", str(qfile), "--out", str(out), "--allow-unverified", "--json")
        kept_requests = len(server.chat_requests) - asked
    assert first.exit_code == 1, first.output
    summary = json.loads(first.stdout)
    assert (summary["answered"], summary["unverified"], summary["failed"]) == (1, 1, 0)
    records = {r["question"][:8]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["When doe"]["status"] == "answered" and records["What mus"]["status"] == "unverified"
    rows = {r["question"][:8]: r for r in csv.DictReader(io.StringIO(table.read_text()))}
    assert rows["What mus"]["status"] == "unverified" and rows["What mus"]["verified"] == "0/0"
    md = report.read_text()
    assert "| answered | 1 |" in md and "| unverified (no verified citation) | 1 |" in md
    assert "## Unverified replies" in md
    # --trace DIR: one JSONL of steps per question.
    files = sorted(traces.glob("*.jsonl"))
    assert len(files) == 2
    steps = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {s["type"] for s in steps} >= {"LLMStep", "CallStep", "FinalStep"}
    assert sorted(s["result"]["status"] for s in steps if s["type"] == "FinalStep") == ["answered", "unverified"]
    # The unverified question is asked again on the next run (the pump only: 1 call + 2 nudges)...
    assert again.exit_code == 1 and retried == 3 and json.loads(again.stdout)["unverified"] == 1
    # ... and kept, with exit 0, under --allow-unverified.
    assert kept.exit_code == 0, kept.output
    assert kept_requests == 0 and json.loads(kept.stdout)["skipped"] == 2


def test_eval_counts_unverified_apart_and_scores_them_wrong(tmp_path):
    results = [{"type": "result", "system": "docmem", "status": s, "correct": s == "answered", "model": "m"}
               for s in ("answered", "unverified", "unverified", "abstained")]
    [row] = summarize([Run(tmp_path / "r.jsonl", {"task": "doc-qa", "model": "m"}, results, None)])
    assert (row.n, row.correct, row.unverified, row.abstained) == (4, 1, 2, 1)
    assert row.as_dict()["unverified"] == 2


def test_trace_is_a_file_for_one_question_and_a_folder_for_a_batch(corpus_root, tmp_path):
    with FakeOpenAI() as server:
        server.policy = citing_server_policy
        folder = _ask(server, "When does the alpha valve open?", "--trace", str(tmp_path))
        qfile = tmp_path / "q.txt"
        qfile.write_text("When does the alpha valve open?\n", encoding="utf-8")
        afile = tmp_path / "t.jsonl"
        afile.write_text("", encoding="utf-8")
        batch = _ask(server, "--questions", str(qfile), "--trace", str(afile))
    assert folder.exit_code == 2 and "is a folder: give a file for one QUESTION" in folder.output
    assert batch.exit_code == 2 and "with --questions, give a folder" in batch.output
