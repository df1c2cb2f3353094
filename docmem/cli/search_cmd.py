"""``docmem search``: the agent's archival search, for people."""

from __future__ import annotations

import json

import click
from rich.console import Console

from docmem.cli.common import corpus_option, qdrant_options, settings_from, shown, user_errors
from docmem.schema import Hit, SearchPage


def location(hit: Hit) -> str:
    c = hit.chunk
    where = c.path
    if c.page is not None:
        where += f" p.{c.page}" + (f"-{c.page_end}" if c.page_end and c.page_end != c.page else "")
    return where


def render_page(page: SearchPage, console: Console, width: int = 600) -> None:
    console.print(f"[bold]{page.header()}[/bold] [dim]({page.mode})[/dim]")
    for hit in page.hits:
        c = hit.chunk
        heading = " > ".join(c.headings)
        console.print(
            f"\n[bold cyan]{hit.rank}.[/bold cyan] [bold]{shown(location(hit))}[/bold]"
            f"  [dim]{c.id}  score {hit.score:.3f}[/dim]", highlight=False,
        )
        if heading:
            console.print(f"   [green]{shown(heading)}[/green]", highlight=False)
        text = " ".join(c.text.split())
        console.print("   " + shown(text[:width] + ("…" if len(text) > width else "")), highlight=False)
    for note in page.notes:
        console.print(f"[yellow]Note:[/yellow] {shown(note)}", highlight=False)


@click.command()
@click.argument("query")
@corpus_option
@click.option("--page", "-p", type=click.IntRange(min=1), default=1, show_default=True, help="Page of results (from 1).")
@click.option("--page-size", "-k", type=click.IntRange(min=1), default=None, help="Results per page (default 5).")
@click.option("--path", "path_glob", default=None, metavar="GLOB",
              help="Only files matching this glob, e.g. '*.pdf' (without a '/', also matched against the "
                   "file name in any folder, as git does).")
@click.option("--fusion", default=None, help="sections (default: dense-led, by section), dbsf, rrf[:K[:W_BM25,W_DENSE]], bm25 or dense.")
@click.option("--candidates", type=click.IntRange(1, 10_000), default=None,
              help="Results ranked per query, the most that pages can reach (default 100).")
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
@qdrant_options
@click.pass_context
@user_errors
def search(ctx: click.Context, query: str, corpus: str | None, page: int, page_size: int | None,
           path_glob: str | None, fusion: str | None, candidates: int | None, as_json: bool,
           qdrant_url: str | None, qdrant_api_key: str | None) -> None:
    """Search a corpus and print one page of cited results."""
    from docmem.api import connect

    settings = settings_from(ctx, corpus=corpus, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key)
    with connect(settings) as service:
        result = service.search(query, page=page, page_size=page_size, path=path_glob, ranking=fusion,
                                candidates=candidates)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        render_page(result, Console())
