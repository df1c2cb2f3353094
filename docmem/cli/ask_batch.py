"""``docmem ask --questions FILE``: the batch runner, rendered for a terminal (or a log)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from docmem.batch.questions import load_questions
from docmem.batch.reports import output_kind
from docmem.batch.runner import Batch, BatchOptions, BatchProgress, BatchSummary, Plan
from docmem.cli.common import shown
from docmem.config import Settings

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def ask_batch(settings: Settings, questions_file: Path, outs: list[Path], *, jobs: int, rerun_stale: bool,
              share_memory: bool, stop_after_failures: int, max_steps: int, quiet: bool,
              as_json: bool, trace: Path | None = None, allow_unverified: bool = False) -> int:
    """Run the batch; the exit status: 0, 1 when a question failed or (unless ``allow_unverified``)
    has no verified citation, 130 when interrupted."""
    from docmem.agent.session import make_processor
    from docmem.api import connect

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    answers, reports, note = resolve_outputs(questions_file, outs)
    questions, warnings = load_questions(questions_file)
    for warning in warnings:
        err.print(f"[yellow]{shown(warning)}[/yellow]")
    if note and not quiet:
        err.print(f"[dim]{shown(note)}[/dim]")
    if trace is not None and trace.exists() and not trace.is_dir():
        raise click.UsageError(f"--trace {trace}: with --questions, give a folder (one JSONL per question)")
    options = BatchOptions(jobs=jobs, max_steps=max_steps, share_memory=share_memory,
                           rerun_stale=rerun_stale, max_consecutive_failures=stop_after_failures,
                           allow_unverified=allow_unverified, trace_dir=trace)
    view = _View(err, quiet)
    with connect(settings) as service, Batch(service.open_corpus(), settings, questions, answers,
                                             reports=reports, options=options, title=questions_file.name,
                                             progress=view) as batch:
        if batch.loaded.dropped_tail and not quiet:
            err.print(f"[yellow]{answers}: dropped an incomplete last record (an interrupted write); "
                      "that question runs again[/yellow]")
        plan = batch.plan()
        if not quiet:
            _print_plan(err, answers, plan)
        with view, _sigterm_as_interrupt():
            summary = batch.run(plan, lambda: make_processor(settings))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_summary(summary)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    unverified = summary.unverified and not allow_unverified
    return EXIT_FAILED if summary.failed or summary.aborted or unverified else 0


def resolve_outputs(questions_file: Path, outs: list[Path]) -> tuple[Path, list[Path], str | None]:
    """(the answers JSONL, the other outputs, a note for the user)."""
    for path in outs:
        try:
            output_kind(path)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    jsonl = [p for p in outs if output_kind(p) == "jsonl"]
    others = [p for p in outs if output_kind(p) != "jsonl"]
    if len(jsonl) > 1:
        raise click.UsageError("give at most one .jsonl --out: it is the record the run resumes from")
    note = None
    if jsonl:
        answers = jsonl[0]
    elif outs:
        answers = outs[0].with_suffix(".jsonl")
        note = f"answers are kept in {answers} (the record a re-run resumes from)"
    else:
        answers = questions_file.with_name(questions_file.stem + ".answers.jsonl")
        note = f"writing {answers}"
    for path in [answers, *others]:
        if path.resolve() == questions_file.resolve():
            raise click.UsageError(f"--out {path} would overwrite the questions file")
    if len({p.resolve() for p in [answers, *others]}) != len(others) + 1:
        raise click.UsageError("the same --out file is given twice")
    return answers, others, note


def _print_plan(err: Console, answers: Path, plan: Plan) -> None:
    done = f"; {plan.skipped} already answered in this state, skipped" if plan.skipped else ""
    err.print(f"[dim]{shown(str(answers))}: corpus state {plan.state}{done}[/dim]")
    if plan.rechecked:
        err.print(f"[dim]{_n(plan.rechecked, 'answer')} from an older corpus state still "
                  f"{'holds' if plan.rechecked == 1 else 'hold'} (their cited passages are unchanged), kept[/dim]")
    text = {q.id: q.text for q, _ in plan.todo}
    for qid, reasons in plan.stale.items():
        err.print(f"stale: {shown(qid)} {shown(repr(text.get(qid, '')))}: {shown('; '.join(reasons))}")


class _View:
    """Progress events as a rich bar on a terminal, or one line per question in a log."""

    def __init__(self, err: Console, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task: Any = None
        self._moved: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> "_View":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            for handler, stream in self._moved:
                handler.setStream(stream)
            self._moved = []
            self.bar.stop()
            self.bar = None

    def _log_above_bar(self) -> None:
        """Log lines (retries, warnings) print above the bar instead of through it: rich
        swaps sys.stderr for a proxy while the bar runs; point stderr log handlers at it."""
        self._moved = []
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
                self._moved.append((handler, handler.setStream(sys.stderr)))

    def __call__(self, event: BatchProgress) -> None:
        if self.quiet:
            return
        if event.kind == "start":
            if event.message:
                self.err.print(f"[dim]{shown(event.message)}[/dim]")
            if self.err.is_terminal:
                self.bar = Progress(TextColumn("asking"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[tally]}"), TimeElapsedColumn(),
                                    TextColumn("ETA"), TimeRemainingColumn(), console=self.err,
                                    transient=False)
                self.bar.start()
                self._log_above_bar()
                self.task = self.bar.add_task("asking", total=event.total, tally=_tally(event))
            return
        if event.kind in ("interrupt", "abort"):
            self.err.print(f"[yellow]{shown(event.message or '')}[/yellow]")
            return
        if event.kind == "record" and event.record is not None:
            if self.bar is not None:
                self.bar.update(self.task, completed=event.done, tally=_tally(event))
            else:
                r = event.record
                what = r.get("error") if r["status"] == "error" else f"{len(r.get('citations') or [])} citations"
                self.err.print(f"[{event.done}/{event.total}] {r['status']} {shown(str(r['id']))} "
                               f"{shown(_start(r.get('question') or ''))} ({r.get('seconds')} s, "
                               f"{shown(str(what))})")


def _start(question: str, width: int = 48) -> str:
    """The question's first words, quoted, so a progress line says which one it was."""
    flat = " ".join(question.split())
    return f'"{flat}"' if len(flat) <= width else f'"{flat[:width].rsplit(" ", 1)[0]}…"'


