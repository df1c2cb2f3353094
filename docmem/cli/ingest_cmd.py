"""``docmem ingest``: index folders into a corpus, with a live progress display."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress as Bars, TaskID, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)

from docmem.cli.common import corpus_option, qdrant_options, settings_from, shown, user_errors

if TYPE_CHECKING:
    from ingest.pipeline import Progress

# The pipeline's "dense" event before the model loads (ingest.pipeline.LOADING_EMBEDDER; not
# imported at the top: `docmem --help` must not import the pipeline).
LOADING_EMBEDDER = "loading embedder"


class _Renderer:
    """Turns pipeline progress events into rich bars on stderr."""

    def __init__(self, console: Console) -> None:
        self.bars = Bars(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> "_Renderer":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: Progress) -> None:
        if event.stage == "extract":
            task = self._task("files", event.total)
            elapsed = self.bars.tasks[task].elapsed or 0.0
            rate = f"{event.bytes / elapsed / 1e6:.1f} MB/s" if elapsed > 0.5 else ""
            self.bars.update(task, completed=event.done, total=event.total,
                             detail=f"{_pages(event.pages)}{plural(event.chunks, 'chunk')} {rate}")
        elif event.stage == "dense" and event.message == LOADING_EMBEDDER:
            # No bar yet: a 0/N bar with ETA -:--:-- would sit there while the model loads.
            self.bars.console.print(f"[dim]{LOADING_EMBEDDER}…[/dim]")
        elif event.stage == "dense":
            task = self._task("dense", event.total)  # created once the model is loaded
            elapsed = self.bars.tasks[task].elapsed or 0.0
            rate = f"{event.done / elapsed:.0f} chunks/s" if elapsed > 1 and event.done else ""
            self.bars.update(task, completed=event.done, total=event.total, detail=rate)
        elif event.stage == "index":
            self.bars.console.print(f"[dim]{shown(event.message or '')}…[/dim]")

    def _task(self, name: str, total: int) -> TaskID:
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total, detail="")
        return self.tasks[name]


def _pages(pages: int) -> str:
    return f"{plural(pages, 'page')}, " if pages else ""


class _Lines:
    """Without a terminal (CI, pipes, nohup): a line when a stage starts, then one every
    ``every`` seconds while it runs, so a long dense stage is never silent."""

    def __init__(self, console: Console, every: float = 5.0) -> None:
        self.console, self.every = console, every
        self.started: dict[str, float] = {}
        self.last = 0.0

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        if event.stage == "dense" and event.message == LOADING_EMBEDDER:
            self.console.print(f"dense: {plural(event.total, 'chunk')} to embed; {LOADING_EMBEDDER}")
            return
        if event.stage not in ("extract", "dense") or not event.total:
            if event.stage == "index":
                self.console.print(f"index: {shown(event.message or '')}")
            return
        if event.stage not in self.started:
            self.started[event.stage] = self.last = now
            if event.stage == "extract":
                self.console.print(f"extract: {plural(event.total, 'file')} to read")
            return
        if now - self.last < self.every and event.done < event.total:
            return
        self.last = now
        seconds = now - self.started[event.stage]
        what = "file" if event.stage == "extract" else "chunk"
        rate = f", {event.done / seconds:.0f} {what}s/s" if seconds > 0 and event.stage == "dense" else ""
        self.console.print(f"{event.stage}: {event.done}/{plural(event.total, what)} "
                           f"({100 * event.done // event.total}%){rate}")


_SIGNALS = {signal.SIGTERM: 143, signal.SIGHUP: 129}


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, turned into an exception so that the run stops the way Ctrl+C does:
    worker processes stopped, the store flushed, and a word on what was saved."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.status = _SIGNALS[signum]


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    def raise_terminated(signum: int, _frame: object) -> None:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, raise_terminated) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Seen:
    """The last progress of each stage, for saying what an interrupted ingest had saved (the
    job may run in another process: its events are all this one knows)."""

    def __init__(self) -> None:
        self.last: dict[str, Progress] = {}

    def tee(self, show: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
        def both(event: Progress) -> None:
            self.last[event.stage] = event
            if show is not None:
                show(event)
        return both


def _interrupted(exc: KeyboardInterrupt, corpus: str, seen: _Seen) -> int:
    """What an interrupted ingest kept (everything written so far) and how to resume."""
    err = Console(stderr=True, soft_wrap=True)
    what = f"Stopped by {exc}" if isinstance(exc, _Terminated) else "Interrupted"
    extract, dense = seen.last.get("extract"), seen.last.get("dense")
    if extract is None:
        err.print(f"{what} before any file was read: corpus '{shown(corpus)}' is unchanged.")
    else:
        filled = f", {dense.done} of {dense.total} dense vectors filled" if dense and dense.total else ""
        err.print(f"{what}. Saved in corpus '{shown(corpus)}': {extract.done} of {plural(extract.total, 'file')} "
                  f"read, {plural(extract.chunks, 'chunk')} written and searchable{filled}. Run the same "
                  "command again to resume: files already written are skipped and dense embedding "
                  "continues where it stopped.")
    return exc.status if isinstance(exc, _Terminated) else 130


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@corpus_option
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching paths (gitignore syntax); repeatable.")
@click.option("--embedder", default=None,
              help="Dense embedder for a new corpus: bundled (default, offline MiniLM), openai:MODEL, or none.")
@click.option("--chunk-tokens", type=int, default=None, help="Chunk size in tokens (default 200).")
@click.option("--chunk-overlap", type=int, default=None, help="Overlap between chunks in tokens (default 30).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Extraction processes (default: one per core; 0: in this process, with no file budget).")
@click.option("--file-timeout", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Time one file may take, plus 1 s per MB (default 120; config file_timeout).")
@click.option("--file-memory", type=click.IntRange(min=64), default=None, metavar="MB",
              help="Memory a worker may use on one file (default 4096; config file_memory_mb).")
@click.option("--no-dense", is_flag=True, help="Write BM25 only now; dense vectors are filled by a later run.")
@click.option("--force", is_flag=True, help="Re-extract every file, changed or not (e.g. after an upgrade).")
@click.option("--follow-symlinks", is_flag=True,
              help="Also follow links that lead outside the ingested folders (skipped by default).")
@click.option("--strict", is_flag=True, help="Exit non-zero if any file failed.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary instead of progress.")
@qdrant_options
@click.pass_context
@user_errors
def ingest(ctx: click.Context, paths: tuple[Path, ...], corpus: str | None, exclude: tuple[str, ...],
           embedder: str | None, chunk_tokens: int | None, chunk_overlap: int | None, workers: int | None,
           file_timeout: int | None, file_memory: int | None, no_dense: bool, force: bool,
           follow_symlinks: bool, strict: bool, as_json: bool, qdrant_url: str | None,
           qdrant_api_key: str | None) -> None:
    """Index documents under PATHS into a corpus (incremental: unchanged files are skipped)."""
    from docmem.api import IngestOptions, connect
    from docmem.api.ops import follow_job

    settings = settings_from(ctx, corpus=corpus, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                             qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key, file_timeout=file_timeout,
                             file_memory_mb=file_memory)
    options = IngestOptions(excludes=exclude, embedder=embedder, chunk_tokens=settings.chunk_tokens,
                            chunk_overlap=settings.chunk_overlap, workers=workers, dense=not no_dense, force=force,
                            follow_symlinks=follow_symlinks, in_process=_in_process(workers),
                            file_timeout=settings.file_timeout, file_memory_mb=settings.file_memory_mb)
    console = Console(stderr=True)
    note = None if as_json else lambda text: console.print(f"[dim]{shown(text)}[/dim]")
    seen = _Seen()
    try:
        with _signals_interrupt(), connect(settings) as service:
            job = service.ingest(list(paths), options=options)
            if as_json or not console.is_terminal and not sys.stderr.isatty():
                summary = follow_job(job, seen.tee(None if as_json else _Lines(console)), note)
            else:
                with _Renderer(console) as renderer:
                    summary = follow_job(job, seen.tee(renderer), note)
    except KeyboardInterrupt as exc:
        sys.exit(_interrupted(exc, settings.corpus, seen))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_summary(summary)
    if (strict and summary.failed) or (not summary.processed and summary.failed):
        sys.exit(1)


def _in_process(workers: int | None) -> bool | None:
    """``--workers 0``: in the owner's process; a number: worker processes, each file under its
    budget; not given: the owner decides (a chat that owns the corpus reads in-process)."""
    return True if workers == 0 else False if workers else None


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _print_summary(s) -> None:  # type: ignore[no-untyped-def]
    """The outcome in a few lines; every path and reason is escaped (``q[/q].xyz`` is a name)."""
    out = Console(soft_wrap=True)  # one line per file, whatever the width
    for note in s.notes:
        out.print(f"[yellow]{shown(note)}[/yellow]")
    if s.retried:
        out.print(f"Read again {plural(len(s.retried), 'unchanged file')} that had failed for a reason that "
                  "may have gone (permissions, a missing extra, the file budget).")
    counts = [(len(s.added), "added"), (len(s.updated), "updated"), (len(s.removed), "removed"),
              (len(s.unchanged), "unchanged"), (len(s.skipped), "skipped"), (len(s.failed), "failed")]
    if not (s.added or s.updated or s.removed) and s.unchanged and not s.chunks_embedded:
        reread = f" ({s.rechecked} read again: same content)" if s.rechecked else ""
        out.print(f"Corpus '{s.corpus}' is up to date: {plural(len(s.unchanged), 'file')} unchanged{reread}.")
    else:
        work = [plural(s.pages, "page")] if s.pages else []
        work.append(f"{plural(s.chunks_written, 'chunk')} written")
        if s.chunks_embedded:
            work.append(f"{s.chunks_embedded} embedded")
        rate = ""
        embed_seconds = s.seconds_dense - s.seconds_embedder_load
        if s.chunks_embedded and embed_seconds > 0:
            rate = f", {s.chunks_embedded / embed_seconds:.0f} chunks/s dense"
        out.print(f"Corpus '{s.corpus}': " + ", ".join(f"{n} {what}" for n, what in counts if n)
                  + f" — {', '.join(work)} in {s.seconds_total:.1f}s{rate}.")
    for label, rows in (("[red]failed[/red] ", s.failed), ("[yellow]skipped[/yellow]", s.skipped),
                        ("[dim]warning[/dim]", s.warnings)):
        for path, reason in rows:
            out.print(f"  {label} {shown(path)}: {shown(reason)}", highlight=False)
    for path in s.removed:
        out.print(f"  [dim]removed[/dim] {shown(path)}", highlight=False)
    if s.dense_error:
        out.print(f"[yellow]Dense embedding stopped: {shown(s.dense_error)}. BM25 search works; "
                  "re-run ingest to finish.[/yellow]")
    elif s.dense_pending:
        out.print(f"{plural(s.dense_pending, 'chunk')} still need dense vectors: re-run `docmem ingest` to fill them.")
