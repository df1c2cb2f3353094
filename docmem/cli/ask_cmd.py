"""``docmem ask``: one question, a cited answer (or a file of them: ``--questions``, in
``ask_batch``); ``docmem sessions``: saved sessions."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console

from docmem.cli.common import corpus_option, qdrant_options, settings_from, shown, user_errors


def _setting(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Keep a flag for ``settings_from`` without adding a parameter to every command."""
    if value is not None and param.name:
        ctx.ensure_object(dict)[param.name] = value


def tools_option(fn):  # type: ignore[no-untyped-def]
    return click.option("--tools", "tools", type=click.Choice(["auto", "minimal", "full"]), default=None,
                        help="Functions offered to the model: full, minimal (search, read, answer: about a "
                             "quarter of the schema tokens, for small models), auto (minimal below a 6k "
                             "window; the default; setting `tools`).")(fn)


def llm_options(fn):  # type: ignore[no-untyped-def]
    fn = click.option("--constrain", type=click.Choice(["auto", "on", "off"]), default=None,
                      expose_value=False, callback=_setting,
                      help="Each reply must follow a JSON schema of the calls the model may make now "
                           "(response_format; auto: with the minimal tool set; setting constrain).")(fn)
    fn = click.option("--first-search", type=click.Choice(["auto", "on", "off"]), default=None,
                      expose_value=False, callback=_setting,
                      help="docmem runs archival_search with the question before the model's first step "
                           "(auto: with the minimal tool set, for small models; setting first_search).")(fn)
    fn = click.option("--tool-choice", type=click.Choice(["required", "auto"]), default=None,
                      expose_value=False, callback=_setting,
                      help="Ask for a function call every step (required, the default) or let the model "
                           "choose (auto). A server that rejects required gets auto, remembered.")(fn)
    fn = click.option("--max-tokens", type=click.IntRange(1), default=None, expose_value=False,
                      callback=_setting,
                      help="Cap on each reply, sent on every call (default: the reply reserve, 1/8 of the "
                           "context window; 384 with the minimal tool set).")(fn)
    fn = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                      expose_value=False, callback=_setting,
                      help="Seconds of silence accepted from the LLM server (default 120); a model that is "
                           "producing tokens is never cut off.")(fn)
    fn = click.option("--context-window", type=int, default=None,
                      help="Tokens of main context (may be set below the model's real window).")(fn)
    fn = click.option("--api-key", default=None, help="API key (default: $OPENAI_API_KEY).")(fn)
    fn = click.option("--base-url", default=None,
                      help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama).")(fn)
    return click.option("--model", "-m", default=None, help="Model name (default: $DOCMEM_MODEL).")(fn)


@click.command()
@click.argument("question", required=False)
@corpus_option
@click.option("--questions", "questions_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Batch: a file of questions (text, one a line; .jsonl with id/question; .csv with a "
                   "question column).")
@click.option("--out", "outs", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
              help="Batch: output file(s), by extension: .jsonl (records, resumable), .csv, .md (report). "
                   "Repeatable. Default: QUESTIONS_FILE's name + .answers.jsonl.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Batch: questions asked at once (mind the API's rate limit).")
@click.option("--rerun-stale", is_flag=True,
              help="Batch: after a re-ingest, re-answer the questions whose cited passages changed or "
                   "disappeared; keep the rest.")
@click.option("--share-memory", is_flag=True,
              help="Batch: notes the agent stores while answering one question are visible to the next.")
@click.option("--stop-after-failures", type=click.IntRange(0), default=5, show_default=True,
              help="Batch: stop after this many failed questions in a row (0: never).")
@click.option("--session", default=None, help="Persist and resume memory under this name.")
@click.option("--json", "as_json", is_flag=True, help="Structured result on stdout (batch: the run's summary).")
@click.option("--trace", type=click.Path(path_type=Path), default=None,
              help="Write every step as JSONL (batch: a folder, one FILE per question).")
@click.option("--allow-unverified", is_flag=True,
              help="Exit 0 even when a reply has no verified citation (status 'unverified').")
