"""The chat's corpus actions: switch corpus, ingest a folder, save. A mixin of ``ChatApp``,
kept apart so the app module reads as the conversation loop; every method here runs on the
app (``self`` is the ``ChatApp``) and posts back to it from its thread workers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work

from docmem.errors import DocmemError
from docmem.store.corpus import list_corpora
from docmem.tui.screens import CorpusScreen
from docmem.tui.widgets import IngestBar

if TYPE_CHECKING:
    from docmem.tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object

log = logging.getLogger("docmem.tui.app")


class CorpusActions(_Base):
    """/save, /corpus and /ingest of the chat."""

    def _save(self) -> None:
        ws = self.workspace
        if ws is None or ws.agent is None:
            self.notify("Nothing to save yet.", severity="warning")
        elif self.busy == "agent":
            self.notify("The session is saved when this turn ends.", timeout=3)
        else:
            ws.agent.save()
            self.notify(f"Session '{ws.session}' saved. Resume it with: docmem chat --session {ws.session}")

    def _corpus_dialog(self) -> None:
        ws = self.workspace
        active = ws.corpus_name if ws else None

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice and choice[0] == "corpus":
                self.switch_corpus(choice[1])
            elif choice and choice[0] == "ingest":
                self.start_ingest(choice[1])

        infos = ws.service.corpora() if ws else list_corpora(self.settings)
        self.push_screen(CorpusScreen(infos, active), chosen)

    def _refuse_when_busy(self, what: str) -> bool:
        if self.busy:
            self.notice(f"Cannot {what} while {'the agent works' if self.busy == 'agent' else self.busy} "
                        "is running: wait, or Esc to interrupt.", "warning")
            return True
        return False

    def switch_corpus(self, name: str) -> None:
        ws = self.workspace
        if ws is None or self._refuse_when_busy("switch corpus"):
            return
        if ws.corpus is not None and ws.corpus_name == name:
            self.notify(f"'{name}' is already the active corpus.", timeout=3)
            return
        self._begin("corpus", f"opening corpus '{name}'")
        self._switch(name)

    @work(thread=True, group="workspace", exit_on_error=False)
    def _switch(self, name: str) -> None:
        ws = self.workspace
        assert ws is not None
        try:
            ws.open(name)
        except DocmemError as exc:
            self._post(self.notice, str(exc), "error")
        except Exception as exc:
            log.exception("switching corpus failed")
            self._post(self.notice, f"Could not open '{name}': {type(exc).__name__}: {exc}", "error")
        else:
            self._post(self.notice, f"Corpus is now '{name}'. The session's memory comes along; "
                                    "earlier citations point into the previous corpus.")
            self._post(self._show_memory, ws.snapshot())
        finally:
            self._worker_done()

    def start_ingest(self, raw: str) -> None:
        ws = self.workspace
        if ws is None or self._refuse_when_busy("ingest"):
            return
        path = Path(raw).expanduser()
        if not path.exists():
            self.notice(f"No such file or folder: {path}", "warning")
            return
        self._begin("ingest", f"ingesting {path} into '{ws.corpus_name}'")
        self.query_one(IngestBar).start(str(path))
        self._ingest(path)

    @work(thread=True, group="workspace", exit_on_error=False)
    def _ingest(self, path: Path) -> None:
        ws = self.workspace
        assert ws is not None

        def progress(event) -> None:  # type: ignore[no-untyped-def]
            detail = f"{event.done}/{event.total}" if event.total else (event.message or "")
            if event.path:
                detail += f" · {event.path}"
            self._post(self._ingest_progress, event.stage, event.done, event.total, detail)

        try:
            summary = ws.ingest([path.resolve()], progress)
        except DocmemError as exc:
            self._post(self.notice, f"Ingest failed: {exc}", "error")
        except Exception as exc:
            log.exception("ingest failed")
            self._post(self.notice, f"Ingest failed: {type(exc).__name__}: {exc}", "error")
        else:
            parts = [f"{len(summary.added)} added", f"{len(summary.updated)} updated",
                     f"{len(summary.unchanged)} unchanged", f"{len(summary.removed)} removed",
                     f"{summary.chunks_written:,} chunks written"]
            if summary.chunks_embedded:
                parts.append(f"{summary.chunks_embedded:,} embedded")
            if summary.dense_error:
                parts.append(f"dense vectors stopped: {summary.dense_error}")
            if summary.failed:
                parts.append(f"{len(summary.failed)} failed ({summary.failed[0][0]}: {summary.failed[0][1]}"
                             + (", …" if len(summary.failed) > 1 else "") + ")")
            if summary.skipped:
                parts.append(f"{len(summary.skipped)} skipped")
            self._post(self.notice, f"Ingested {path} into '{ws.corpus_name}': " + ", ".join(parts) + ".")
            self._post(self._show_memory, ws.snapshot())
        finally:
            self._post(self._ingest_progress, None, 0, 0, "")
            self._worker_done()

    def _ingest_progress(self, stage: str | None, done: int, total: int, detail: str) -> None:
        bar = self.query_one(IngestBar)
        if stage is None:
            bar.stop()
        else:
            bar.progress(stage, done, total, detail)
