"""Acceptance of the ownership rule: with ``docmem chat`` holding a corpus, ``docmem ingest``,
``docmem search`` and ``docmem ask --questions`` in other processes go through it, and the
chat's next search finds what was ingested. Real processes, the real TUI (pilot), the real
openai client against the fake server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from docmem.api.remote import RemoteService
from docmem.llm.scripted import ScriptedProcessor, call, text
from docmem.store.corpus import Corpus
from docmem.tui import make_app
from docmem.tui.widgets import AnswerView
from tests.agent_helpers import citing_server_policy, last_tool_result
from tests.fake_openai import FakeOpenAI
from tests.test_tui import drive, pumps, pumps_template, send, settle  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def docmem(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "docmem.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=180)


def gearbox_policy(messages: list[dict[str, Any]], tools: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    if not tools:
        return text("Summary.")
    result = last_tool_result(messages)
    found = re.search(r"chunk (\S+) \| gearbox\.txt", result)
    if found:
        return call("answer", text="Every 500 hours [1].",
                    citations=[{"chunk_id": found.group(1), "quote": "Change the gearbox oil every 500 hours."}])
    return call("archival_search", query="gearbox oil", request_heartbeat=True)


def test_commands_in_other_processes_go_through_the_open_chat(pumps, tmp_path):
    more = tmp_path / "more"
    more.mkdir()
    (more / "gearbox.txt").write_text("Gearbox\n\nChange the gearbox oil every 500 hours.", encoding="utf-8")
    questions = tmp_path / "q.txt"
    questions.write_text("turbine flange bolts torque\n", encoding="utf-8")
    app = make_app(pumps, processor=ScriptedProcessor(policy=gearbox_policy), session="s1", pick_session=False)

    with FakeOpenAI(model="gpt-4o-mini") as llm:
        llm.policy = citing_server_policy

        async def body(pilot):  # type: ignore[no-untyped-def]
            assert isinstance(app.workspace.corpus, Corpus)  # the chat owns the corpus
            ingest = await asyncio.to_thread(docmem, "ingest", str(more))
            assert ingest.returncode == 0, ingest.stderr
            assert "extract: 1 file to read" in ingest.stderr and "1 added" in ingest.stdout
            search = await asyncio.to_thread(docmem, "search", "gearbox oil", "--json")
            assert search.returncode == 0, search.stderr
            assert json.loads(search.stdout)["hits"][0]["path"] == "gearbox.txt"
            batch = await asyncio.to_thread(docmem, "ask", "--questions", str(questions), "--model", llm.model,
                                            "--base-url", llm.url, "--api-key", "sk-test", "--quiet")
            assert batch.returncode == 0, batch.stderr + batch.stdout
            record = json.loads((tmp_path / "q.answers.jsonl").read_text().splitlines()[-1])
            assert record["status"] == "answered" and record["citations"][0]["path"] == "turbine.txt"
            for result in (ingest, search, batch):
                assert "in use" not in result.stderr
            await send(pilot, "How often is the gearbox oil changed?")  # the chat's next search
            await settle(app, pilot)
            answer = app.query(AnswerView).last()
            assert answer.result.citations[0].path == "gearbox.txt" and answer.result.citations[0].verified

        drive(app, body)


def test_chat_opened_second_is_a_client_of_the_owner(pumps, tmp_path):
    """The other way round: a process holds the corpus first; the chat works through it."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.owner_process"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout and proc.stdout.readline().strip() == "ready LocalService"
        more = tmp_path / "more"
        more.mkdir()
        (more / "gearbox.txt").write_text("Gearbox\n\nChange the gearbox oil every 500 hours.", encoding="utf-8")
        app = make_app(pumps, processor=ScriptedProcessor(policy=gearbox_policy), session="s1",
                       pick_session=False)

        async def body(pilot):  # type: ignore[no-untyped-def]
            assert isinstance(app.workspace.service.route(), RemoteService)
            await send(pilot, f"/ingest {more}")
            await settle(app, pilot)
            await send(pilot, "How often is the gearbox oil changed?")
            await settle(app, pilot)
            answer = app.query(AnswerView).last()
            assert answer.result.citations[0].path == "gearbox.txt" and answer.result.citations[0].verified

        drive(app, body)
        assert proc.stdin
        proc.stdin.write("search gearbox oil\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "hit gearbox.txt"
    finally:
        if proc.stdin:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        proc.wait(20)
