"""``docmem eval``: the MemGPT paper's experiments on any model, with tables and plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docmem.cli.ask_cmd import llm_options
from docmem.cli.common import settings_from, user_errors
from docmem.errors import DocmemError

if TYPE_CHECKING:  # the eval modules are imported when a command runs, not at CLI start
    from docmem.config import Settings
    from docmem.eval.corpora import IngestFn
    from docmem.eval.harness import Harness, RunOptions

SYSTEM_CHOICES = ("docmem", "baseline")


def _int_list(text: str, what: str) -> tuple[int, ...]:
    """``0-4``, ``1,5,10`` or a mix (``0-2,4``)."""
    values: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
                values.extend(range(first, last + 1))
            elif part:
                values.append(int(part))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected numbers like 0-4 or 1,5,10", param_hint=what) from None
    if not values or min(values) < 0:
        raise click.BadParameter(f"{text!r}: give at least one number, none negative", param_hint=what)
    return tuple(sorted(set(values)))


def _systems(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = set(chosen) - set(SYSTEM_CHOICES)
    if unknown or not chosen:
        raise click.BadParameter(f"{text!r}: choose from {', '.join(SYSTEM_CHOICES)}", param_hint="--systems")
    return tuple(s for s in SYSTEM_CHOICES if s in chosen)


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What both tasks take, besides the LLM options of ``docmem ask``."""
    options = [
        click.option("--out", type=click.Path(path_type=Path), default=Path("docmem-eval"), show_default=True,
                     help="Folder for the results JSONL, the traces and the PNG plot."),
        click.option("--systems", default="docmem,baseline", show_default=True,
                     help="Which systems to run: docmem, baseline, or both."),
        click.option("--baseline-window", type=int, default=None,
                     help="The baseline's context window in tokens (default: --context-window)."),
        click.option("--max-steps", type=int, default=24, show_default=True,
                     help="docmem's step budget per question."),
        click.option("--embedder", default=None,
                     help="Embedder of the eval corpora: bundled (default), openai:MODEL, or none (BM25 only)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Which questions/instances are drawn."),
        click.option("--data", type=click.Path(path_type=Path), default=None,
                     help="The shared data file (or its folder)."),
        click.option("--max-questions", type=int, default=None, help="Stop after this many questions."),
        click.option("--max-cost", type=float, default=None,
                     help="Stop before a question that would take spending past this many US dollars."),
        click.option("--price-in", type=float, default=0.0, show_default=True, help="US$ per 1M input tokens."),
        click.option("--price-out", type=float, default=0.0, show_default=True, help="US$ per 1M output tokens."),
        click.option("--dry-run", is_flag=True, help="Print the expected calls, tokens and cost; call nothing."),
        click.option("--fresh", is_flag=True, help="Rebuild the eval corpora instead of reusing them."),
        click.option("--label", default=None, help="A note for the plot title (e.g. 'quantized 4-bit')."),
        click.option("--quiet", "-q", is_flag=True, help="No per-question progress on stderr."),
        click.option("--json", "as_json", is_flag=True,
                     help="The summary (or the --dry-run plan) as JSON on stdout; progress stays on stderr."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return llm_options(fn)


@click.group(name="eval", invoke_without_command=True)
@click.option("--clean", is_flag=True,
              help="Delete the corpora evaluations built (under the data home's eval/ folder; "
                   "`docmem corpora` lists them). The next run rebuilds what it needs.")
@click.pass_context
@user_errors
def eval_group(ctx: click.Context, clean: bool) -> None:
    """Reproduce the MemGPT paper's experiments with any model, against a fixed-context baseline.

    \b
    docmem eval nested-kv --levels 0-4 --samples 30 --model gpt-4o-mini
    docmem eval doc-qa --docs 1,5,10,20,50,100 --n-questions 50 --model llama3.1 \\
        --base-url http://localhost:11434/v1
    docmem eval report docmem-eval/*.jsonl      # table and plot again, several models in one
    docmem eval --clean                         # delete the eval corpora
    """
    if clean:
        from docmem.eval.corpora import clean_eval_corpora

        names, freed = clean_eval_corpora(settings_from(ctx))
        click.echo(f"Removed {len(names)} eval corpora ({freed / 2**20:.1f} MB)." if names
                   else "No eval corpora to remove.")
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@eval_group.command("nested-kv")
@click.option("--levels", default="0-4", show_default=True, help="Nesting levels, e.g. 0-4 or 0,2,4.")
@click.option("--pairs", type=int, default=140, show_default=True, help="Key-value pairs per instance.")
@click.option("--samples", type=int, default=30, show_default=True, help="Instances per level.")
@run_options
@click.pass_context
@user_errors
def nested_kv_cmd(ctx: click.Context, levels: str, pairs: int, samples: int, **opts: Any) -> None:
    """Nested key-value retrieval: UUID pairs in archival storage, lookups chained LEVEL times."""
    from docmem.eval import nested_kv

    settings, options = _setup(ctx, "nested-kv", opts)
    params = nested_kv.KVParams(levels=_int_list(levels, "--levels"), pairs=pairs, samples=samples,
                                seed=opts["seed"], data=opts["data"],
                                embedder=opts["embedder"] or settings.embedder, fresh=opts["fresh"])
    if pairs < 1 or samples < 1:
        raise DocmemError("--pairs and --samples must be at least 1")
    if max(params.levels) >= pairs:
        raise DocmemError(f"--levels up to {max(params.levels)} need more than {max(params.levels)} pairs")
    nested_kv.base_pairs(params, 0)  # fail now on bad --data, before any file is written
    if opts["dry_run"]:
        from docmem.tokens import TokenCounter

        rows = nested_kv.plan(params, TokenCounter(settings.model), settings.page_size, options.systems,
                              options.max_questions)
        _print_plan("nested-kv", "level", rows, options, as_json=opts["as_json"])
        return
    _run(settings, options, opts, lambda harness, ingest: nested_kv.run(harness, params, ingest))


@eval_group.command("doc-qa")
@click.option("--docs", default="1,5,10,20,50,100", show_default=True,
              help="Values of K: passages the baseline gets in its prompt.")
@click.option("--n-questions", "questions", type=int, default=50, show_default=True,
              help="NQ-Open questions to ask (not `ask --questions FILE`).")
@click.option("--questions", "questions_alias", type=int, default=None, hidden=True,
              deprecated="use --n-questions")
@click.option("--pool", type=int, default=None,
              help="Passages in the corpus: the questions' gold passages plus distractors (default: all).")
@click.option("--judge", "judge_model", default=None,
              help="A model (same endpoint) that judges answers the string match did not accept.")
@run_options
@click.pass_context
@user_errors
def doc_qa_cmd(ctx: click.Context, docs: str, questions: int, questions_alias: int | None, pool: int | None,
               judge_model: str | None, **opts: Any) -> None:
    """Document QA: NQ-Open questions over a pool of Wikipedia passages, accuracy against K.

    The questions and passages ship with docmem (NQ-Open via lost-in-the-middle; MIT and CC BY-SA,
    see docmem/eval/data/README.md); --data PATH reads another copy."""
    from docmem.eval import doc_qa

    questions = questions_alias if questions_alias is not None else questions

    settings, options = _setup(ctx, "doc-qa", opts)
    ks = _int_list(docs, "--docs")
    if 0 in ks:
        raise click.BadParameter("K starts at 1", param_hint="--docs")
    if questions < 1:
        raise DocmemError("--n-questions must be at least 1")
    params = doc_qa.QAParams(docs=ks, questions=questions, pool=pool, seed=opts["seed"], data=opts["data"],
                             embedder=opts["embedder"] or settings.embedder, fresh=opts["fresh"])
    doc_qa.select(params)  # fail now on missing data or a bad --pool, before any file is written
    if opts["dry_run"]:
        from docmem.tokens import TokenCounter

        rows = doc_qa.plan(params, TokenCounter(settings.model), settings.page_size, options.systems,
                           options.baseline_window, options.max_questions)
        _print_plan("doc-qa", "K docs", rows, options, judge=judge_model, as_json=opts["as_json"])
        return
    _run(settings, options, opts, lambda harness, ingest: doc_qa.run(harness, params, ingest), judge_model)


@eval_group.command("report")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="Where to draw the plot (default: beside the first file, .png).")
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON on stdout.")
@user_errors
def report_cmd(files: tuple[Path, ...], plot_path: Path | None, as_json: bool) -> None:
    """The table and plot of results files again; several files (models) share one plot."""
    from docmem.eval.plot import plot
    from docmem.eval.report import load_runs, print_report, summarize

    runs = load_runs(list(files))
    rows = summarize(runs)
    target = plot_path or (files[0].with_suffix(".png") if len(files) == 1 else
                           files[0].parent / f"{runs[0].task}-comparison.png")
    drawn = plot(runs, rows, target)
    if as_json:
        _echo_json({"task": runs[0].task, "results": [str(f) for f in files], "plot": str(drawn),
                    "rows": [r.as_dict() for r in rows]})
        return
    print_report(runs, rows)
    click.echo(f"plot: {drawn}")


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# -- shared plumbing ---------------------------------------------------------------------


def _setup(ctx: click.Context, task: str, opts: dict[str, Any]) -> tuple[Settings, RunOptions]:
    from docmem.eval.harness import Prices, RunOptions

    settings = settings_from(ctx, model=opts["model"], base_url=opts["base_url"], api_key=opts["api_key"],
                             context_window=opts["context_window"])
    prices = Prices(opts["price_in"], opts["price_out"])
    if opts["max_cost"] is not None and prices.free:
        raise DocmemError("--max-cost needs prices: add --price-in and --price-out (US$ per 1M tokens)")
    for name in ("max_questions", "max_steps"):
        if opts[name] is not None and opts[name] < 1:
            raise DocmemError(f"--{name.replace('_', '-')} must be at least 1")
    options = RunOptions(task=task, out_dir=opts["out"], systems=_systems(opts["systems"]),
                         window=settings.context_window,
                         baseline_window=opts["baseline_window"] or settings.context_window,
                         max_steps=opts["max_steps"], prices=prices, max_cost=opts["max_cost"],
                         max_questions=opts["max_questions"], label=opts["label"])
    return settings, options


def _ingest_with_progress(err: Console, quiet: bool) -> IngestFn:
    """The ingest pipeline (imported here: only the CLI imports ``ingest``), announcing big builds."""
    from ingest.pipeline import Progress, ingest

    def show(event: Progress) -> None:
        if quiet or event.done or event.total < 100:
            return
        if event.stage == "extract":
            err.print(f"[dim]· eval corpus: indexing {event.total} files…[/dim]")
        elif event.stage == "dense":
            err.print(f"[dim]· eval corpus: dense vectors for {event.total} chunks…[/dim]")

    return lambda corpus, paths: ingest(corpus, paths, workers=1, progress=show)


def _run(settings: Settings, options: RunOptions, opts: dict[str, Any],
         task: Callable[[Harness, IngestFn], Any], judge_model: str | None = None) -> None:
    from docmem.agent.session import make_processor
    from docmem.eval.harness import Harness
    from docmem.eval.plot import plot
    from docmem.eval.report import load_runs, print_report, summarize
    from docmem.llm.openai import from_settings

    err = Console(stderr=True, soft_wrap=True)
    processor = make_processor(settings)
    judge = from_settings(judge_model, settings.base_url, settings.api_key) if judge_model else None

    def notify(line: str) -> None:
        if not opts["quiet"]:
            err.print(f"[dim]· {escape(line)}[/dim]", highlight=False)

    harness = Harness(options, settings, processor, judge=judge, notify=notify)
    end = None
    try:
        task(harness, _ingest_with_progress(err, opts["quiet"]))
    except KeyboardInterrupt:
        harness.stopped = "interrupted (Ctrl-C)"
    finally:
        end = harness.finish()
    if end is None:
        raise DocmemError("the run stopped before its first question; nothing was written")
    runs = load_runs([harness.results_path])
    rows = summarize(runs)
    drawn = None
    if rows:
        try:
            drawn = plot(runs, rows, harness.results_path.with_suffix('.png'))
        except DocmemError as exc:
            err.print(f"[yellow]No plot: {escape(str(exc))}[/yellow]")
    if opts["as_json"]:
        _echo_json({"task": options.task, "results": str(harness.results_path),
                    "traces": str(harness.traces_dir), "plot": str(drawn) if drawn else None,
                    "stopped": harness.stopped, "failed": harness.failed,
                    "rows": [r.as_dict() for r in rows]})
    else:
        print_report(runs, rows)
        out = Console(soft_wrap=True)
        out.print(f"results: {harness.results_path}", highlight=False)
        out.print(f"traces:  {harness.traces_dir}/", highlight=False)
        if drawn:
            out.print(f"plot:    {drawn}", highlight=False)
    if harness.failed:
        sys.exit(1)


def _print_plan(task: str, x_name: str, rows: list[dict[str, Any]], options: RunOptions,
                judge: str | None = None, as_json: bool = False) -> None:
    prices = options.prices
    if as_json:
        _echo_json({"task": task, "dry_run": True, "plan": [
            {**row, "cost": None if prices.free else prices.cost(row["tokens_in"], row["tokens_out"])}
            for row in rows]})
        return
    grid = Table(title=f"docmem eval {task} --dry-run: expected work (estimates; nothing was called)",
                 title_justify="left")
    for name in ("system", x_name, "questions", "LLM calls", "tokens in", "tokens out", "cost (US$)"):
        grid.add_column(name, justify="left" if name == "system" else "right")
    total_calls = total_in = total_out = 0.0
    for row in rows:
        cost = prices.cost(row["tokens_in"], row["tokens_out"])
        grid.add_row(row["system"], "all" if row["x"] is None else str(row["x"]), str(row["questions"]),
                     f"{row['calls']:,.0f}", f"{row['tokens_in']:,.0f}", f"{row['tokens_out']:,.0f}",
                     f"{cost:.4f}" if not prices.free else "-")
        total_calls += row["calls"]
        total_in += row["tokens_in"]
        total_out += row["tokens_out"]
    grid.add_row("total", "", "", f"{total_calls:,.0f}", f"{total_in:,.0f}", f"{total_out:,.0f}",
                 f"{prices.cost(total_in, total_out):.4f}" if not prices.free else "-", style="bold")
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    console.print(grid)
    notes = ["docmem's calls assume it pages efficiently; a model that searches more costs more "
             "(bounded by --max-steps)."]
    if judge:
        notes.append(f"The judge ({judge}) adds at most one call per answer the string match rejects.")
    if prices.free:
        notes.append("No prices given: add --price-in/--price-out (US$ per 1M tokens) for costs.")
    if options.max_cost is not None:
        notes.append(f"--max-cost ${options.max_cost:g} stops the run before a question that would cross it.")
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")
