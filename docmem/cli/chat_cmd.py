"""``docmem chat``: the interactive TUI (docmem/tui)."""

from __future__ import annotations

import logging
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click

from docmem.cli.ask_cmd import llm_options
from docmem.cli.common import corpus_option, qdrant_options, settings_from, user_errors
from docmem.config import Settings
from docmem.store.lock import private_file


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Textual owns the terminal: while it runs, log records go to a file instead of stderr."""
    private_file(path)  # 0600, in the private data home
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()


@click.command()
@corpus_option
@click.option("--session", default=None, help="Resume (or start) this session; default: pick from a list.")
@click.option("--new", "new_session", is_flag=True, help="Start a new session without the session list.")
@click.option("--max-steps", type=int, default=24, show_default=True, help="Step budget for one question.")
@click.option("--theme", default=None,
              help="Textual theme, e.g. textual-dark, nord (default: ansi-dark, your terminal's colours).")
@llm_options
@qdrant_options
@click.pass_context
@user_errors
def chat(ctx: click.Context, corpus: str | None, session: str | None, new_session: bool, max_steps: int,
         theme: str | None, model: str | None, base_url: str | None, api_key: str | None,
         context_window: int | None, qdrant_url: str | None, qdrant_api_key: str | None) -> None:
    """Interactive Q&A over a corpus: watch the agent page, check every citation at its source."""
    from docmem.tui import make_app

    settings = settings_from(ctx, corpus=corpus, model=model, base_url=base_url, api_key=api_key,
                             context_window=context_window, qdrant_url=qdrant_url,
                             qdrant_api_key=qdrant_api_key)
    app = make_app(settings, session=session, corpus=corpus, pick_session=not new_session,
                   max_steps=max_steps, theme=theme or "ansi-dark")
    log_file = settings.home / "logs" / "chat.log"
    with _log_to_file(log_file):
        try:
            app.run()
        finally:
            if not app.idle.is_set():
                click.echo("Waiting for the agent's current step to end…", err=True)
            if app.workspace is not None and (queued := app.workspace.service.local.jobs.busy()):
                click.echo(f"Finishing {len(queued)} ingest job(s) that other docmem processes sent to this "
                           "chat (it owns the corpus)…", err=True)
            app.close_workspace()
    if app.workspace_session:
        click.echo(f"Session saved. Resume with: {resume_command(settings, app.workspace_session)}")


def resume_command(settings: Settings, session: str) -> str:
    """The command that resumes ``session`` with the same LLM (never the API key)."""
    parts = ["docmem", "chat", "--session", shlex.quote(session)]
    if settings.model:
        parts += ["--model", shlex.quote(settings.model)]
    if settings.base_url:
        parts += ["--base-url", shlex.quote(settings.base_url)]
    return " ".join(parts)
