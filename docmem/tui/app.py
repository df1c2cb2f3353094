"""``docmem chat``: the Textual app. ``make_app`` builds it; tests inject a scripted LLM.

The agent runs in a thread worker and posts each step back with ``call_from_thread``;
widgets only render those steps. One thing happens at a time (opening a corpus, a turn of
the agent, an ingest): messages sent meanwhile are queued and run next, in order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Iterable

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Markdown, TabbedContent, TabPane

from docmem.agent.loop import CallStep, FinalStep, LLMStep, MemoryStep, MessageStep, Step
from docmem.agent.session import make_processor
from docmem.config import Settings
from docmem.errors import CorpusNotFound, DocmemError
from docmem.protocols import LLMError, Processor
from docmem.store.corpus import corpus_names
from docmem.tui import commands
from docmem.tui.corpus_actions import CorpusActions
from docmem.tui.runtime import Snapshot, Turn, Unconfigured, Workspace, new_session_name, saved_sessions
from docmem.tui.screens import NEW_SESSION, HelpScreen, SessionScreen, SourceScreen
from docmem.tui.widgets import (
    Activity, AgentText, AnswerView, Conversation, IngestBar, MemoryGauge, MemoryPane, Notice, Prompt,
    SourcesPane, StatusLine, UserMessage, plain,
)

log = logging.getLogger(__name__)


class ChatApp(CorpusActions, App[None]):
    TITLE = "docmem"
    CSS_PATH = "app.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("escape", "interrupt", "Interrupt"),
        Binding("ctrl+c", "interrupt_or_copy", "Interrupt", show=False, priority=True),
        Binding("ctrl+o", "open_source", "Open source"),
        Binding("ctrl+b", "toggle_panel", "Panel"),
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, settings: Settings, processor: Processor, *, session: str | None = None,
                 corpus: str | None = None, pick_session: bool = True, max_steps: int = 24,
                 llm_problem: str | None = None, theme: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.processor = processor
        self.session_name = session
        self.corpus_choice = corpus
        self.pick_session = pick_session
        self.max_steps = max_steps
        self.llm_problem = llm_problem
        if theme:
            self.theme = theme
        self.workspace: Workspace | None = None
        self.workspace_session: str | None = None  # kept after close, for "resume with ..."
        self.busy: str | None = "starting"  # starting | opening | agent | ingest | corpus
        self.pending: deque[tuple[str, UserMessage]] = deque()
        self.idle = threading.Event()  # no worker is using the workspace
        self.idle.set()
        self.selected: AnswerView | None = None
        self._stream: AgentText | None = None
        self._stream_writer = None
        self._streamed = ""
        self._last_streamed = ""
        self._answers = 0
        self._flushed = self._flush_passes = 0

    # -- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield Conversation(id="conversation")
            with TabbedContent(id="side", initial="tab-activity"):
                with TabPane("Activity", id="tab-activity"):
                    yield Activity(id="activity")
                with TabPane("Sources", id="tab-sources"):
                    yield SourcesPane(id="sources")
                with TabPane("Memory", id="tab-memory"):
                    yield MemoryPane(id="memory")
        yield MemoryGauge(id="gauge")
        yield IngestBar(id="ingest")
        yield StatusLine(id="status")
        yield Prompt(id="prompt")
        yield Footer()

    @property
    def conversation(self) -> Conversation:
        return self.query_one("#conversation", Conversation)

    @property
    def activity(self) -> Activity:
        return self.query_one("#activity", Activity)

    @property
    def gauge(self) -> MemoryGauge:
        return self.query_one("#gauge", MemoryGauge)

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()
        self.sub_title = "starting"
        if self.llm_problem:
            self.notice(f"{self.llm_problem}. You can browse corpora, ingest and read sources; "
                        "questions need an LLM.", "warning")
        if self.session_name is None and self.pick_session:
            sessions = saved_sessions(self.settings)
            if sessions:
                self.busy = None  # waiting for the person, not for work
                self.status.text = "pick a session"
                self.push_screen(SessionScreen(sessions), self._session_chosen)
                return
        self.start(self.session_name or new_session_name())

    def _session_chosen(self, choice: str | None) -> None:
        self.start(new_session_name() if choice in (None, NEW_SESSION) else choice)

    def start(self, session: str) -> None:
        self.workspace = Workspace(self.settings, self.processor, session, corpus=self.corpus_choice,
                                   max_steps=self.max_steps)
        self.workspace.on_text = self._text_from_thread
        self.workspace_session = session
        self._begin("opening", f"opening corpus '{self.workspace.corpus_name}'")
        self._open()

    # -- state ------------------------------------------------------------------------

    def _begin(self, what: str, status: str) -> None:
        self.busy = what
        self.idle.clear()
        self.status.busy = True
        self.status.text = status

    def _end(self) -> None:
        self.busy = None
        self.status.busy = False
        waiting = f" · {len(self.pending)} queued" if self.pending else ""
        self.status.text = f"ready{waiting}"
        self._refresh_title()
        while self.pending and not self.busy:  # the next queued message is the next event
            text, widget = self.pending.popleft()
            widget.unqueue()
            self._turn(text)

    def _refresh_title(self) -> None:
        ws = self.workspace
        if ws is None:
            return
        label = ws.corpus_label()
        corpus = str(label) if label else f"no corpus '{ws.corpus_name}'"
        self.sub_title = f"{corpus} · session {ws.session}"

    def notice(self, text: str, severity: str = "information") -> None:
        self.conversation.add(Notice(text, severity))

    # -- opening the workspace --------------------------------------------------------------

    @work(thread=True, group="workspace", exit_on_error=False)
    def _open(self, name: str | None = None) -> None:
        ws = self.workspace
        assert ws is not None
        history: list[Turn] = []
        problem: tuple[str, str] | None = None
        try:
            try:
                ws.open(name)
                history = ws.history()
            except CorpusNotFound:
                others = corpus_names(self.settings)
                pick = f"/corpus NAME to open one of: {', '.join(others)}" if others else "/corpus to pick another"
                problem = (f"No corpus '{ws.corpus_name}' yet. Type /ingest PATH to create it from a folder, "
                           f"or {pick}.", "warning")
            except DocmemError as exc:
                problem = (str(exc), "error")
            except Exception as exc:  # a bug: keep the app, say where the details are
                log.exception("opening the workspace failed")
                problem = (f"Could not open the corpus: {type(exc).__name__}: {exc}", "error")
            snapshot = ws.snapshot() if problem is None else None
            self._post(self._opened, history, snapshot, problem)
        finally:
            self._worker_done()

    def _opened(self, history: list[Turn], snapshot: Snapshot | None, problem: tuple[str, str] | None) -> None:
        if problem:
            self.notice(*problem)
        for turn in history:
            if turn.kind == "user":
                self.conversation.add(UserMessage(turn.text))
            elif turn.kind == "answer" and turn.result is not None:
                self._add_answer(turn.result)
            elif turn.kind == "message":
                self.conversation.add(AgentText(turn.text))
            else:
                self.notice(turn.text)
        ws = self.workspace
        if history and ws is not None:
            self.notice(f"Resumed session '{ws.session}': {len(history)} earlier messages above.")
        elif problem is None and ws is not None and ws.corpus is not None:
            label = ws.corpus_label()
            self.notice(f"Ask anything about corpus {label}. The agent pages through it and cites what it "
                        "finds; Ctrl+O opens a citation at its source. /help lists commands; "
                        "Ctrl+B shows or hides the side panel.")
        self._show_memory(snapshot)

    def _worker_done(self) -> None:
        """The last thing a worker does (in its thread): mark idle, then let the UI move on."""
        self.idle.set()
        self._post(self._end)

    def _post(self, callback, *args) -> None:  # type: ignore[no-untyped-def]
        """call_from_thread that tolerates an app already gone (the worker just ends)."""
        try:
            self.call_from_thread(callback, *args)
        except Exception:  # the app is closing, or a widget vanished
            log.debug("dropped a UI update", exc_info=True)

    # -- sending ----------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        """Typing anywhere on the chat screen types into the prompt."""
        if (self.screen is self.main_screen and event.is_printable and event.character
                and not isinstance(self.focused, Input)):
            prompt = self.query_one("#prompt", Input)
            prompt.focus()
            prompt.insert_text_at_cursor(event.character)
            event.stop()

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.clear()
        if not text:
            return
        self.query_one("#prompt", Prompt).remember(text)
        slash = commands.parse(text)
        if slash is not None:
            self.run_slash(slash)
            return
        text = text[1:] if text.startswith("//") else text
        self.main_screen.remove_class("-panel")  # narrow terminals: back to the conversation
        if self.busy or self.pending:
            widget = UserMessage(text, queued=True)
            self.conversation.add(widget)
            self.pending.append((text, widget))
            self.status.text = self.status.text.split(" · ")[0] + f" · {len(self.pending)} queued"
            return
        self.conversation.add(UserMessage(text))
        self._turn(text)

    def _turn(self, text: str) -> None:
        ws = self.workspace
        if ws is None or ws.agent is None:
            self.notice("No corpus is open: /ingest PATH creates one, /corpus picks one.", "warning")
            return
        self._begin("agent", "thinking…")
        self.activity.question(text)
        self._run_agent(text)

    @work(thread=True, group="agent", exit_on_error=False)
    def _run_agent(self, text: str) -> None:
        ws = self.workspace
        assert ws is not None and ws.agent is not None
        try:
            for step in ws.agent.run(text, chat=True):
                snapshot = ws.snapshot() if not isinstance(step, MessageStep) else None
                self._post(self._on_step, step, snapshot)
        except Exception as exc:  # a bug, or the store failed: the conversation stays
            log.exception("the agent failed")
            self._post(self.notice, f"The agent stopped on an internal error ({type(exc).__name__}: {exc}). "
                                    "The conversation is kept; you can ask again.", "error")
        finally:
            self._worker_done()

    def _text_from_thread(self, delta: str) -> None:
        self._post(self._on_text, delta)

    async def _on_text(self, delta: str) -> None:
        if self._stream is None:
            self._stream = AgentText()
            self.conversation.add(self._stream)
            self._stream_writer = Markdown.get_stream(self._stream)
            self._streamed = ""
        self._streamed += delta
        await self._stream_writer.write(plain(delta))  # type: ignore[union-attr]

    async def _close_stream(self) -> str:
        text = ""
        if self._stream_writer is not None:
            await self._stream_writer.stop()
            text = self._streamed.strip()
            assert self._stream is not None
            self._stream.text = text
        self._stream = self._stream_writer = None
        self._streamed = ""
        return text

    async def _on_step(self, step: Step, snapshot: Snapshot | None) -> None:
        item = self.activity.step(step)
        if isinstance(step, LLMStep):
            self._last_streamed = await self._close_stream()
        elif isinstance(step, FinalStep):  # a call that failed mid-stream ends here
            await self._close_stream()
        if item is not None and not isinstance(step, FinalStep):
            self.status.text = item.line
        self._show_memory(snapshot)
        if isinstance(step, MemoryStep):
            if step.kind == "flush":
                self.gauge.flush(step)
                self._flush_notice(step)
                self.notify(step.detail, title="Memory flush", severity="warning", markup=False)
            else:
                self.gauge.warning(step)
        elif isinstance(step, CallStep) and step.ok and step.name == "send_message":
            self.conversation.add(AgentText(str((step.arguments or {}).get("text", ""))))
        elif isinstance(step, MessageStep):
            if step.text and step.text != self._last_streamed:
                self.conversation.add(AgentText(step.text))
        elif isinstance(step, FinalStep):
            self._final(step)

    def _flush_notice(self, step: MemoryStep) -> None:
        """One notice per flush, however many eviction passes it took."""
        reason = step.detail.split(": evicted")[0]
        last = self.conversation.last()
        if isinstance(last, Notice) and last.has_class("-flush") and last.text.startswith(f"Memory flush ({reason})"):
            self._flushed += step.evicted
            passes = f" in {self._flush_passes + 1} passes"
            self._flush_passes += 1
        else:
            self._flushed, self._flush_passes, passes = step.evicted, 1, ""
            last = self.conversation.add(Notice("", "flush"))
        assert isinstance(last, Notice)
        last.text = (f"Memory flush ({reason}): the {self._flushed} oldest queued messages were summarized "
                     f"away{passes}. A new summary heads the queue; {step.hidden} messages are now in recall "
                     "only (conversation_search still finds them).")
        last.update(Text(last.text))

    def _final(self, step: FinalStep) -> None:
        result = step.result
        self._last_streamed = ""
        if result.status in ("answered", "abstained"):
            view = self._add_answer(result)
            self.select(view)
        elif result.status == "error":
            self.notice(f"⚠ {(result.error or 'error').rstrip('.')}. The conversation is kept; "
                        "send again to retry.", "error")
            self.notify(result.error or "error", title="The agent stopped", severity="error", markup=False)
        elif result.status == "interrupted":
            self.notice("Interrupted. The agent was told, and waits for your next message.", "warning")
        elif result.status == "unverified":
            self.notice("⚠ unverified: this reply cites no verified passage. Ask again for a cited answer.",
                        "warning")
        elif result.status == "yielded" and not result.answer and not isinstance(
                self.conversation.last(), AgentText):
            self.notice("(The agent is waiting for your next message.)")

    def _add_answer(self, result) -> AnswerView:  # type: ignore[no-untyped-def]
        self._answers += 1
        view = AnswerView(result, self._answers)
        self.conversation.add(view)
        self.select(view)
        return view

    def _show_memory(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.gauge.snapshot = snapshot
            self.query_one("#memory", MemoryPane).show(snapshot)

    # -- answers and sources ------------------------------------------------------------------

    def select(self, view: AnswerView | None) -> None:
        if self.selected is not None and self.selected is not view:
            self.selected.remove_class("-selected")
        self.selected = view
        if view is not None:
            view.add_class("-selected")
        self.query_one("#sources", SourcesPane).show(view)

    @on(AnswerView.Selected)
    def _answer_selected(self, event: AnswerView.Selected) -> None:
        self.select(event.view)

    @on(AnswerView.CitationClicked)
    def _citation_clicked(self, event: AnswerView.CitationClicked) -> None:
        self.select(event.view)
        self.open_citation(event.index)

    @on(SourcesPane.Open)
    def _source_chosen(self, event: SourcesPane.Open) -> None:
        self.open_citation(event.index)

    def open_citation(self, index: int) -> None:
        view = self.selected
        ws = self.workspace
        if view is None or not view.result.citations:
            self.notify("No answer with citations is selected.", severity="warning")
            return
        if ws is None or ws.corpus is None:
            self.notify("No corpus is open.", severity="warning")
            return
        scope = ws.agent.state.notes_scope if ws.agent is not None else None
        self.push_screen(SourceScreen(ws.corpus, view.result.citations,
                                      max(1, min(index, len(view.result.citations))), notes_scope=scope))

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The chat's own keys act (and show in the footer) only on the chat screen."""
        if action in ("open_source", "toggle_panel", "interrupt") and self.screen is not self.main_screen:
            return False
        return True

    def action_open_source(self) -> None:
        if self.selected is None:
            answers = self.conversation.answers()
            self.select(answers[-1] if answers else None)
        self.open_citation(1)

    def action_interrupt(self) -> None:
        ws = self.workspace
        if self.busy == "agent" and ws is not None and ws.agent is not None:
            ws.agent.interrupt.set()
            self.status.text = "interrupting at the next step…"
            self.activity.note("interrupt requested (Esc)", "warning")
        elif self.busy:
            self.notify(f"Busy {self.busy}: it cannot be interrupted.", severity="warning", timeout=2)

    def action_interrupt_or_copy(self) -> None:
        if self.busy == "agent":
            self.action_interrupt()
            return
        focused = self.focused
        if isinstance(focused, Input) and focused.selected_text:
            focused.action_copy()
        elif self.screen.get_selected_text():
            self.screen.action_copy_text()
        else:
            self.notify("Nothing to interrupt. Ctrl+Q quits (the session is saved).", timeout=3)

    @property
    def main_screen(self) -> Screen:
        return self.screen_stack[0]

    def action_toggle_panel(self) -> None:
        main = self.main_screen
        if main.has_class("-narrow"):
            main.toggle_class("-panel")
        else:
            main.toggle_class("-panel-hidden")

    def show_tab(self, tab: str) -> None:
        main = self.main_screen
        main.remove_class("-panel-hidden")
        if main.has_class("-narrow"):
            main.add_class("-panel")
        self.query_one("#side", TabbedContent).active = tab

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        ws = self.workspace
        if ws is not None and ws.agent is not None:
            ws.agent.interrupt.set()
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Open source", "Open the first citation of the selected answer", self.action_open_source)
        yield SystemCommand("Sources", "Show the citations of the selected answer",
                            lambda: self.run_slash(commands.Slash("sources", "")))
        yield SystemCommand("Memory", "Show the main context, working context and summary",
                            lambda: self.show_tab("tab-memory"))
        yield SystemCommand("Activity", "Show the agent's steps", lambda: self.show_tab("tab-activity"))
        yield SystemCommand("Corpus", "Switch corpus, or ingest a folder", self._corpus_dialog)
        yield SystemCommand("Interrupt", "Stop the agent at the next step", self.action_interrupt)
        yield SystemCommand("Save session", "Save the session now", lambda: self.run_slash(commands.Slash("save", "")))
        yield SystemCommand("Clear", "Clear the screen (memory keeps everything)",
                            lambda: self.run_slash(commands.Slash("clear", "")))
        yield SystemCommand("Help", "Commands and keys", self.action_help)

    # -- slash commands ------------------------------------------------------------------------

    def run_slash(self, slash: commands.Slash) -> None:
        name, arg = slash.name, slash.argument
        if name == "help":
            self.action_help()
        elif name in ("exit", "quit"):
            self.run_action("quit")
        elif name == "save":
            self._save()
        elif name == "memory":
            self.show_tab("tab-memory")
        elif name == "sources":
            self.show_tab("tab-sources")
            self.query_one("#sources-list").focus()
        elif name == "activity":
            self.show_tab("tab-activity")
        elif name == "clear":
            self.conversation.remove_children()
            self.activity.remove_children()
            self.select(None)
            self._answers = 0
            self.notify("Screen cleared; the session's memory and recall are unchanged.", timeout=3)
        elif name == "corpus":
            if arg:
                self.switch_corpus(arg)
            else:
                self._corpus_dialog()
        elif name == "ingest":
            if not arg:
                self.notice("Usage: /ingest PATH (a folder or a file)", "warning")
            else:
                self.start_ingest(arg)
        else:
            self.notice(f"Unknown command /{name}: /help lists them.", "warning")

    # -- shutting down ---------------------------------------------------------------------------

    def close_workspace(self, timeout: float = 30.0) -> None:
        """After the app has exited: let a running step end, then save and close everything."""
        ws = self.workspace
        if ws is None:
            return
        if ws.agent is not None:
            ws.agent.interrupt.set()
        if self.idle.wait(timeout) and not ws.close():
            self.workspace_session = None  # nothing was asked: nothing to resume
        self.workspace = None


def make_app(settings: Settings, *, processor: Processor | None = None, session: str | None = None,
             corpus: str | None = None, pick_session: bool = True, max_steps: int = 24,
             theme: str | None = None) -> ChatApp:
    """The chat app. ``processor`` defaults to the configured OpenAI-compatible LLM; when none
    is configured the app still opens and says what to set."""
    problem = None
    if processor is None:
        try:
            processor = make_processor(settings)
        except LLMError as exc:
            processor, problem = Unconfigured(exc), str(exc)
    return ChatApp(settings, processor, session=session, corpus=corpus, pick_session=pick_session,
                   max_steps=max_steps, llm_problem=problem, theme=theme)
