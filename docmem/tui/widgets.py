"""The chat's widgets. They render agent events and snapshots; none of them calls the LLM."""

from __future__ import annotations

import json
import re
import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Label, Markdown, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from docmem.agent.describe import clip, describe
from docmem.display import printable
from docmem.agent.functions import CitationResult
from docmem.agent.loop import WARN_AT, AnswerResult, CallStep, FinalStep, LLMStep, MemoryStep, MessageStep, Step
from docmem.tui.runtime import Snapshot

_MARKER = re.compile(r"\[(\d{1,3})\](?!\()")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def plain(text: object) -> str:
    """Document, note or model text for a widget. Textual writes a widget's text to the terminal
    as it is, so an ESC sequence in a passage or a reply (clear the screen, set the title, OSC 52:
    write the clipboard) would run; control characters show as '?' (newlines and tabs stay)."""
    return printable(str(text), lines=True)


def where(c: CitationResult) -> str:
    return printable(c.path or "?") + (f" p.{c.page}" if c.page is not None else "")


def answer_markdown(result: AnswerResult) -> str:
    """The answer with its [n] markers as links (cite:n), then its sources, one line each."""
    n = len(result.citations)

    def link(m: re.Match[str]) -> str:
        k = int(m.group(1))
        return f"[\\[{k}\\]](cite:{k})" if 1 <= k <= n else m.group(0)

    lines = [_MARKER.sub(link, plain(result.answer.strip()))]
    if result.citations:
        lines.append("")
        for k, c in enumerate(result.citations, start=1):
            mark = "✓" if c.verified else "✗"
            lines.append(f"- [\\[{k}\\]](cite:{k}) {mark} `{where(c)}`")
    return "\n".join(lines)


# -- conversation ------------------------------------------------------------------------------


class UserMessage(Static):
    def __init__(self, text: str, queued: bool = False) -> None:
        super().__init__(Text(plain(text)), classes="user" + (" -queued" if queued else ""))
        self.text = text
        self.border_title = "you" + (" · queued" if queued else "")

    def unqueue(self) -> None:
        self.remove_class("-queued")
        self.border_title = "you"


class AgentText(Markdown):
    """Text from the agent that is not a final answer (streamed text, send_message)."""

    def __init__(self, text: str = "") -> None:
        super().__init__(plain(text), classes="agent-text", open_links=False)
        self.border_title = "docmem"
        self.text = text


class Notice(Static):
    def __init__(self, text: str, severity: str = "information") -> None:
        super().__init__(Text(plain(text)), classes=f"notice -{severity}")
        self.text = text


class AnswerView(Vertical, can_focus=True):
    """A final answer; focus (or click) selects it, and the sources pane shows its citations."""

    class Selected(Message):
        def __init__(self, view: AnswerView) -> None:
            super().__init__()
            self.view = view

    class CitationClicked(Message):
        def __init__(self, view: AnswerView, index: int) -> None:
            super().__init__()
            self.view = view
            self.index = index

    def __init__(self, result: AnswerResult, number: int) -> None:
        super().__init__(classes="answer")
        self.result = result
        self.number = number
        ok = sum(c.verified for c in result.citations)
        status = "not found in the corpus" if result.status == "abstained" else "answer"
        details = [status]
        if result.steps:
            details.append(f"{result.steps} step{'s' if result.steps != 1 else ''}")
        if result.citations:
            details.append(f"{ok}/{len(result.citations)} citations verified")
        self.border_title = f"docmem · {' · '.join(details)}"
        if result.error:
            self.border_subtitle = result.error

    def compose(self) -> ComposeResult:
        yield Markdown(answer_markdown(self.result), open_links=False)

    def on_focus(self) -> None:
        self.post_message(self.Selected(self))

    def on_click(self) -> None:
        self.focus()

    @on(Markdown.LinkClicked)
    def _link(self, event: Markdown.LinkClicked) -> None:
        event.stop()
        if event.href.startswith("cite:"):
            self.post_message(self.CitationClicked(self, int(event.href[5:])))


