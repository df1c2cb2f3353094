"""``docmem corpora``: what corpora exist, how big, built with what, from where; and the
corpora evaluations built, which ``docmem eval --clean`` removes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from docmem.cli.common import settings_from, shown, user_errors
from docmem.schema import CorpusInfo


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _pending(i: CorpusInfo) -> str:
    if not i.dim:
        return "-"  # BM25 only: nothing to fill
    return "?" if i.dense_pending is None else str(i.dense_pending)


def _roots(roots: list[str]) -> str:
    home = str(Path.home())
    short = [("~" + r[len(home):]) if r == home or r.startswith(home + "/") else r for r in roots]
    return ", ".join(shown(r) for r in short) or "nothing yet"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
@click.option("--delete", "delete", metavar="NAME", default=None, help="Delete a corpus (its index, not your files).")
@click.pass_context
@user_errors
def corpora(ctx: click.Context, as_json: bool, delete: str | None) -> None:
    """List corpora: files, chunks, dense vectors still to fill, embedder, size, source folders
    and last ingest; then the corpora evaluations built (`docmem eval --clean` removes them)."""
    from docmem.api import connect
    from docmem.eval.corpora import eval_settings
    from docmem.store.corpus import disk_usage, list_corpora

    settings = settings_from(ctx)
    with connect(settings) as service:
        if delete:
            service.delete_corpus(delete)
            click.echo(f"Deleted corpus '{delete}' (the documents themselves were not touched).")
            return
        infos = service.corpora()
    evals = eval_settings(settings)
    eval_infos = list_corpora(evals)  # built and used by `docmem eval` only, never served
    if as_json:
        click.echo(json.dumps([{**i.as_dict(), "eval": False} for i in infos] +
                              [{**i.as_dict(), "eval": True} for i in eval_infos], indent=2))
        return
    console = Console()
    if not infos:
        console.print(f"No corpora in {shown(settings.corpora_dir)}. Start with: docmem ingest PATH", highlight=False)
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")  # fits 80 columns
        for name in ("corpus", "files", "chunks", "to embed", "embedder", "on disk", "last ingest"):
            table.add_column(name, no_wrap=True, overflow="fold" if name == "corpus" else "ellipsis")
        for i in infos:
            embedder = f"{i.embedder} ({i.dim}-d)" if i.dim else i.embedder
            table.add_row(i.name, str(i.files), str(i.chunks), _pending(i), embedder, _size(i.bytes_on_disk),
                          _when(i.last_ingest))
        console.print(table)
        console.print()
        for i in infos:
            extra = [f"{i.failed} file{'s' if i.failed > 1 else ''} failed"] if i.failed else []
            if i.backend != "edge":
                extra.append(f"stored at {shown(i.backend)}")
            console.print(f"{i.name}: from {_roots(i.roots)}" + "".join(f"; {e}" for e in extra),
                          highlight=False, soft_wrap=True)
    if eval_infos:
        total = disk_usage(evals.home)
        console.print(f"\n{len(eval_infos)} eval corpora in {shown(evals.home)} ({_size(total)}), built by "
                      f"`docmem eval`: {', '.join(i.name for i in eval_infos)}. Remove them with "
                      "`docmem eval --clean`.", highlight=False)
