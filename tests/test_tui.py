"""``docmem chat``: Textual pilot tests of real flows, with a scripted LLM (and one real client).

Every test drives the app as a person would (type, Enter, Esc, Ctrl+O, slash commands) and
waits for observable transitions (workers finished, the app idle), never for time.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from textual.command import CommandList

from docmem.config import load_settings
from docmem.llm.scripted import ScriptedProcessor, call, text
from docmem.protocols import LLMError
from docmem.tui import ChatApp, make_app
from docmem.tui.passages import find_quote, merge
from docmem.tui.screens import SourceScreen
from docmem.tui.widgets import ActivityItem, AgentText, AnswerView, MemoryGauge, Notice, UserMessage
from tests.agent_helpers import build_corpus, current_turn, last_tool_result, quotable

PUMPS = {f"pump{i:02d}.txt": f"Pump {i}\n\nMaintenance schedule: the maintenance schedule of pump {i} "
         f"is weekly maintenance." for i in range(14)}
TURBINE = ("Turbine notes\n\nThe turbine has a maintenance schedule too. During the yearly service, torque the "
           "flange bolts to 85 Nm and replace both gaskets, then run the turbine for an hour and log "
           "vibration, temperature and noise levels.")
QUESTION = "What torque do the turbine flange bolts need?"


def paging_policy(messages: list[dict[str, Any]], tools: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """Page through "maintenance schedule" until the turbine passage shows up, then cite it."""
    if not tools:
        return text("Summary: the user asked about maintenance; searches were paged.")
    result = last_tool_result(messages)
    if "torque the flange" in result:
        chunk_id = re.search(r"chunk (\S+) \| turbine\.txt", result).group(1)  # type: ignore[union-attr]
        return call("answer", text="Torque the flange bolts to **85 Nm** [1].",
                    citations=[{"chunk_id": chunk_id, "quote": "TORQUE the flange\n bolts to 85 Nm"}])
    pages = re.findall(r"\(page (\d+) of", result)
    return call("archival_search", query="maintenance schedule", page=int(pages[0]) + 1 if pages else 1,
                request_heartbeat=True)


@pytest.fixture(scope="module")
def pumps_template(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Ingested once per module; each test gets a copy of the corpus folder (much faster)."""
    home = tmp_path_factory.mktemp("template")
    build_corpus(load_settings(home=str(home)), home / "docs", {**PUMPS, "turbine.txt": TURBINE})
    return home / "corpora" / "default"


@pytest.fixture
def pumps(settings, pumps_template):  # type: ignore[no-untyped-def]
    shutil.copytree(pumps_template, settings.corpora_dir / "default")
    return settings


