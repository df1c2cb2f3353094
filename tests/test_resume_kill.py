"""A session killed mid-turn resumes from its last completed step (issue 9.17): a real
``docmem ask --session`` process, a fake server that never answers its third call, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from docmem.cli.main import cli
from tests.agent_helpers import build_corpus
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
NOTE = "Lead: the alpha valve manual is valve.txt"


def test_sigkill_mid_turn_keeps_the_steps_already_done(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"valve.txt": "Valves\n\nThe alpha valve opens at 3 bar."})
    release = threading.Event()

    def first_run(body: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        if done == 0:
            return {"tool_calls": [{"name": "working_context_append",
                                    "arguments": {"text": NOTE, "request_heartbeat": True}}]}
        if done == 1:
            return {"tool_calls": [{"name": "archival_search",
                                    "arguments": {"query": "alpha valve", "request_heartbeat": True}}]}
        release.wait(60)  # step 3 never comes back: the process is killed waiting for it
        return {"disconnect": True}

    with FakeOpenAI() as server:
        server.policy = first_run
        cmd = [sys.executable, "-m", "docmem.cli", "ask", "When does the alpha valve open?", "--session", "s",
               "--tools", "full", "--model", server.model, "--base-url", server.url]
        proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while len(server.chat_requests) < 3:  # the third call is in flight: steps 1 and 2 are done
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the third call never came"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            release.set()
            if proc.stderr:
                proc.stderr.close()

        server.policy = lambda body: {"tool_calls": [{"name": "answer", "arguments": {
            "text": "Not sure.", "not_found": True}}]}
        before = len(server.chat_requests)
        result = CliRunner().invoke(cli, ["ask", "And the beta valve?", "--session", "s", "--tools", "full",
                                          "--model", server.model, "--base-url", server.url, "--json"],
                                    catch_exceptions=False)
        resumed = server.chat_requests[before]["messages"]
    assert result.exit_code == 0, result.output
    # The working-context edit of step 1 survived the kill, and so did step 2's search and its result.
    memory = next(m["content"] for m in resumed if m["role"] == "user" and m["content"].startswith("[memory]"))
    assert NOTE in memory
    assert any(m["role"] == "tool" and m["content"].startswith("Showing results 1-1 of 1") for m in resumed)
    assert [m["content"] for m in resumed if m["role"] == "user" and not m["content"].startswith("[")] == [
        "When does the alpha valve open?", "And the beta valve?"]
    calls = [c["function"]["name"] for m in resumed for c in m.get("tool_calls") or []]
    tools = sum(1 for m in resumed if m["role"] == "tool")
    assert calls == ["working_context_append", "archival_search"] and tools == 2  # no call without its result
    assert json.loads(result.stdout)["status"] == "abstained"
