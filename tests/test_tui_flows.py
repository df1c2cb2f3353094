"""``docmem chat``, continued: sessions, slash commands, the real client against the fake
OpenAI server, and hostile text (helpers and fixtures from test_tui.py)."""

from __future__ import annotations

import functools
import re
import shutil

from docmem.agent.loop import AnswerResult
from docmem.config import load_settings
from docmem.llm.scripted import ScriptedProcessor, call, text
from docmem.tui import make_app
from docmem.tui.runtime import saved_sessions
from docmem.tui.screens import HelpScreen, SessionScreen, SourceScreen
from docmem.tui.widgets import ActivityItem, AgentText, AnswerView, Notice, UserMessage
from tests.agent_helpers import build_corpus, citing_server_policy, current_turn, last_tool_result
from tests.fake_openai import FakeOpenAI
from tests.test_tui import (QUESTION, drive, notices, paging_policy, pumps, pumps_template,  # noqa: F401 (fixtures)
                            send, settle, until)


def test_session_resumes_from_the_list_with_history_and_memory(pumps):
    app = make_app(pumps, processor=ScriptedProcessor(policy=paging_policy), session="research",
                   pick_session=False)

    async def first(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, QUESTION)
        await settle(app, pilot)

    drive(app, first)
    llm = ScriptedProcessor(text("Yes, 85 Nm."))
    again = make_app(pumps, processor=llm)  # no --session: the list comes first

    async def second(pilot):  # type: ignore[no-untyped-def]
        assert isinstance(again.screen, SessionScreen)
        await pilot.press("down", "enter")  # below "+ new session": research
        await settle(again, pilot)
        assert again.workspace.session == "research"
        assert [m.text for m in again.query(UserMessage)] == [QUESTION]
        answer = again.query_one(AnswerView)
        assert "85 Nm" in answer.result.answer and answer.result.citations[0].path == "turbine.txt"
        assert any(n.startswith("Resumed session 'research'") for n in notices(again))
        await send(pilot, "Are you sure?")
        await settle(again, pilot)
        sent = llm.history[0][0]
        assert any(m["role"] == "user" and m["content"] == QUESTION for m in sent)  # memory came back

    drive(again, second)


