"""What both tasks share: metering every LLM call, the spending bound, one question asked
to docmem's agent or to the fixed-context baseline, the optional judge, and the results file.

One ``Harness`` per ``docmem eval`` run. Every LLM call goes through ``MeteredProcessor``,
so calls, tokens and cost are counted in one place whatever made them (the agent, its
summarizer, the baseline, the judge). The budget is checked *between* questions, never in
the middle of one, so a question is always scored as the model answered it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Callable

from docmem.agent.functions import TOOLS
from docmem.agent.loop import Agent, CallStep, Trace
from docmem.agent.recall import Recall
from docmem.config import Settings
from docmem.protocols import Completion, LLMError, Message, Processor
from docmem.store.corpus import Corpus
from docmem.tokens import TokenCounter

log = logging.getLogger(__name__)

SYSTEMS = ("docmem", "baseline")
FAILURES_TO_STOP = 3  # consecutive failed LLM calls (after the client's own retries) end a run


def prompt(name: str, **values: Any) -> str:
    """A prompt of ``docmem/eval/prompts/NAME.md`` with ``$placeholders`` filled in."""
    text = (resources.files("docmem.eval") / "prompts" / f"{name}.md").read_text(encoding="utf-8")
    return Template(text).substitute({k: str(v) for k, v in values.items()}).strip()


# -- metering and the budget ------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens; 0 means free (a local model)."""

    price_in: float = 0.0
    price_out: float = 0.0

    def cost(self, tokens_in: float, tokens_out: float) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    @property
    def free(self) -> bool:
        return self.price_in == 0 and self.price_out == 0


@dataclass
class Meter:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: int = 0  # consecutive failed calls
    last_error: str | None = None

    def snapshot(self) -> tuple[int, int, int]:
        return self.calls, self.tokens_in, self.tokens_out


class MeteredProcessor:
    """A ``Processor`` that counts what passes through it (and the failures)."""

    def __init__(self, inner: Processor, meter: Meter) -> None:
        self.inner = inner
        self.meter = meter
        self.model = inner.model

    def complete(self, messages: list[Message], tools: list[dict[str, Any]],
                 on_text: Callable[[str], None] | None = None, *,
                 schema: dict[str, Any] | None = None) -> Completion:
        self.meter.calls += 1
        try:
            completion = self.inner.complete(messages, tools, on_text, schema=schema)
        except LLMError as exc:
            self.meter.failures += 1
            self.meter.last_error = str(exc)
            raise
        self.meter.failures = 0
        self.meter.tokens_in += completion.tokens_in
        self.meter.tokens_out += completion.tokens_out
        return completion


@dataclass(frozen=True)
class Estimate:
    """Expected calls and tokens of one question for one system (for --dry-run and the budget)."""

    calls: float
    tokens_in: float
    tokens_out: float


@dataclass(frozen=True)
class Prior:
    """The expected cost of one call pattern of a question: measured costs are kept per
    (system, key), e.g. (baseline, nesting level 3), and replace the estimate once known."""

    system: str
    key: Any
    estimate: Estimate


class Budget:
    """--max-cost and --max-questions: checked before each question, never during one."""

    def __init__(self, prices: Prices, max_cost: float | None, max_questions: int | None) -> None:
        self.prices = prices
        self.max_cost = max_cost
        self.max_questions = max_questions
        self.questions = 0
        self.spent = 0.0
        self._measured: dict[tuple[str, Any], list[float]] = {}

    def charge(self, system: str, key: Any, tokens_in: int, tokens_out: int) -> float:
        cost = self.prices.cost(tokens_in, tokens_out)
        self.spent += cost
        self._measured.setdefault((system, key), []).append(cost)
        return cost

    def expected(self, system: str, key: Any, prior: Estimate) -> float:
        """Mean measured cost of this kind of question, else the prior estimate."""
        seen = self._measured.get((system, key)) or [
            c for (s, _), costs in self._measured.items() if s == system for c in costs]
        if seen:
            return max(sum(seen) / len(seen), 0.0)
        return self.prices.cost(prior.tokens_in, prior.tokens_out)

    def refuse(self, expected_cost: float) -> str | None:
        """Why the next question must not start, or None."""
        if self.max_questions is not None and self.questions >= self.max_questions:
            return f"--max-questions {self.max_questions} reached"
        if self.max_cost is not None and self.spent + expected_cost > self.max_cost:
            return (f"--max-cost ${self.max_cost:g} reached (spent ${self.spent:.4f}, next question "
                    f"expected ${expected_cost:.4f})")
        return None


# -- one question, one system ----------------------------------------------------------


