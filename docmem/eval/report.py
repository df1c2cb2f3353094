"""From result records to summary rows and the terminal table.

A results file holds a ``run`` record (what was run, on which model, when), one ``result``
record per question and system, and an ``end`` record (spending, why it stopped). Several
files (several models) can be summarized together: rows are grouped by (model, system, x),
where x is the nesting level or the number of documents K (None for docmem on doc-qa,
which is not limited by K).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from docmem.errors import DocmemError
from docmem.eval.stats import Proportion

TASK_TITLES = {"nested-kv": "Nested key-value retrieval", "doc-qa": "Multi-document QA (NQ-Open)"}


@dataclass
class Run:
    path: Path
    header: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def task(self) -> str:
        return str(self.header.get("task"))

    @property
    def model(self) -> str:
        return str(self.header.get("model"))


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run in the given JSONL files (a file may hold several, e.g. appended by hand)."""
    runs: list[Run] = []
    for path in paths:
        by_id: dict[str, Run] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise DocmemError(f"cannot read {path}: {exc.strerror or exc}") from None
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise DocmemError(f"{path}:{n} is not JSON: is this a `docmem eval` results file?") from None
            kind, run_id = record.get("type"), record.get("run")
            if kind == "run":
                by_id[run_id] = Run(path, record)
                runs.append(by_id[run_id])
            elif run_id in by_id and kind == "result":
                by_id[run_id].results.append(record)
            elif run_id in by_id and kind == "end":
                by_id[run_id].end = record
        if not by_id:
            raise DocmemError(f"{path} holds no `docmem eval` run")
    tasks = {r.task for r in runs}
    if len(tasks) > 1:
        raise DocmemError(f"these files mix tasks ({', '.join(sorted(tasks))}): report one task at a time")
    return runs


@dataclass
class Row:
    model: str
    system: str
    x: int | None
    n: int = 0
    correct: int = 0
    matched: int = 0  # string match alone (doc-qa), before the judge
    judged: int = 0
    retrieved: int = 0  # gold passage retrieved / seen (doc-qa)
    in_context: int = 0  # a gold answer string reached the model (doc-qa)
    tokens_in: int = 0
    tokens_out: int = 0
    steps: int = 0
    cost: float = 0.0
    did_not_fit: int = 0
    errors: int = 0
    abstained: int = 0
    unverified: int = 0  # docmem replies with no verified citation (scored wrong)
    has_retrieval: bool = False

    @property
    def accuracy(self) -> Proportion:
        return Proportion(self.correct, self.n)

    @property
    def retrieval(self) -> Proportion:
        return Proportion(self.retrieved, self.n)

    def per(self, total: float) -> float:
        return total / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.accuracy.interval
        data = {"model": self.model, "system": self.system, "x": self.x, "n": self.n,
                "accuracy": round(self.accuracy.value, 4), "ci95": [round(lo, 4), round(hi, 4)],
                "tokens_in_per_answer": round(self.per(self.tokens_in), 1),
                "tokens_out_per_answer": round(self.per(self.tokens_out), 1),
                "steps_per_answer": round(self.per(self.steps), 2), "cost": round(self.cost, 6),
                "errors": self.errors, "did_not_fit": self.did_not_fit, "abstained": self.abstained,
                "unverified": self.unverified}
        if self.has_retrieval:
            data["gold_retrieved"] = round(self.retrieval.value, 4)
            data["answer_in_context"] = round(self.per(self.in_context), 4)
            data["string_match"] = round(self.per(self.matched), 4)
        return data