@click.option("--max-steps", type=int, default=24, show_default=True, help="Step budget for one question.")
@click.option("--quiet", "-q", is_flag=True, help="No live activity on stderr.")
@tools_option
@llm_options
@qdrant_options
@click.pass_context
@user_errors
def ask(ctx: click.Context, question: str | None, corpus: str | None, questions_file: Path | None,
        outs: tuple[Path, ...], jobs: int, rerun_stale: bool, share_memory: bool, stop_after_failures: int,
        session: str | None, as_json: bool, trace: Path | None, allow_unverified: bool, max_steps: int,
        quiet: bool, model: str | None, base_url: str | None, api_key: str | None, context_window: int | None,
        tools: str | None, qdrant_url: str | None, qdrant_api_key: str | None) -> None:
    """Answer QUESTION from a corpus, with verified citations.

    \b
    Batch: docmem ask --questions FILE [--out answers.jsonl --out answers.csv --out report.md]
    Re-running resumes: questions already answered for the same corpus state are skipped.

    \b
    Statuses: answered (verified citations), abstained (not in the corpus; lists what was
    searched), unverified (a reply with no verified citation: exit 1 unless
    --allow-unverified), error.
    """
    settings = settings_from(ctx, corpus=corpus, model=model, base_url=base_url, api_key=api_key,
                             context_window=context_window, tools=tools, qdrant_url=qdrant_url,
                             qdrant_api_key=qdrant_api_key)
    if questions_file is not None:
        if question is not None:
            raise click.UsageError("give a QUESTION or --questions FILE, not both")
        if session is not None:
            raise click.UsageError("--session works with one QUESTION, not with --questions")
        from docmem.cli.ask_batch import ask_batch

        code = ask_batch(settings, questions_file, list(outs), jobs=jobs, rerun_stale=rerun_stale,
                         share_memory=share_memory, stop_after_failures=stop_after_failures,
                         max_steps=max_steps, quiet=quiet, as_json=as_json, trace=trace,
                         allow_unverified=allow_unverified)
        sys.exit(code)
    if question is None:
        raise click.UsageError("give a QUESTION, or --questions FILE for a batch")
    batch_only = {"--out": bool(outs), "--rerun-stale": rerun_stale, "--share-memory": share_memory}
    for flag, given in batch_only.items():
        if given:
            raise click.UsageError(f"{flag} needs --questions FILE")
    from docmem.agent.describe import describe
    from docmem.agent.loop import FinalStep, Trace
    from docmem.api import connect

    err = Console(stderr=True, soft_wrap=True)

    def show(step) -> None:  # type: ignore[no-untyped-def]
        line = describe(step)
        if line and not quiet:
            err.print(f"[dim]· {shown(line)}[/dim]", highlight=False)

    from docmem.agent.session import make_processor

    processor = make_processor(settings)  # before the corpus: fail fast on config
    if trace is not None and trace.is_dir():
        raise click.UsageError(f"--trace {trace} is a folder: give a file for one QUESTION (a folder is for "
                               "--questions, one file per question)")
    tracer = Trace(trace) if trace else None
    result = None
    try:
        with connect(settings) as service:
            for step in service.ask(question, session=session, max_steps=max_steps, processor=processor):
                if tracer:
                    tracer.write(step)
                show(step)
                if isinstance(step, FinalStep):
                    result = step.result
    except KeyboardInterrupt:
        saved = (f"session '{shown(session)}' is saved up to its last finished step: ask again with "
                 f"--session {shown(session)} to go on" if session else "nothing was saved (no --session)")
        err.print(f"Interrupted: {saved}.", highlight=False)
        sys.exit(130)
    finally:
        if tracer:
            tracer.close()
    assert result is not None
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_result(result)
    if result.status == "error" or (result.status == "unverified" and not allow_unverified):
        sys.exit(1)


def _print_result(result) -> None:  # type: ignore[no-untyped-def]
    out = Console(soft_wrap=True)
    if result.status == "error":
        Console(stderr=True).print(f"[red]Error:[/red] {shown(result.error or 'unknown error')}")
        return
    out.print(shown(result.answer, lines=True), highlight=False)
    if result.status == "unverified":
        out.print(f"[yellow]unverified: {shown(result.error or 'no citation was verified')}[/yellow]")
    elif result.error:
        out.print(f"[yellow]{shown(result.error)}[/yellow]")
    if result.citations:
        out.print()
        for n, c in enumerate(result.citations, start=1):
            page = f" p.{c.page}" if c.page is not None else ""
            mark = "✓" if c.verified else "✗"
            out.print(f"[{n}] {mark} {shown(c.path or '?')}{page} ({c.chunk_id}): \"{shown(c.quote)}\"",
                      highlight=False)
    out.print(f"[dim]{result.status}; {result.steps} steps, {result.tokens_in} tokens in, "
              f"{result.tokens_out} out[/dim]")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Structured output.")
@click.option("--delete", "delete", metavar="NAME", default=None,
              help="Delete a session: its memory, recall and the notes it stored in its corpus.")
@click.pass_context
@user_errors
def sessions(ctx: click.Context, as_json: bool, delete: str | None) -> None:
    """List saved sessions (created with --session NAME, or by `docmem chat`)."""
    from docmem.agent.session import delete_session
    from docmem.api import connect

    with connect(settings_from(ctx)) as service:
        if delete:
            delete_session(service, delete)
            click.echo(f"Deleted session '{delete}'.")
            return
        infos = service.sessions()
    if as_json:
        click.echo(json.dumps([i.__dict__ for i in infos], indent=2))
        return
    if not infos:
        click.echo("No saved sessions. Start one with: docmem ask QUESTION --session NAME")
    for i in infos:
        when = datetime.fromtimestamp(i.updated).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{i.name:<24} corpus {i.corpus:<16} {i.events:>5} events   last used {when}")