def test_a_chat_with_no_question_is_not_saved_and_resume_names_the_llm(pumps):
    from docmem.cli.chat_cmd import resume_command

    app = make_app(pumps, processor=ScriptedProcessor(), session="idle", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        assert [s.name for s in saved_sessions(pumps)] == ["idle"]  # listed while it is open

    drive(app, body)
    assert app.workspace_session is None and saved_sessions(pumps) == []
    settings = load_settings(model="llama3.1:8b", base_url="http://localhost:11434/v1", api_key="sk-secret")
    assert resume_command(settings, "my notes") == \
        "docmem chat --session 'my notes' --model llama3.1:8b --base-url http://localhost:11434/v1"


# -- slash commands: corpus, ingest, help, clear ----------------------------------------------------


def test_slash_commands_switch_corpus_and_ingest_with_progress(pumps, tmp_path):
    other = load_settings(corpus="other")
    build_corpus(other, tmp_path / "other", {"o.txt": "Other\n\nAnother corpus entirely."})
    more = tmp_path / "more"
    more.mkdir()
    (more / "gearbox.txt").write_text("Gearbox\n\nChange the gearbox oil every 500 hours.", encoding="utf-8")
    app = make_app(pumps, processor=ScriptedProcessor(policy=paging_policy), session="s1", pick_session=False)
    progress: list[str] = []

    async def body(pilot):  # type: ignore[no-untyped-def]
        bar = app.query_one("IngestBar")
        original = bar.progress
        bar.progress = lambda stage, *a: (progress.append(stage), original(stage, *a))
        await send(pilot, f"/ingest {more}")
        await settle(app, pilot)
        assert {"scan", "extract", "index"} <= set(progress)
        assert any(n.startswith(f"Ingested {more} into 'default': 1 added") for n in notices(app))
        assert "16 files · 16 chunks" in app.sub_title
        assert app.workspace.corpus.manifest.get("gearbox.txt") is not None
        await send(pilot, "/corpus other")
        await settle(app, pilot)
        assert app.workspace.corpus.name == "other" and "other · 1 file · 1 chunk" in app.sub_title
        await send(pilot, "/corpus nope")
        await settle(app, pilot)
        assert "no corpus 'nope'" in notices(app)[-1] and app.workspace.corpus.name == "other"
        await send(pilot, "/help")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await send(pilot, "/bogus")
        assert notices(app)[-1] == "Unknown command /bogus: /help lists them."
        await send(pilot, "/clear")
        await pilot.pause()
        assert not app.query(Notice) and not app.query(UserMessage)

    drive(app, body)


# -- the real openai client against the fake OpenAI-compatible server ---------------------------


def test_chat_against_the_fake_openai_server_streams_and_cites(pumps):
    with FakeOpenAI(model="gpt-4o-mini") as server:
        first = True

        def policy(body):  # type: ignore[no-untyped-def]
            nonlocal first
            reply = citing_server_policy(body)
            if first:
                first = False
                reply["content"] = "Let me search the corpus for that."
            return reply

        server.policy = policy
        settings = load_settings(model=server.model, base_url=server.url)
        app = make_app(settings, session="s1", pick_session=False)

        async def body(pilot):  # type: ignore[no-untyped-def]
            await send(pilot, "turbine flange bolts torque")
            await settle(app, pilot)
            assert app.query(AgentText)[0].text == "Let me search the corpus for that."  # streamed
            answer = app.query_one(AnswerView)
            assert isinstance(answer.result, AnswerResult) and answer.result.citations[0].verified
            assert answer.result.citations[0].path == "turbine.txt"
            assert server.chat_requests[0]["stream"] is True

        drive(app, body)


def test_a_reply_citing_nothing_after_a_search_is_marked_unverified(pumps):
    llm = ScriptedProcessor(call("archival_search", query="pump maintenance", request_heartbeat=True),
                            text("The pumps are serviced weekly, I believe."))
    app = make_app(pumps, processor=llm, session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, QUESTION)
        await settle(app, pilot)
        assert any("serviced weekly" in t.text for t in app.query(AgentText))
        assert notices(app)[-1].startswith("⚠ unverified: this reply cites no verified passage")
        assert not app.query(AnswerView)  # it is not shown as an answer

    drive(app, body)


def test_escape_interrupts_the_fake_servers_slow_chain(pumps):
    """The fake server's multi-step mode (search, read three hits, answer; 0.3 s a reply), as
    `python -m tests.fake_openai --reads 3` serves it: Esc stops the chain at the next step."""
    with FakeOpenAI(model="fake", latency=0.3) as server:
        server.policy = functools.partial(citing_server_policy, reads=3)
        app = make_app(load_settings(model=server.model, base_url=server.url), session="s1", pick_session=False)

        async def body(pilot):  # type: ignore[no-untyped-def]
            await send(pilot, "pump maintenance schedule")  # 15 hits: search, read 3 of them, answer
            await until(pilot, lambda: any(i.line.startswith("reading ") for i in app.query(ActivityItem)))
            await pilot.press("escape")
            await settle(app, pilot)
            assert any(n.startswith("Interrupted.") for n in notices(app)), "\n".join(
                notices(app)[1:] + [i.line for i in app.query(ActivityItem)])
            assert not app.query(AnswerView)
            queue = app.workspace.agent.ctx.queue
            names = [c["function"]["name"] for m in queue for c in m.get("tool_calls") or []]
            assert names[0] == "archival_search" and "answer" not in names and 2 <= len(names) < 4
            assert queue[-1]["content"] == "[system] The user interrupted you. Stop and wait."
            # The next question is answered normally, from its own search.
            await send(pilot, "turbine flange bolts torque")
            await settle(app, pilot)
            assert app.query_one(AnswerView).result.citations[0].path == "turbine.txt"
            assert app.query_one(AnswerView).result.citations[0].verified

        drive(app, body)


def test_activity_lines_are_cut_between_words():
    from docmem.agent.describe import clip

    reason = "[1] 048d5bbc07e2-7: quote too short; re-read it with open_document(chunk_id='048d5bbc07e2-7') and copy"
    assert clip(reason, 80) == "[1] 048d5bbc07e2-7: quote too short; re-read it with…"
    assert clip("short", 80) == "short"


def test_no_default_corpus_names_the_ones_that_exist(settings, pumps_template):
    for name in ("alpha", "beta"):
        shutil.copytree(pumps_template, settings.corpora_dir / name)
    app = make_app(settings, processor=ScriptedProcessor(), session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        assert "or /corpus NAME to open one of: alpha, beta." in notices(app)[-1]

    drive(app, body)
    (settings.corpora_dir / "beta").rename(settings.corpora_dir / "gone")
    shutil.rmtree(settings.corpora_dir / "gone")
    only = make_app(settings, processor=ScriptedProcessor(), session="s2", pick_session=False)

    async def single(pilot):  # type: ignore[no-untyped-def]
        assert only.workspace.corpus_name == "alpha"  # the only corpus there is

    drive(only, single)


def test_escape_sequences_from_documents_and_the_model_never_reach_the_terminal(settings, tmp_path):
    """Textual writes a widget's text to the terminal as it is: an ESC in a passage, a note or
    a reply (clear screen, set the title, OSC 52 writes the clipboard) would run. Shown as '?'."""
    from docmem.store.corpus import open_corpus
    from ingest.pipeline import ingest

    hostile = "\x1b[2J\x1b]52;c;ZWNobyBwd25lZA==\x1b\\"
    root = tmp_path / "docs"
    root.mkdir()
    (root / "turbine.md").write_text(f"# Turbine {hostile}\n\nTorque the flange bolts {hostile} to 85 Nm.\n")
    with open_corpus(settings, create=True, embedder="none") as corpus:
        ingest(corpus, [root], workers=1)

    def policy(messages, tools):  # type: ignore[no-untyped-def]
        if not tools:
            return text("Summary.")
        result = last_tool_result(messages)
        if "flange" in result:
            chunk_id = re.search(r"chunk (\S+) \| turbine\.md", result).group(1)  # type: ignore[union-attr]
            return call("answer", text=f"Torque {hostile} to 85 Nm [1].",
                        citations=[{"chunk_id": chunk_id, "quote": "Torque the flange bolts"}])
        if not any(m.get("tool_calls") for m in current_turn(messages)[1]):
            return call("working_context_append", text=f"note {hostile}", request_heartbeat=True)
        return call("archival_search", query="flange bolts torque", request_heartbeat=True)

    app = make_app(settings, processor=ScriptedProcessor(policy=policy), session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, f"What torque? {hostile}")
        await settle(app, pilot)
        assert app.query_one(AnswerView).result.status == "answered"
        for item in app.query(ActivityItem):
            item.expanded = True
        await pilot.pause()
        assert "\x1b" not in app.export_screenshot()
        await pilot.press("ctrl+o")  # the cited passage at its source
        await pilot.pause()
        assert isinstance(app.screen, SourceScreen) and "flange" in app.screen.passage.text
        assert "\x1b" not in app.export_screenshot()

    drive(app, body)
