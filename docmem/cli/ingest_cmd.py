"""``docmem ingest``: index folders into a corpus, with a live progress display."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress as Bars, TaskID, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)

from docmem.cli.common import corpus_option, qdrant_options, settings_from, shown, user_errors


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

    def __call__(self, event) -> None:  # type: ignore[no-untyped-def]
        if event.stage == "extract":
            task = self._task("files", event.total)
            elapsed = self.bars.tasks[task].elapsed or 0.0
            rate = f"{event.bytes / elapsed / 1e6:.1f} MB/s" if elapsed > 0.5 else ""
            self.bars.update(task, completed=event.done, total=event.total,
                             detail=f"{event.pages} pages, {event.chunks} chunks {rate}")
        elif event.stage == "dense":
            task = self._task("dense", event.total)
            elapsed = self.bars.tasks[task].elapsed or 0.0
            rate = f"{event.done / elapsed:.0f} chunks/s" if elapsed > 1 and event.done else ""
            self.bars.update(task, completed=event.done, total=event.total, detail=rate)
        elif event.stage == "index":
            self.bars.console.print(f"[dim]{event.message}…[/dim]")

    def _task(self, name: str, total: int) -> TaskID:
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total, detail="")
        return self.tasks[name]


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@corpus_option
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching paths (gitignore syntax); repeatable.")
@click.option("--embedder", default=None,
              help="Dense embedder for a new corpus: bundled (default, offline MiniLM), openai:MODEL, or none.")
@click.option("--chunk-tokens", type=int, default=None, help="Chunk size in tokens (default 200).")
@click.option("--chunk-overlap", type=int, default=None, help="Overlap between chunks in tokens (default 30).")
@click.option("--workers", type=int, default=None, help="Extraction processes (default: one per core).")
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
           no_dense: bool, force: bool, follow_symlinks: bool, strict: bool, as_json: bool, qdrant_url: str | None,
           qdrant_api_key: str | None) -> None:
    """Index documents under PATHS into a corpus (incremental: unchanged files are skipped)."""
    from docmem.api import IngestOptions, connect
    from docmem.api.ops import follow_job

    settings = settings_from(ctx, corpus=corpus, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                             qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key)
    options = IngestOptions(excludes=exclude, embedder=embedder, chunk_tokens=settings.chunk_tokens,
                            chunk_overlap=settings.chunk_overlap, workers=workers, dense=not no_dense, force=force,
                            follow_symlinks=follow_symlinks)
    console = Console(stderr=True)
    note = None if as_json else lambda text: console.print(f"[dim]{text}[/dim]")
    with connect(settings) as service:
        job = service.ingest(list(paths), options=options)
        if as_json or not console.is_terminal and not sys.stderr.isatty():
            summary = follow_job(job, None if as_json else _plain_progress(console), note)
        else:
            with _Renderer(console) as renderer:
                summary = follow_job(job, renderer, note)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_summary(summary)
    if (strict and summary.failed) or (not summary.processed and summary.failed):
        sys.exit(1)


def _plain_progress(console: Console):  # type: ignore[no-untyped-def]
    """Without a terminal (CI, pipes): a line per stage start and end, not a bar."""
    announced: set[str] = set()

    def show(event) -> None:  # type: ignore[no-untyped-def]
        if event.stage in ("extract", "dense") and event.stage not in announced and event.total:
            announced.add(event.stage)
            console.print(f"{event.stage}: {event.total} {'files' if event.stage == 'extract' else 'chunks'}")
    return show


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _print_summary(s) -> None:  # type: ignore[no-untyped-def]
    """The outcome in a few lines; every path and reason is escaped (``q[/q].xyz`` is a name)."""
    out = Console(soft_wrap=True)  # one line per file, whatever the width
    for note in s.notes:
        out.print(f"[yellow]{shown(note)}[/yellow]")
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