class Conversation(VerticalScroll):
    def on_mount(self) -> None:
        self.anchor()

    def add(self, widget: Widget) -> Widget:
        """Append; while messages wait in the queue, what the current turn adds (its answer,
        notices, streamed text) goes above them, so each answer sits under its question."""
        queued = None if widget.has_class("-queued") else next(
            (w for w in self.children if w.has_class("-queued")), None)
        self.mount(widget, before=queued) if queued is not None else self.mount(widget)
        self.anchor()
        return widget

    def last(self) -> Widget | None:
        """The newest widget of the current turn (queued messages wait below it)."""
        current = [w for w in self.children if not w.has_class("-queued")]
        return current[-1] if current else None

    def answers(self) -> list[AnswerView]:
        return list(self.query(AnswerView))


# -- activity --------------------------------------------------------------------------------


class ActivityItem(Static, can_focus=True):
    """One step as a compact line; Enter or a click expands the full call and result."""

    BINDINGS = [Binding("enter,space", "toggle", "Expand", show=False)]
    expanded: reactive[bool] = reactive(False)

    def __init__(self, line: str, detail: str | None = None, kind: str = "call") -> None:
        super().__init__(classes=f"step -{kind}")
        self.line = line
        self.detail = detail

    def render(self) -> Text:
        if not self.detail:
            return Text("  " + plain(self.line))
        text = Text(("▾ " if self.expanded else "▸ ") + plain(self.line))
        if self.expanded:
            text.append("\n" + plain(self.detail), style="dim")
        return text

    def action_toggle(self) -> None:
        self.expanded = not self.expanded

    def on_click(self) -> None:
        self.action_toggle()


def step_detail(step: CallStep) -> str:
    args = json.dumps(step.arguments, ensure_ascii=False) if step.arguments is not None else "(unparsed)"
    return f"call {step.name}({args})\n{'ok' if step.ok else 'failed'}:\n{step.result}"


class Activity(VerticalScroll):
    def on_mount(self) -> None:
        self.anchor()

    def question(self, text: str) -> None:
        self.mount(Static(Text("▌ " + plain(clip(text, 200))), classes="question"))
        self.anchor()

    def step(self, step: Step) -> ActivityItem | None:
        line = describe(step)
        if isinstance(step, FinalStep):
            r = step.result
            line = f"{r.status} after {r.steps} steps · {r.tokens_in:,} tokens in, {r.tokens_out:,} out"
            item = ActivityItem(line, r.error, kind="final")
        elif isinstance(step, CallStep):
            item = ActivityItem(line or step.name, step_detail(step), kind="call" if step.ok else "failed")
        elif isinstance(step, MemoryStep):
            item = ActivityItem(line or step.detail, kind=step.kind)
        elif isinstance(step, LLMStep):
            u = step.usage
            item = ActivityItem(f"step {step.step} · {u.total:,}/{u.budget:,} tokens · {step.seconds:.1f}s",
                                kind="llm")
        elif isinstance(step, MessageStep):
            item = ActivityItem(line or "message", kind="message")
        else:
            return None
        self.mount(item)
        self.anchor()
        return item

    def note(self, text: str, kind: str = "note") -> None:
        self.mount(ActivityItem(text, kind=kind))
        self.anchor()


# -- memory ------------------------------------------------------------------------------------

TIERS = (("system", "blue"), ("working", "green"), ("summary", "magenta"), ("queue", "yellow"))


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:,}"


def _short(n: int) -> str:
    return str(n) if n < 1000 else f"{n / 1000:.1f}k" if n < 100_000 else f"{n // 1000}k"