@dataclass
class Outcome:
    """What one system produced on one question, with what it cost."""

    system: str
    # docmem: answered (verified citations) | unverified (scored wrong) | abstained | error;
    # the baseline, which cannot cite: answered | error | did_not_fit
    status: str
    answer: str
    steps: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    cost: float = 0.0
    error: str | None = None
    trace: str | None = None  # relative to the results file's folder
    searches: list[dict[str, Any]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # tool results the agent read (docmem only)
    verified: bool | None = None  # every citation verified (docmem only)

    def fields(self) -> dict[str, Any]:
        return {"system": self.system, "status": self.status, "answer": self.answer,
                "steps": self.steps, "calls": self.calls, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "seconds": round(self.seconds, 3),
                "cost": round(self.cost, 6), "error": self.error, "trace": self.trace,
                "searches": len(self.searches), "verified": self.verified}


def agent_estimate(counter: TokenCounter, question_tokens: int, calls: int, page_tokens: int) -> Estimate:
    """An agent question: every call resends the system prompt and tools, plus a growing queue."""
    fixed = (counter.count(_system_prompt()) + counter.count(json.dumps([t.schema() for t in TOOLS]))
             + question_tokens + 120)
    tokens_in = sum(fixed + i * (page_tokens + 60) for i in range(calls))
    return Estimate(calls, tokens_in, 60 * calls)


def _system_prompt() -> str:
    from docmem import prompts

    return prompts.load("system")


# -- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    task: str  # "nested-kv" | "doc-qa"
    out_dir: Path
    systems: tuple[str, ...] = SYSTEMS
    window: int = 8192  # docmem's main context
    baseline_window: int = 8192  # the baseline's whole prompt + reply
    max_steps: int = 24
    prices: Prices = Prices()
    max_cost: float | None = None
    max_questions: int | None = None
    label: str | None = None  # extra words for plot titles, e.g. "fake server"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


class Harness:
    """One eval run: the results JSONL, per-question traces, metering and the budget."""

    def __init__(self, options: RunOptions, settings: Settings, processor: Processor,
                 judge: Processor | None = None, notify: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.settings = settings
        self.meter = Meter()
        self.llm = MeteredProcessor(processor, self.meter)
        self.judge_llm = MeteredProcessor(judge, self.meter) if judge is not None else None
        self.model = processor.model
        self.counter = TokenCounter(self.model)
        self.budget = Budget(options.prices, options.max_cost, options.max_questions)
        self.notify = notify or (lambda _text: None)
        self.started = datetime.now(timezone.utc).astimezone()
        self.run_id = f"{self.started:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        options.out_dir.mkdir(parents=True, exist_ok=True)
        self.stem = f"{options.task}-{slug(self.model)}-{self.run_id}"
        self.results_path = options.out_dir / f"{self.stem}.jsonl"
        self.traces_dir = options.out_dir / f"{self.stem}.traces"
        self.traces_dir.mkdir(exist_ok=True)
        self.stopped: str | None = None  # why the run ended early
        self.failed = False  # ... and whether that was the LLM failing
        self._headed = False
        self._fh = open(self.results_path, "a", encoding="utf-8")

    # -- records --------------------------------------------------------------------

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()

    def header(self, params: dict[str, Any]) -> dict[str, Any]:
        from docmem import __version__

        record = {"type": "run", "run": self.run_id, "task": self.options.task, "model": self.model,
                  "date": self.started.isoformat(timespec="seconds"), "docmem": __version__,
                  "systems": list(self.options.systems), "window": self.options.window,
                  "baseline_window": self.options.baseline_window, "max_steps": self.options.max_steps,
                  "page_size": self.settings.page_size, "fusion": self.settings.fusion,
                  "label": self.options.label,
                  "judge": getattr(self.judge_llm, "model", None), **params}
        self.write(record)
        self._headed = True
        return record

    def result(self, fields: dict[str, Any]) -> dict[str, Any]:
        record = {"type": "result", "run": self.run_id, "task": self.options.task, "model": self.model,
                  **fields}
        self.write(record)
        return record

    def finish(self) -> dict[str, Any] | None:
        """The ``end`` record; a run that failed before it started leaves no files behind."""
        if not self._headed:
            self._fh.close()
            self.results_path.unlink(missing_ok=True)
            shutil.rmtree(self.traces_dir, ignore_errors=True)
            return None
        record = {"type": "end", "run": self.run_id, "stopped": self.stopped,
                  "questions": self.budget.questions, "calls": self.meter.calls,
                  "tokens_in": self.meter.tokens_in, "tokens_out": self.meter.tokens_out,
                  "cost": round(self.budget.spent, 6),
                  "seconds": round((datetime.now(timezone.utc) - self.started).total_seconds(), 1)}
        self.write(record)
        self._fh.close()
        return record

    # -- flow control ----------------------------------------------------------------

    def may_start(self, priors: list[Prior]) -> bool:
        """Before a question: does the budget allow running it on every system?"""
        if self.stopped:
            return False
        expected = sum(self.budget.expected(p.system, p.key, p.estimate) for p in priors)
        self.stopped = self.budget.refuse(expected)
        if self.stopped is None:
            self.budget.questions += 1
        return self.stopped is None

    def check_failures(self) -> None:
        if self.meter.failures >= FAILURES_TO_STOP and not self.stopped:
            self.stopped = f"{self.meter.failures} LLM calls failed in a row; last: {self.meter.last_error}"
            self.failed = True

    def _trace_path(self, name: str) -> tuple[Path, str]:
        path = self.traces_dir / f"{slug(name)}.jsonl"
        return path, str(path.relative_to(self.options.out_dir))

    def _charged(self, outcome: Outcome, key: Any, before: tuple[int, int, int],
                 counted: tuple[int, int] = (0, 0)) -> Outcome:
        """``counted``: the agent's own token counts, for calls whose server sent no usage (a
        stream docmem closed once the call was complete): docmem's rows read 0 / 0 tokens."""
        calls, tokens_in, tokens_out = (now - then for now, then in zip(self.meter.snapshot(), before))
        if not tokens_in:
            tokens_in, tokens_out = counted
        outcome.calls, outcome.tokens_in, outcome.tokens_out = calls, tokens_in, tokens_out
        outcome.cost = self.budget.charge(outcome.system, key, tokens_in, tokens_out)
        self.check_failures()
        return outcome

    # -- the two systems -------------------------------------------------------------

    def ask_agent(self, corpus: Corpus, question: str, name: str, key: Any) -> Outcome:
        """docmem's paging agent over ``corpus``, in a throwaway session."""
        path, rel = self._trace_path(f"docmem-{name}")
        recall = Recall(":memory:", f"eval-{uuid.uuid4().hex[:8]}")
        agent = Agent(self.llm, corpus, recall, window=self.options.window, model=self.model,
                      max_steps=self.options.max_steps, page_size=self.settings.page_size,
                      tools=self.settings.tools, note_tokens=self.settings.note_tokens,
                      first_search=self.settings.first_search, constrain=self.settings.constrain)
        seen: list[str] = []

        def on_step(step: Any) -> None:
            if isinstance(step, CallStep) and step.ok and step.name in ("archival_search", "open_document"):
                seen.append(step.result)

        before, started = self.meter.snapshot(), time.perf_counter()
        trace = Trace(path)
        try:
            result = agent.ask(question, trace=trace, on_step=on_step)
        finally:
            trace.close()
            corpus.store.delete_scope(agent.state.notes_scope)  # its notes die with the question
            recall.close()
        outcome = Outcome("docmem", result.status, result.answer, steps=result.steps,
                          seconds=time.perf_counter() - started, error=result.error, trace=rel,
                          searches=result.searches, seen=seen,
                          verified=bool(result.citations) and all(c.verified for c in result.citations))
        return self._charged(outcome, key, before, (result.tokens_in, result.tokens_out))

    def ask_baseline(self, text: str, name: str, key: Any, fits: bool = True,
                     extra: dict[str, Any] | None = None) -> Outcome:
        """The same model, one call, everything it may use in its prompt."""
        path, rel = self._trace_path(f"baseline-{name}")
        messages: list[Message] = [{"role": "user", "content": text}]
        record: dict[str, Any] = {"type": "BaselineCall", "time": time.time(), "messages": messages,
                                  "prompt_tokens": self.counter.count(text), **(extra or {})}
        before, started = self.meter.snapshot(), time.perf_counter()
        if not fits:
            outcome = Outcome("baseline", "did_not_fit", "", error=(
                f"the prompt ({record['prompt_tokens']} tokens) does not fit the baseline window "
                f"({self.options.baseline_window} tokens)"), trace=rel)
            record["skipped"] = outcome.error
        else:
            try:
                completion = self.llm.complete(messages, [], None)
                outcome = Outcome("baseline", "answered", (completion.text or "").strip(), steps=1, trace=rel)
                record.update(reply=completion.text, tokens_in=completion.tokens_in,
                              tokens_out=completion.tokens_out, finish_reason=completion.finish_reason)
            except LLMError as exc:
                outcome = Outcome("baseline", "error", "", steps=1, error=str(exc), trace=rel)
                record["error"] = str(exc)
        outcome.seconds = time.perf_counter() - started
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return self._charged(outcome, key, before)

    def judge(self, question: str, answers: list[str], response: str, outcome: Outcome) -> bool | None:
        """The optional LLM judge, for answers the string match did not accept."""
        if self.judge_llm is None or not response.strip():
            return None
        text = prompt("judge", question=question, answers=json.dumps(answers, ensure_ascii=False),
                      response=response)
        before = self.meter.snapshot()
        try:
            reply = (self.judge_llm.complete([{"role": "user", "content": text}], [], None).text or "")
        except LLMError as exc:
            log.warning("judge failed: %s", exc)
            reply, verdict = f"(failed: {exc})", None
        else:
            upper = reply.upper()
            verdict = False if "INCORRECT" in upper else True if "CORRECT" in upper else None
        _, tokens_in, tokens_out = (now - then for now, then in zip(self.meter.snapshot(), before))
        outcome.cost += self.budget.charge("judge", None, tokens_in, tokens_out)
        if outcome.trace:
            with open(self.options.out_dir / outcome.trace, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"type": "JudgeCall", "time": time.time(), "prompt": text,
                                     "reply": reply, "verdict": verdict}, ensure_ascii=False) + "\n")
        self.check_failures()
        return verdict
