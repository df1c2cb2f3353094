"""``docmem mcp``: docmem as an MCP server on stdio, for Claude Desktop, IDEs and agent frameworks."""

from __future__ import annotations

from pathlib import Path

import click

from docmem.cli.ask_cmd import llm_options
from docmem.cli.common import corpus_option, settings_from, user_errors


@click.command()
@corpus_option
@click.option("--allow-ingest", is_flag=True, help="Offer the ingest tool (paths under --root only).")
@click.option("--root", "roots", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder under which the ingest tool may index (repeatable).")
@click.option("--max-steps", type=int, default=24, show_default=True, help="Step budget of the ask tool.")
@llm_options
@click.pass_context
@user_errors
def mcp(ctx: click.Context, corpus: str | None, allow_ingest: bool, roots: tuple[Path, ...], max_steps: int,
        model: str | None, base_url: str | None, api_key: str | None, context_window: int | None) -> None:
    """Serve docmem's tools (search, read, ask, corpora) over MCP on stdin/stdout.

    \b
    stdout carries the protocol: logs go to stderr. The corpus is owned here, or reached
    through the docmem process that owns it (a chat, docmem serve).
    """
    import anyio

    from docmem.api.owner import Docmem
    from docmem.mcp.server import build_server

    if allow_ingest and not roots:
        raise click.UsageError("--allow-ingest needs at least one --root FOLDER")
    settings = settings_from(ctx, corpus=corpus, model=model, base_url=base_url, api_key=api_key,
                             context_window=context_window)
    with Docmem(settings, workers=1) as service:  # spawned ingest workers would write to stdout
        server = build_server(service, settings, allow_ingest=allow_ingest, roots=[str(r) for r in roots],
                              max_steps=max_steps)
        anyio.run(server.run_stdio_async)