class MemoryGauge(Widget):
    """Main-context tokens by tier against the window, the 70% warning line, recall and archival."""

    def on_mount(self) -> None:
        self.tooltip = ("The agent's main context (its LLM window), by tier: system instructions and "
                        "function schemas, working context (its notes), the recursive summary, and the "
                        "FIFO queue of messages. The red line is the 70% warning; at 100% the oldest "
                        "half of the queue is summarized away (a flush) and stays in recall. The "
                        "hatched end is reserved for the reply.")

    snapshot: reactive[Snapshot | None] = reactive(None)
    flushes: reactive[int] = reactive(0)
    last_event: reactive[str] = reactive("")

    def tiers(self) -> list[tuple[str, str, int]]:
        u = self.snapshot.usage if self.snapshot else None
        if u is None:
            return []
        values = {"system": u.system + u.tools, "working": u.working, "summary": u.summary, "queue": u.queue}
        return [(name, colour, values[name]) for name, colour in TIERS]

    def render(self) -> Text:
        width = max(20, self.size.width)
        snap = self.snapshot
        if snap is None:
            return Text("memory: no agent yet", style="dim")
        u = snap.usage
        percent = round(100 * u.fraction)
        wide = width >= 100
        short = _k if wide else _short
        label = f" {short(u.total)}/{short(u.budget)} tokens {percent:>3}%"
        counts = f" · recall {short(snap.recall_events)} · archival {short(snap.archival_points)}"
        prefix = "memory " if wide else ""
        bar_width = max(10, width - len(label) - len(prefix) - (0 if wide else len(counts)))
        line = Text(prefix, style="bold")
        cells: list[tuple[str, str]] = []
        for _name, colour, tokens in self.tiers():
            cells += [("█", colour)] * round(bar_width * tokens / u.window)
        reserve = round(bar_width * u.reserve / u.window)
        free = max(0, bar_width - len(cells) - reserve)
        cells = cells[:bar_width - reserve] + [("·", "bright_black")] * free + [("▒", "bright_black")] * reserve
        warn = min(bar_width - 1, round(bar_width * WARN_AT * u.budget / u.window))
        cells[warn] = ("│", "bold red") if cells[warn][0] != "█" else ("┃", "bold red")
        for char, style in cells:
            line.append(char, style=style)
        line.append(label, style="bold red" if u.fraction >= WARN_AT else "")
        if not wide:
            line.append(counts)
        legend = Text()
        for name, colour, tokens in self.tiers():
            legend.append("■ ", style=colour)
            value = f"{short(tokens)}/{short(snap.working_budget)}" if name == "working" and wide else short(tokens)
            legend.append(f"{name} {value}" + ("  " if wide else " "))
        if wide:
            legend.append("│70% ", style="red")
            legend.append(counts[1:])
        if snap.hidden and wide:
            legend.append(f" · {snap.hidden} hidden")
        if self.flushes:
            legend.append(f" · {self.flushes} flush{'es' if self.flushes > 1 else ''}", style="bold yellow")
        if self.last_event and wide:
            legend.append(f" · {self.last_event}", style="yellow")
        line.append("\n")
        line.append_text(legend)
        line.no_wrap = True
        line.overflow = "ellipsis"
        return line

    def flush(self, step: MemoryStep) -> None:
        self.flushes += 1
        self.last_event = f"flushed {step.evicted} messages at {time.strftime('%H:%M')}"
        self.add_class("-flushed")
        self.set_timer(6, lambda: self.remove_class("-flushed"))

    def warning(self, step: MemoryStep) -> None:
        self.last_event = step.detail