def _tally(event: BatchProgress) -> str:
    tokens = event.tokens_in + event.tokens_out
    return (f"[green]{event.answered} answered[/green] · [yellow]{event.unverified} unverified[/yellow] · "
            f"{event.abstained} abstained · [red]{event.failed} failed[/red] · {_short(tokens)} tokens")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _short(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _print_summary(s: BatchSummary) -> None:
    out = Console(soft_wrap=True, highlight=False)
    kept = [f"{s.skipped} already answered"] if s.skipped else []
    kept += [f"{s.rechecked} older still holding"] if s.rechecked else []
    unverified = f"{s.unverified} unverified, " if s.unverified else ""
    out.print(f"{s.questions} questions: ran {s.ran}: {s.answered} answered, {unverified}"
              f"{s.abstained} abstained, {s.failed} failed" + (f" (kept: {', '.join(kept)})" if kept else "")
              + f"; {s.tokens_in:,} tokens in, {s.tokens_out:,} out; {s.seconds:.1f} s")
    if s.stale:
        out.print(f"re-asked {len(s.stale)} stale: " + ", ".join(shown(i) for i in s.stale))
    if s.kept_abstentions:
        out.print(f"kept {_n(len(s.kept_abstentions), 'abstention')} made from an older corpus state (they "
                  "cite nothing, so nothing they rely on changed); delete their lines to ask them again")
    if s.aborted:
        out.print(f"[red]{shown(s.aborted)}[/red]")
    if s.not_run:
        out.print(f"[yellow]{s.not_run} not asked yet: run the same command again to continue[/yellow]")
    elif s.failed:
        out.print("[yellow]run the same command again to retry the failed questions[/yellow]")
    if s.unverified:
        replies = "1 reply" if s.unverified == 1 else f"{s.unverified} replies"
        out.print(f"[yellow]{replies} without a verified citation (status unverified): "
                  "asked again on the next run unless --allow-unverified[/yellow]")
    out.print("wrote " + ", ".join(shown(p) for p in s.outputs))


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` stops the run as Ctrl+C does: the answers file is compacted, reports are written."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. inside a test runner's thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

