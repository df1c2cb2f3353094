"""``docmem serve``: the long-running owner of a data home's corpora (Unix socket; ``--port``: TCP)."""

from __future__ import annotations

import signal
import threading

import click

from docmem.cli.common import settings_from, user_errors


@click.command()
@click.option("--corpus", "-c", "corpora", multiple=True,
              help="Open these corpora now (repeatable); others open when first asked for.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Also listen on 127.0.0.1:PORT (0: any free port); clients send the bearer token "
                   "kept in DOCMEM_HOME/server.token.")
@click.option("--mcp", "with_mcp", is_flag=True, help="Also serve MCP (streamable HTTP) at /mcp.")
@click.option("--allow-ingest", is_flag=True, help="MCP: offer the ingest tool (paths under --root only).")
@click.option("--root", "roots", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="MCP ingest: folders under which paths may be ingested (repeatable).")
@click.pass_context
@user_errors
def serve(ctx: click.Context, corpora: tuple[str, ...], port: int | None, with_mcp: bool,
          allow_ingest: bool, roots: tuple[str, ...]) -> None:
    """Own this data home's corpora and serve them to other docmem processes and clients.

    \b
    Every docmem command finds a running owner by itself; serve is the owner that stays up.
    Socket: DOCMEM_HOME/docmem.sock (mode 0600). Stop with Ctrl+C (queued ingests finish first).
    """
    from docmem.api.owner import Docmem
    from docmem.server.run import server_token, token_path

    settings = settings_from(ctx)
    if with_mcp and port is None:
        raise click.UsageError("--mcp serves MCP over loopback TCP: give --port too (0: any free port)")
    if allow_ingest and not roots:
        raise click.UsageError("--allow-ingest needs at least one --root FOLDER")
    options: dict[str, object] = {"socket_path": settings.home / "docmem.sock", "open_on_demand": True}
    if port is not None:
        options.update(port=port, token=server_token(settings))
    service = Docmem(settings, **options)  # type: ignore[arg-type]
    if with_mcp:
        from docmem.mcp.server import streamable_app

        service.server_options["mcp_app"], service.server_options["lifespan"] = streamable_app(
            service, settings, allow_ingest=allow_ingest, roots=list(roots))
    server = service.start_serving()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        for name in corpora:
            service.open_corpus(name)
        server.wait_started()
        click.echo(f"docmem serve: PID {__import__('os').getpid()}, socket {server.socket_path}", err=True)
        if server.port is not None:
            click.echo(f"docmem serve: http://127.0.0.1:{server.port} (bearer token in {token_path(settings)})",
                       err=True)
        if with_mcp:
            click.echo(f"docmem serve: MCP (streamable HTTP) at http://127.0.0.1:{server.port}/mcp", err=True)
        stop.wait()
    finally:
        click.echo("docmem serve: stopping (queued ingests finish first)…", err=True)
        service.close()