def drive(app: ChatApp, body: Callable[[Any], Awaitable[None]], size: tuple[int, int] = (120, 40)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await body(pilot)
    try:
        asyncio.run(main())
    finally:
        app.close_workspace(timeout=10)


async def settle(app: ChatApp, pilot: Any, timeout: float = 20) -> None:
    """Until the app is idle: no worker running, nothing queued, nothing being opened."""
    deadline = time.monotonic() + timeout
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.busy is None and not app.pending and not any(w.is_running for w in app.workers):
            return
        assert time.monotonic() < deadline, f"the app stayed busy ({app.busy})"


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 10) -> None:
    """Process events until ``condition`` holds (for transitions no worker signals)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await pilot.pause()


async def send(pilot: Any, message: str) -> None:
    pilot.app.query_one("#prompt").value = message
    await pilot.press("enter")


def notices(app: ChatApp) -> list[str]:
    return [n.text for n in app.query(Notice)]


# -- ask, see the answer, its sources, the agent's steps and the gauge --------------------------


def test_question_gets_answer_sources_activity_and_gauge(pumps):
    llm = ScriptedProcessor(policy=paging_policy)
    app = make_app(pumps, processor=llm, session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        assert "Ask anything about corpus default · 15 files · 15 chunks" in notices(app)[0]
        await send(pilot, QUESTION)
        await settle(app, pilot)
        assert [m.text for m in app.query(UserMessage)] == [QUESTION]
        answer = app.query_one(AnswerView)
        assert answer.result.status == "answered" and answer.result.citations[0].verified
        assert "1/1 citations verified" in answer.border_title
        assert "[\\[1\\]](cite:1)" in answer.query_one("Markdown").source  # the marker is a link
        assert app.selected is answer
        sources = app.query_one("#sources-list")
        assert sources.option_count == 1 and "turbine.txt" in str(sources.get_option_at_index(0).prompt)
        lines = [i.line for i in app.query(ActivityItem)]
        assert 'searching "maintenance schedule" — page 3 of 3, 15 results, 5 new' in lines
        assert lines[-1].startswith("answered after 4 steps")
        gauge = app.query_one(MemoryGauge)
        assert gauge.snapshot.recall_events > 0 and gauge.snapshot.archival_points == 15
        assert "tokens" in str(gauge.render()) and "│70%" in str(gauge.render())
        assert app.status.text == "ready"
        # Expanding a step shows the full call and result.
        search = next(i for i in app.query(ActivityItem) if "page 3 of 3" in i.line)
        search.focus()
        await pilot.press("enter")
        assert search.expanded and '"page": 3' in str(search.render()) and "torque the flange" in str(search.render())
        await pilot.press("o", "k")  # typing anywhere goes to the prompt
        assert app.focused.id == "prompt" and app.focused.value == "ok"
        await pilot.press("up")  # and Up recalls what was sent
        assert app.focused.value == QUESTION
        # The model was sent the question, then each page it asked for.
        assert llm.history[0][0][-1]["content"] == QUESTION

    drive(app, body)


def test_narrow_terminal_hides_the_panel_until_asked(pumps):
    app = make_app(pumps, processor=ScriptedProcessor(policy=paging_policy), session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        side, conversation = app.query_one("#side"), app.query_one("#conversation")
        assert not side.display or side.region.width == 0
        await send(pilot, QUESTION)
        await settle(app, pilot)
        assert app.query_one(AnswerView).region.width > 60  # the conversation has the width
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert side.region.width == 80 and conversation.region.width == 0
        await send(pilot, "/memory")
        assert app.query_one("#side").active == "tab-memory"
        # Textual's command palette carries the chat's commands too.
        await pilot.press("ctrl+p")
        await pilot.press(*"Activity")
        await until(pilot, lambda: any("Activity" in str(o.prompt) for o in app.screen.query_one(CommandList).options))
        await pilot.press("enter")
        await pilot.pause()
        assert app.query_one("#side").active == "tab-activity"

    drive(app, body, size=(80, 24))


# -- a citation at its source ----------------------------------------------------------------------


def make_pdf(path: Path, pages: list[list[str]]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for lines in pages:
        for n, line in enumerate(lines):
            pdf.drawString(72, 800 - 16 * n, line)
        pdf.showPage()
    pdf.save()


def test_citation_opens_highlighted_in_its_page_and_reads_on(tmp_path):
    settings = load_settings(chunk_tokens=20, chunk_overlap=4)  # several chunks per page
    root = tmp_path / "manual"
    root.mkdir()
    make_pdf(root / "manual.pdf", [
        ["Chapter 1: Installation", "Unpack the device and place it on a flat surface."],
        ["Chapter 2: Calibration", "Hold the reset button for five seconds to calibrate", "the sensor array."],
        ["Chapter 3: Cleaning", "Wipe the lens with a dry cloth once a month."],
    ])
    (root / "notes.md").write_text("# Notes\n\nThe calibration takes about a minute.\n", encoding="utf-8")
    from docmem.store.corpus import open_corpus
    from ingest.pipeline import ingest

    with open_corpus(settings, create=True, embedder="none") as corpus:
        ingest(corpus, [root], workers=1)

    def cite(messages, tools):  # type: ignore[no-untyped-def]
        result = last_tool_result(messages)
        pdf = re.search(r"chunk (\S+) \| manual\.pdf p\.2\b(?!-)", result).group(1)  # type: ignore[union-attr]
        md = re.search(r"chunk (\S+) \| notes\.md", result).group(1)  # type: ignore[union-attr]
        return call("answer", text="Hold reset for five seconds [1]; it takes a minute [2].", citations=[
            {"chunk_id": pdf, "quote": "hold the reset button for five seconds to calibrate the sensor"},
            {"chunk_id": md, "quote": "takes about a minute"}])

    llm = ScriptedProcessor(call("archival_search", query="calibration", request_heartbeat=True), cite)
    app = make_app(settings, processor=llm, session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, "How do I calibrate it?")
        await settle(app, pilot)
        await pilot.press("ctrl+o")  # one keystroke: the first citation at its source
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SourceScreen)
        passage = screen.passage
        assert passage.label == "page 2 of 3" and passage.path == "manual.pdf"
        start, end = passage.quote
        assert " ".join(passage.text[start:end].split()).lower() == \
            "hold the reset button for five seconds to calibrate the sensor"
        assert "Chapter 1" not in passage.text
        await pilot.press("n")
        assert screen.passage.label == "page 3 of 3" and "Wipe the lens" in screen.passage.text
        assert screen.passage.quote is None and not screen.passage.has_next
        await pilot.press("n")  # past the last page: a notice, the page stays
        assert screen.passage.label == "page 3 of 3"
        await pilot.press("p", "p")
        assert screen.passage.label == "page 1 of 3" and "Unpack the device" in screen.passage.text
        await pilot.press("right_square_bracket")  # the next citation: a section of a Markdown file
        assert screen.index == 2 and screen.passage.path == "notes.md"
        start, end = screen.passage.quote
        assert screen.passage.text[start:end] == "takes about a minute"
        await pilot.press("escape")
        assert not isinstance(app.screen, SourceScreen)
        # Clicking a [2] marker in the answer (a link) opens that citation too.
        view = app.query_one(AnswerView)
        view.post_message(AnswerView.CitationClicked(view, 2))
        await pilot.pause()
        assert isinstance(app.screen, SourceScreen) and app.screen.index == 2

    drive(app, body)


def test_find_quote_and_merge_follow_the_verifier():
    text = "The Quick brown fox jumps over the lazy dog. The quick brown fox sleeps."
    assert find_quote(text, "quick  BROWN fox") == (4, 19)
    assert find_quote(text, "quick brown fox", near=(40, 70)) == (49, 64)  # the cited chunk's one
    assert find_quote("a long ex-\nample of text here", "a long example of text") == (0, 24)
    # Quote marks at the ends are dropped, as the verifier drops them.
    assert find_quote("“Curly” quotes — and dashes", '"curly" quotes - and') == (1, 20)
    assert find_quote("nothing alike here", "completely different words") is None
    from docmem.schema import Chunk

    doc = "one two three four five six seven"
    chunks = [Chunk("h", 1, doc[8:23], "a.txt", "A", char_start=8, char_end=23),
              Chunk("h", 0, doc[0:13], "a.txt", "A", char_start=0, char_end=13)]
    merged, spans = merge(chunks)
    assert merged == doc[:23] and spans == {0: (0, 13), 1: (8, 23)}


# -- interrupt, and messages sent while the agent works ------------------------------------------


def test_escape_interrupts_a_long_chain_and_queued_message_runs_next(pumps):
    reached, release = threading.Event(), threading.Event()
    pages = iter(range(1, 1000))

    def endless(messages, tools):  # type: ignore[no-untyped-def]
        page = next(pages)
        if page == 3:
            reached.set()
            assert release.wait(10)
        return call("archival_search", query=f"maintenance schedule {page}", request_heartbeat=True)

    llm = ScriptedProcessor(policy=endless)
    app = make_app(pumps, processor=llm, session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, "Search forever, please.")
        assert await asyncio.to_thread(reached.wait, 10)
        assert app.busy == "agent" and app.status.busy
        await send(pilot, "Actually, what about the turbine?")  # sent while the agent works
        queued = app.query(UserMessage)[-1]
        assert queued.has_class("-queued") and list(app.pending)[0][0] == "Actually, what about the turbine?"
        llm.policy = None
        llm.enqueue(text("The turbine needs 85 Nm."))  # the reply to the queued message
        await pilot.press("escape")
        release.set()
        await settle(app, pilot)
        assert any(n.startswith("Interrupted.") for n in notices(app))
        assert any(i.line == "interrupt requested (Esc)" for i in app.query(ActivityItem))
        # The agent was told, then the queued message ran as the next event.
        sent = llm.history[-1][0]
        assert sent[-1] == {"role": "user", "content": "Actually, what about the turbine?"}
        assert sent[-2]["content"] == "[system] The user interrupted you. Stop and wait."
        assert len(llm.history) == 4  # the interrupted chain stopped at the step boundary
        assert not queued.has_class("-queued")
        assert app.query(AgentText)[-1].text == "The turbine needs 85 Nm."
        # The session stayed consistent: every function call in the queue has its result.
        queue = app.workspace.agent.ctx.queue
        calls = {c["id"] for m in queue for c in m.get("tool_calls") or []}
        assert calls == {m["tool_call_id"] for m in queue if m["role"] == "tool"}

    drive(app, body)


def test_a_message_sent_while_the_agent_works_gets_its_answer_under_it(pumps):
    reached, release = threading.Event(), threading.Event()

    def policy(messages, tools):  # type: ignore[no-untyped-def]
        if not tools:
            return text("Summary.")
        question, turn = current_turn(messages)
        if not any(m["role"] == "tool" for m in turn):
            if "turbine" not in question:  # hold the first question until the second is queued
                reached.set()
                assert release.wait(10)
            return call("archival_search", query=question, request_heartbeat=True)
        chunk_id, where, passage = re.search(r"\[1\] chunk (\S+) \| (\S+)[^\n]*\n([^\n]+)",
                                             last_tool_result(messages)).groups()  # type: ignore[union-attr]
        quote = quotable(passage)
        return call("answer", text=f"From {where}: {quote} [1]", citations=[{"chunk_id": chunk_id, "quote": quote}])

    app = make_app(pumps, processor=ScriptedProcessor(policy=policy), session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, "pump 3 maintenance schedule")
        assert await asyncio.to_thread(reached.wait, 10)
        await send(pilot, "turbine flange bolts torque")  # while the agent works: queued
        release.set()
        await settle(app, pilot)
        shown = [("you", w.text) if isinstance(w, UserMessage) else ("answer", w.result.citations[0].path)
                 for w in app.conversation.children if isinstance(w, (UserMessage, AnswerView))]
        assert shown == [("you", "pump 3 maintenance schedule"), ("answer", "pump03.txt"),
                         ("you", "turbine flange bolts torque"), ("answer", "turbine.txt")]
        assert all(a.result.citations[0].verified for a in app.query(AnswerView))

    drive(app, body)


# -- memory pressure -------------------------------------------------------------------------------


def test_a_flush_shows_in_the_gauge_and_the_memory_pane(tmp_path):
    settings = load_settings(context_window=3500)
    build_corpus(settings, tmp_path / "docs", {f"log{i}.txt": f"Log {i}\n\n" + ("Routine entry. " * 60)
                                               for i in range(8)})
    pages = iter(range(1, 100))

    def policy(messages, tools):  # type: ignore[no-untyped-def]
        if not tools:
            return text("Summary: routine log entries were searched page by page.")
        if any(m["role"] == "user" and "[memory]" in (m["content"] or "") for m in messages):
            return text("Done searching.")
        return call("archival_search", query=f"routine entry log {next(pages)}", request_heartbeat=True)

    app = make_app(settings, processor=ScriptedProcessor(policy=policy), session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, "Read all the logs.")
        await settle(app, pilot)
        gauge = app.query_one(MemoryGauge)
        assert gauge.flushes >= 1 and "flush" in str(gauge.render())
        assert gauge.snapshot.hidden > 0 and f"{gauge.snapshot.hidden} hidden" in str(gauge.render())
        assert any(n.startswith("Memory flush (main context full") for n in notices(app))
        lines = [i.line for i in app.query(ActivityItem)]
        assert any(re.match(r"memory: main context \d+% full$", line) for line in lines)  # the 70% warning
        assert any(line.startswith("memory: main context full") and "evicted" in line for line in lines)
        await send(pilot, "/memory")
        summary = app.query_one("#memory-summary")
        assert "routine log entries were searched" in str(summary.render())
        assert app.query_one("#side").active == "tab-memory"

    drive(app, body)


# -- errors are notices, the conversation is kept -------------------------------------------------


def test_llm_errors_are_notices_and_the_conversation_is_kept(pumps):
    llm = ScriptedProcessor(LLMError("the LLM server is rate limiting (429) and did not recover after 4 "
                                     "retries; try again later"))
    app = make_app(pumps, processor=llm, session="s1", pick_session=False)

    async def body(pilot):  # type: ignore[no-untyped-def]
        await send(pilot, "First question?")
        await settle(app, pilot)
        assert any("rate limiting (429)" in n and "conversation is kept" in n for n in notices(app))
        llm.policy = paging_policy
        await send(pilot, QUESTION)
        await settle(app, pilot)
        assert [m.text for m in app.query(UserMessage)] == ["First question?", QUESTION]
        assert app.query_one(AnswerView).result.status == "answered"
        # The failed question is still in the agent's memory.
        assert any(m.get("content") == "First question?" for m in llm.history[-1][0])
        # A bug (not an LLM error) is a notice too, never a crash.
        llm.enqueue(RuntimeError("boom"))
        await send(pilot, "Third?")
        await settle(app, pilot)
        assert "internal error (RuntimeError: boom)" in notices(app)[-1]
        assert app.is_running and app.busy is None

    drive(app, body)


def test_no_llm_configured_opens_and_says_what_to_set(pumps):
    app = make_app(pumps, session="s1", pick_session=False)  # nothing configured in this env

    async def body(pilot):  # type: ignore[no-untyped-def]
        assert "No LLM configured" in notices(app)[0]
        await send(pilot, "Anything?")
        await settle(app, pilot)
        assert "No LLM configured" in notices(app)[-1] and "--model" in notices(app)[-1]
        assert [m.text for m in app.query(UserMessage)] == ["Anything?"]

    drive(app, body)


# -- sessions ------------------------------------------------------------------------------------