def summarize(runs: list[Run]) -> list[Row]:
    rows: dict[tuple[str, str, int | None], Row] = {}
    for run in runs:
        for r in run.results:
            key = (r.get("model") or run.model, r["system"], r.get("x"))
            row = rows.setdefault(key, Row(*key))
            row.n += 1
            row.correct += bool(r.get("correct"))
            row.matched += bool(r.get("match"))
            row.judged += r.get("judge") is not None
            row.tokens_in += int(r.get("tokens_in") or 0)
            row.tokens_out += int(r.get("tokens_out") or 0)
            row.steps += int(r.get("steps") or 0)
            row.cost += float(r.get("cost") or 0.0)
            row.did_not_fit += r.get("status") == "did_not_fit"
            row.errors += r.get("status") == "error"
            row.abstained += r.get("status") == "abstained"
            row.unverified += r.get("status") == "unverified"
            if "gold_retrieved" in r:
                row.has_retrieval = True
                row.retrieved += bool(r.get("gold_retrieved"))
                row.in_context += bool(r.get("answer_in_context"))
    return sorted(rows.values(), key=lambda w: (w.model, w.system != "docmem", w.x if w.x is not None else -1))


def table(runs: list[Run], rows: list[Row]) -> Table:
    task = runs[0].task
    head = runs[0].header
    judged = any(r.judged for r in rows)
    models = sorted({r.model for r in rows})
    if task == "nested-kv":
        caption = f"{head.get('pairs')} pairs, {head.get('samples')} samples per level"
    else:
        caption = (f"{head.get('questions')} questions, {head.get('pool')} passages in the corpus; docmem "
                   "pages the whole corpus (not limited by K)")
    grid = Table(title=f"{TASK_TITLES.get(task, task)} — {', '.join(models)}",
                 caption=caption + "; accuracy with 95% Wilson interval", title_justify="left")
    many = len(models) > 1
    if many:
        grid.add_column("model")
    grid.add_column("system")
    grid.add_column("level" if task == "nested-kv" else "K docs", justify="right")
    grid.add_column("n", justify="right")
    grid.add_column("accuracy [95% CI]", justify="right")
    if task == "doc-qa":
        grid.add_column("gold passage\nretrieved", justify="right")
        grid.add_column("answer in\ncontext", justify="right")
        if judged:
            grid.add_column("string match\nalone", justify="right")
    grid.add_column("tokens in / out\nper answer", justify="right")
    grid.add_column("steps per\nanswer", justify="right")
    grid.add_column("notes")
    for row in rows:
        cells = [row.model] if many else []
        x = "all" if row.x is None else str(row.x)
        cells += [row.system, x, str(row.n), str(row.accuracy)]
        if task == "doc-qa":
            cells += [f"{row.retrieval.value:.2f}", f"{row.per(row.in_context):.2f}"]
            if judged:
                cells.append(f"{row.per(row.matched):.2f}")
        cells += [f"{row.per(row.tokens_in):,.0f} / {row.per(row.tokens_out):,.0f}", f"{row.per(row.steps):.1f}",
                  _notes(row)]
        grid.add_row(*cells)
    return grid


def _notes(row: Row) -> str:
    notes = []
    if row.did_not_fit:
        notes.append(f"{row.did_not_fit} did not fit the window (scored wrong)")
    if row.errors:
        notes.append(f"{row.errors} errors")
    if row.abstained:
        notes.append(f"{row.abstained} abstained")
    if row.unverified:
        notes.append(f"{row.unverified} unverified (no verified citation; scored wrong)")
    if row.cost:
        notes.append(f"${row.cost:.4f}")
    return "; ".join(notes)


def print_report(runs: list[Run], rows: list[Row], console: Console | None = None) -> None:
    console = console or Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    console.print(table(runs, rows))
    for run in runs:
        end = run.end or {}
        if end.get("stopped"):
            console.print(f"[yellow]{run.path.name}: stopped early: {end['stopped']}[/yellow]")
        spent = f", ${end['cost']:.4f}" if end.get("cost") else ""
        if end:
            console.print(f"[dim]{run.path.name}: {end.get('calls', 0)} LLM calls, "
                          f"{end.get('tokens_in', 0):,} tokens in, {end.get('tokens_out', 0):,} out{spent}, "
                          f"{end.get('seconds', 0)} s[/dim]")