class MemoryPane(VerticalScroll):
    """The memory tiers in words: usage by tier, the working context, the summary."""

    def compose(self) -> ComposeResult:
        yield Static(id="memory-usage")
        yield Label("Working context", classes="pane-title")
        yield Static(Text("(empty)", style="dim"), id="memory-working")
        yield Label("Recursive summary", classes="pane-title")
        yield Static(Text("(none yet: nothing has been evicted)", style="dim"), id="memory-summary")

    def show(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        u = snap.usage
        rows = Text()
        for name, tokens in (("system + tools", u.system + u.tools), ("working context", u.working),
                             ("summary", u.summary), ("queue", u.queue)):
            rows.append(f"{name:<16}{tokens:>8,} tokens\n")
        rows.append(f"{'total':<16}{u.total:>8,} of {u.budget:,} ({100 * u.fraction:.0f}%; "
                    f"window {u.window:,}, {u.reserve:,} reserved for the reply)\n", style="bold")
        rows.append(f"queue: {snap.queue_messages} messages · {snap.hidden} evicted to recall · "
                    f"recall {snap.recall_events:,} events · archival {snap.archival_points:,} points")
        self.query_one("#memory-usage", Static).update(rows)
        working = snap.working or "(empty)"
        self.query_one("#memory-working", Static).update(
            Text(f"{plain(working)}\n", style="" if snap.working else "dim").append(
                f"{u.working:,}/{snap.working_budget:,} tokens", style="dim"))
        summary = snap.summary or "(none yet: nothing has been evicted)"
        self.query_one("#memory-summary", Static).update(Text(plain(summary), style="" if snap.summary else "dim"))


# -- sources -----------------------------------------------------------------------------------


class SourcesPane(Vertical):
    class Open(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def compose(self) -> ComposeResult:
        yield Label("No answer yet.", id="sources-title", classes="pane-title")
        yield OptionList(id="sources-list")

    def show(self, view: AnswerView | None) -> None:
        title = self.query_one("#sources-title", Label)
        options = self.query_one("#sources-list", OptionList)
        options.clear_options()
        if view is None:
            title.update("No answer yet.")
            return
        citations = view.result.citations
        title.update(f"Answer {view.number}: {len(citations)} source{'s' if len(citations) != 1 else ''}"
                     + (" · Enter opens one" if citations else ""))
        for k, c in enumerate(citations, start=1):
            prompt = Text()
            prompt.append(f"[{k}] ", style="bold")
            prompt.append("✓ " if c.verified else "✗ ", style="green" if c.verified else "red")
            prompt.append(where(c), style="underline")
            prompt.append(f"  {c.chunk_id}\n", style="dim")
            prompt.append(f"“{plain(c.quote)}”", style="italic")
            options.add_option(Option(prompt, id=str(k)))
        if citations:
            options.highlighted = 0

    @on(OptionList.OptionSelected, "#sources-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.Open(int(event.option_id or 1)))


# -- status and ingest -------------------------------------------------------------------------


class StatusLine(Static):
    """What the agent is doing right now (the activity pane in one line, for narrow screens)."""

    busy: reactive[bool] = reactive(False)
    text: reactive[str] = reactive("")
    _frame = 0

    def on_mount(self) -> None:
        self.set_interval(0.1, self._tick)

    def _tick(self) -> None:
        if self.busy:
            self._frame += 1
            self.refresh()

    def render(self) -> Text:
        mark = SPINNER[self._frame % len(SPINNER)] if self.busy else "·"
        line = Text(f"{mark} ", style="bold")
        line.append(plain(self.text))
        line.no_wrap, line.overflow = True, "ellipsis"
        return line


class IngestBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield Label("", id="ingest-label")
        yield ProgressBar(id="ingest-progress", show_eta=False)

    def start(self, path: str) -> None:
        self.add_class("-active")
        self.query_one("#ingest-label", Label).update(Text(f"ingesting {printable(path)}: scanning"))
        self.query_one(ProgressBar).update(total=None, progress=0)

    def progress(self, stage: str, done: int, total: int, detail: str) -> None:
        labels = {"scan": "scanning", "extract": "reading", "dense": "embedding", "index": "indexing"}
        self.query_one("#ingest-label", Label).update(Text(f"{labels.get(stage, stage)} {printable(detail)}"))
        bar = self.query_one(ProgressBar)
        if stage == "index" or not total:
            bar.update(total=None)
        else:
            bar.update(total=total, progress=done)

    def stop(self) -> None:
        self.remove_class("-active")



class Prompt(Input):
    """The message line; Up and Down walk through what was sent before."""

    BINDINGS = [Binding("up", "history(-1)", show=False), Binding("down", "history(1)", show=False)]

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(placeholder="Ask about the corpus, or /help", select_on_focus=False, id=id)
        self.sent: list[str] = []
        self._back = 0  # 0: a new line; n: the n-th last sent

    def remember(self, text: str) -> None:
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._back = 0

    def action_history(self, step: int) -> None:
        back = min(len(self.sent), max(0, self._back - step))
        if back != self._back:
            self._back = back
            self.value = self.sent[-back] if back else ""
            self.cursor_position = len(self.value)
