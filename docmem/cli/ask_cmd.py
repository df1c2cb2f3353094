"""``docmem ask``: one question, a cited answer; ``docmem sessions``: saved sessions."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from docmem.cli.common import corpus_option, qdrant_options, settings_from, user_errors


def llm_options(fn):  # type: ignore[no-untyped-def]
    fn = click.option("--context-window", type=int, default=None,
                      help="Tokens of main context (may be set below the model's real window).")(fn)
    fn = click.option("--api-key", default=None, help="API key (default: $OPENAI_API_KEY).")(fn)
    fn = click.option("--base-url", default=None,
                      help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama).")(fn)
    return click.option("--model", "-m", default=None, help="Model name (default: $DOCMEM_MODEL).")(fn)


@click.command()
@click.argument("question")
@corpus_option
@click.option("--session", default=None, help="Persist and resume memory under this name.")
@click.option("--json", "as_json", is_flag=True, help="Structured result on stdout.")
@click.option("--trace", type=click.Path(path_type=Path), default=None, help="Write every step as JSONL.")
@click.option("--max-steps", type=int, default=24, show_default=True, help="Step budget for one question.")
@click.option("--quiet", "-q", is_flag=True, help="No live activity on stderr.")
@llm_options
@qdrant_options
@click.pass_context
@user_errors
def ask(ctx: click.Context, question: str, corpus: str | None, session: str | None, as_json: bool,
        trace: Path | None, max_steps: int, quiet: bool, model: str | None, base_url: str | None,
        api_key: str | None, context_window: int | None, qdrant_url: str | None,
        qdrant_api_key: str | None) -> None:
    """Answer QUESTION from a corpus, with verified citations."""
    from docmem.agent.describe import describe
    from docmem.agent.loop import Trace
    from docmem.agent.session import open_agent

    settings = settings_from(ctx, corpus=corpus, model=model, base_url=base_url, api_key=api_key,
                             context_window=context_window, qdrant_url=qdrant_url,
                             qdrant_api_key=qdrant_api_key)
    err = Console(stderr=True, soft_wrap=True)

    def show(step) -> None:  # type: ignore[no-untyped-def]
        line = describe(step)
        if line and not quiet:
            err.print(f"[dim]· {escape(line)}[/dim]", highlight=False)

    tracer = Trace(trace) if trace else None
    try:
        with open_agent(settings, session=session, max_steps=max_steps) as agent:
            result = agent.ask(question, trace=tracer, on_step=show)
    finally:
        if tracer:
            tracer.close()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_result(result)
    if result.status == "error":
        sys.exit(1)


def _print_result(result) -> None:  # type: ignore[no-untyped-def]
    out = Console(soft_wrap=True)
    if result.status == "error":
        Console(stderr=True).print(f"[red]Error:[/red] {escape(result.error or 'unknown error')}")
        return
    out.print(escape(result.answer), highlight=False)
    if result.error:
        out.print(f"[yellow]{escape(result.error)}[/yellow]")
    if result.citations:
        out.print()
        for n, c in enumerate(result.citations, start=1):
            page = f" p.{c.page}" if c.page is not None else ""
            mark = "✓" if c.verified else "✗"
            out.print(f"[{n}] {mark} {escape(c.path or '?')}{page} ({c.chunk_id}): \"{escape(c.quote)}\"",
                      highlight=False)
    out.print(f"[dim]{result.status}; {result.steps} steps, {result.tokens_in} tokens in, "
              f"{result.tokens_out} out[/dim]")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
@click.pass_context
@user_errors
def sessions(ctx: click.Context, as_json: bool) -> None:
    """List saved sessions (created with --session NAME)."""
    from docmem.agent.recall import Recall
    from docmem.agent.session import recall_path

    settings = settings_from(ctx)
    path = recall_path(settings)
    infos = []
    if path.exists():
        recall = Recall(path, "")
        infos = recall.sessions()
        recall.close()
    if as_json:
        click.echo(json.dumps([i.__dict__ for i in infos], indent=2))
        return
    if not infos:
        click.echo("No saved sessions. Start one with: docmem ask QUESTION --session NAME")
    for i in infos:
        when = datetime.fromtimestamp(i.updated).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{i.name:<24} corpus {i.corpus:<16} {i.events:>5} events   last used {when}")
