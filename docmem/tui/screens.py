"""Screens over the chat: the source viewer, the session and corpus pickers, help."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, Markdown, OptionList, Static
from textual.widgets.option_list import Option

from docmem.agent.functions import CitationResult
from docmem.agent.recall import SessionInfo
from docmem.store.corpus import Corpus, CorpusInfo
from docmem.tui.commands import help_markdown
from docmem.tui.passages import Passage, SourceReader
from docmem.tui.widgets import plain, where

NEW_SESSION = "\x00new"


class SourceScreen(Screen[None]):
    """A citation at its source: the page (or section) with the quote highlighted; read on."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("n,right", "page(1)", "Next page"),
        Binding("p,left", "page(-1)", "Prev page"),
        Binding("right_square_bracket", "cite(1)", "Next cite"),
        Binding("left_square_bracket", "cite(-1)", "Prev cite"),
    ] + [Binding(str(k), f"goto({k})", show=False) for k in range(1, 10)]

    def __init__(self, corpus: Corpus, citations: list[CitationResult], index: int,
                 notes_scope: str | None = None) -> None:
        super().__init__(classes="source-screen")
        self.notes_scope = notes_scope
        self.corpus = corpus
        self.citations = citations
        self.index = index
        self.reader: SourceReader | None = None
        self.passage: Passage | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="source-title")
        with VerticalScroll(id="source-scroll"):
            yield Static(id="source-body")
        yield Footer()

    def on_mount(self) -> None:
        self.show_citation(self.index)

    # -- actions ----------------------------------------------------------------------

    def action_page(self, delta: int) -> None:
        if self.reader is None:
            return
        passage = self.reader.next() if delta > 0 else self.reader.previous()
        if passage is None:
            self.notify("That was the " + ("last" if delta > 0 else "first") + " page of the document.",
                        severity="warning", timeout=2)
            return
        self._show_passage(passage)

    def action_cite(self, delta: int) -> None:
        self.show_citation((self.index - 1 + delta) % len(self.citations) + 1)

    def action_goto(self, number: int) -> None:
        if 1 <= number <= len(self.citations):
            self.show_citation(number)

    # -- rendering --------------------------------------------------------------------

    def show_citation(self, number: int) -> None:
        self.index = number
        citation = self.citations[number - 1]
        try:
            self.reader = SourceReader(self.corpus, citation, self.notes_scope)
        except LookupError as exc:
            self.reader = None
            self.passage = None
            self._title(citation, None)
            self.query_one("#source-body", Static).update(Text(plain(exc), style="yellow"))
            return
        self._show_passage(self.reader.open())

    def _title(self, citation: CitationResult, passage: Passage | None) -> None:
        title = Text()
        title.append(f"[{self.index}/{len(self.citations)}] ", style="bold")
        if citation.verified:
            score = "" if citation.score >= 0.999 else f", fuzzy {citation.score:.0%}"
            title.append(f"✓ quote verified{score}", style="green")
        else:
            title.append(f"✗ not verified: {plain(citation.reason or '')}", style="red")
        title.append(f"  {where(citation)} · chunk {citation.chunk_id}")
        if passage is not None:
            title.append(f" · {plain(passage.label)}", style="bold")
        title.append(f"\n“{plain(' '.join(citation.quote.split()))}”", style="italic")
        self.query_one("#source-title", Static).update(title)

    def _show_passage(self, passage: Passage) -> None:
        self.passage = passage
        citation = self.citations[self.index - 1]
        self._title(citation, passage)
        body = Text(plain(passage.text), style="dim" if passage.cited else "")
        if passage.cited:
            body.stylize("not dim", *passage.cited)
        if passage.quote:
            body.stylize("bold reverse", *passage.quote)
        elif passage.cited:
            body.stylize("underline", *passage.cited)
        self.query_one("#source-body", Static).update(body)
        scroll = self.query_one("#source-scroll", VerticalScroll)
        target = passage.quote or passage.cited
        if target is None:
            scroll.scroll_home(animate=False)
        else:
            self.call_after_refresh(self._scroll_to, passage.text[:target[0]])

    def _scroll_to(self, before: str) -> None:
        scroll = self.query_one("#source-scroll", VerticalScroll)
        width = max(10, scroll.scrollable_content_region.width)
        line = len(Text(before).wrap(self.app.console, width)) - 1 if before else 0
        scroll.scroll_to(y=max(0, line - 3), animate=False)


class SessionScreen(ModalScreen[str]):
    """At start: resume a saved session, or begin a new one."""

    BINDINGS = [Binding("escape", "new", "New session")]

    def __init__(self, sessions: list[SessionInfo]) -> None:
        super().__init__()
        self.sessions = sessions

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Resume a session, or start a new one", classes="pane-title")
            options = [Option(Text("+ new session", style="bold"), id=NEW_SESSION)]
            for s in self.sessions:
                when = datetime.fromtimestamp(s.updated).strftime("%Y-%m-%d %H:%M")
                options.append(Option(Text.assemble((s.name, "bold"), f"  corpus {s.corpus} · {s.events} events · "
                                                    f"last used {when}"), id=s.name))
            yield OptionList(*options, id="session-list")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_id or NEW_SESSION)

    def action_new(self) -> None:
        self.dismiss(NEW_SESSION)


class CorpusScreen(ModalScreen[tuple[str, str] | None]):
    """Switch corpus, or ingest a folder into the active one."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, corpora: list[CorpusInfo], active: str | None) -> None:
        super().__init__()
        self.corpora = corpora
        self.active = active

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Corpora (Enter switches)", classes="pane-title")
            options = []
            for c in self.corpora:
                mark = "● " if c.name == self.active else "  "
                size = f"{c.bytes_on_disk / 1e6:.1f} MB"
                files = f"{c.files:,} file" + ("" if c.files == 1 else "s")
                options.append(Option(Text.assemble((mark + c.name, "bold"), f"  {files} · "
                                                    f"{c.chunks:,} chunks · {c.embedder} · {size}"), id=c.name))
            if not options:
                options.append(Option(Text("(no corpus yet: ingest a folder below)", style="dim"),
                                      disabled=True))
            yield OptionList(*options, id="corpus-list")
            yield Label(f"Ingest a folder into '{self.active or 'the new corpus'}':", classes="pane-title")
            yield Input(placeholder="path/to/folder", id="ingest-path")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option_id:
            self.dismiss(("corpus", event.option_id))

    @on(Input.Submitted, "#ingest-path")
    def _ingest(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(("ingest", event.value.strip()))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Markdown(help_markdown())
