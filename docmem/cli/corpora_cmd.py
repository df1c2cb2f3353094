"""``docmem corpora``: what corpora exist, how big, built with what."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from docmem.cli.common import settings_from, user_errors


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
@click.option("--delete", "delete", metavar="NAME", default=None, help="Delete a corpus (its index, not your files).")
@click.pass_context
@user_errors
def corpora(ctx: click.Context, as_json: bool, delete: str | None) -> None:
    """List corpora with file and chunk counts, embedder and size on disk."""
    from docmem.api import connect

    settings = settings_from(ctx)
    with connect(settings) as service:
        if delete:
            service.delete_corpus(delete)
            click.echo(f"Deleted corpus '{delete}' (the documents themselves were not touched).")
            return
        infos = service.corpora()
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo(f"No corpora in {settings.corpora_dir}. Start with: docmem ingest PATH")
        return
    table = Table("corpus", "files", "failed", "chunks", "embedder", "backend", "on disk")
    for i in infos:
        table.add_row(i.name, str(i.files), str(i.failed), str(i.chunks),
                      f"{i.embedder} ({i.dim}-d)" if i.dim else i.embedder, i.backend, _size(i.bytes_on_disk))
    Console().print(table)
