"""``docmem ask`` end to end: the real openai client, a fake server on 127.0.0.1, sample_corpora."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from tests.agent_helpers import citing_server_policy, quotable
from tests.conftest import SAMPLE_DIR
from tests.fake_openai import FakeOpenAI


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A slice of sample_corpora (two real texts and a real PDF), ingested BM25-only for speed."""
    root = tmp_path / "sample"
    root.mkdir()
    shutil.copy(SAMPLE_DIR / "text" / "alice29.txt", root)
    shutil.copy(SAMPLE_DIR / "pdf" / "debian-faq.en.pdf", root)
    result = CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    return root


@pytest.fixture
def server():
    with FakeOpenAI(model="gpt-4o-mini") as fake:
        fake.policy = citing_server_policy
        yield fake


def test_no_llm_configured_says_what_to_set(sample):
    result = CliRunner().invoke(cli, ["ask", "Who is the White Rabbit?"])
    assert result.exit_code == 1
    assert "No LLM configured" in result.output and "--model" in result.output
    result = CliRunner().invoke(cli, ["ask", "Who?", "--model", "gpt-4o-mini"])
    assert result.exit_code == 1
    assert "set OPENAI_API_KEY, or --base-url http://localhost:11434/v1 for Ollama" in result.output


def test_ask_answers_with_verified_citations(sample, server, tmp_path):
    trace = tmp_path / "trace.jsonl"
    result = CliRunner().invoke(cli, [
        "ask", "What does the Debian FAQ say about package management tools?", "--model", server.model,
        "--base-url", server.url, "--json", "--trace", str(trace)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "answered" and data["citations"]
    assert all(c["verified"] for c in data["citations"])
    assert data["citations"][0]["path"] in ("debian-faq.en.pdf", "alice29.txt")
    assert data["steps"] == 2 and data["tokens_in"] > 0
    # What the model was sent: the tools, then the page of results it cited from.
    first, second = server.chat_requests[:2]
    assert {t["function"]["name"] for t in first["tools"]} >= {"archival_search", "answer", "open_document"}
    assert second["messages"][-1]["role"] == "tool"
    assert second["messages"][-1]["content"].startswith("Showing results 1-5 of ")
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["type"] for r in records] == ["LLMStep", "CallStep", "LLMStep", "CallStep", "FinalStep"]
    assert set(records[0]["usage"]) >= {"system", "working", "summary", "queue", "tools", "window"}


def test_ask_human_output_and_sessions(sample, server):
    runner = CliRunner()
    args = ["--model", server.model, "--base-url", server.url, "--session", "research"]
    result = runner.invoke(cli, ["ask", "Who did Alice follow down the rabbit hole?", *args],
                           catch_exceptions=False)
    assert result.exit_code == 0
    assert "[1] ✓ " in result.stdout and "answered; 2 steps" in result.stdout
    assert '· searching "Who did Alice follow' in result.stderr
    runner.invoke(cli, ["ask", "And what did she drink?", *args], catch_exceptions=False)
    # The resumed session sent the first question again, from its saved queue.
    last = server.chat_requests[-2]["messages"]
    assert any(m["role"] == "user" and "rabbit hole" in (m["content"] or "") for m in last)
    listing = runner.invoke(cli, ["sessions", "--json"]).stdout
    assert [s["name"] for s in json.loads(listing)] == ["research"]
    deleted = runner.invoke(cli, ["sessions", "--delete", "research"], catch_exceptions=False)
    assert deleted.exit_code == 0 and "Deleted session 'research'" in deleted.stdout
    assert json.loads(runner.invoke(cli, ["sessions", "--json"]).stdout) == []
    gone = runner.invoke(cli, ["sessions", "--delete", "research"])
    assert gone.exit_code == 1 and "no session 'research'" in gone.output
    # A new session of that name starts empty: nothing of the old one is sent.
    runner.invoke(cli, ["ask", "And what did she drink?", *args], catch_exceptions=False)
    assert not any("rabbit hole" in (m["content"] or "") for m in server.chat_requests[-1]["messages"])


def test_fake_server_answers_every_question_of_a_session(sample, server):
    """The scripted policy reads only the current question's tool results: each question of
    one session is searched for itself and answered with a verified citation of its own."""
    runner = CliRunner()
    args = ["--model", server.model, "--base-url", server.url, "--session", "several", "--json"]
    questions = {"What does the Debian FAQ say about package management tools?": "debian-faq.en.pdf",
                 "Alice took a watch out of its waistcoat pocket, said the White Rabbit": "alice29.txt",
                 "How do I upgrade a Debian system with apt-get dist-upgrade?": "debian-faq.en.pdf"}
    for question, path in questions.items():
        sent = len(server.chat_requests)
        data = json.loads(runner.invoke(cli, ["ask", question, *args], catch_exceptions=False).stdout)
        assert data["status"] == "answered" and data["steps"] == 2, data
        assert [c["verified"] for c in data["citations"]] == [True]
        assert data["citations"][0]["path"] == path
        first_call = server.chat_requests[sent + 1]["messages"][-2]["tool_calls"][0]["function"]
        assert json.loads(first_call["arguments"])["query"] == question


def test_quotes_skip_a_heading_too_short_to_verify():
    assert quotable("1. Introduction. Debian is a free operating system. More.") == "Introduction."
    assert quotable("1. Debian is a free operating system …[cut]") == "Debian is a free operating system"
    assert quotable("Q. Why? Because the archive is large.") == "Because the archive is large."


def test_server_errors_end_with_one_clear_line(sample, server):
    server.policy = None
    server.enqueue({"status": 401})
    result = CliRunner().invoke(cli, ["ask", "Anything?", "--model", server.model, "--base-url", server.url])
    assert result.exit_code == 1
    assert "rejected the API key (401)" in result.output
    assert "Traceback" not in result.output


def test_ctrl_c_during_an_ask_is_one_line_and_the_session_is_kept(tmp_path, docmem_home):
    """A person presses Ctrl+C while the model is thinking: one line saying what was kept, exit
    130, and the session (with the question) is there to resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("The lighthouse keeper lit the lamp every evening.\n")
    assert CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none"]).exit_code == 0
    with FakeOpenAI(model="m") as fake:
        fake.policy = lambda body: {"hang": True}
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "DOCMEM_HOME": str(docmem_home)}
        proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "docmem.cli", "ask", "Who lit the lamp?",
                                 "--model", "m", "--base-url", fake.url, "--session", "night"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while not fake.chat_requests:  # the call to the model is under way
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # where it is stuck, from faulthandler
            proc.send_signal(signal.SIGABRT)
            pytest.fail(f"still running 30 s after Ctrl+C:\n{proc.communicate()[1][-6000:]}")
    assert proc.returncode == 130 and "Traceback" not in err and "Aborted" not in err
    assert "Interrupted: session 'night' is saved" in err and "--session night" in err
    listing = CliRunner().invoke(cli, ["sessions", "--json"]).stdout
    assert [s["name"] for s in json.loads(listing)] == ["night"]
