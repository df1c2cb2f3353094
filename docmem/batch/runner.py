"""Running a batch: the plan (what to ask, skip or re-ask), then worker threads.

One corpus is opened once and shared by every worker (Qdrant Edge serves concurrent
searches and writes from threads of one process; see docs/batch.md). Each question gets a
fresh agent: its own main context, an in-memory recall, and a notes scope that is either
its own (deleted when it is done) or, with ``share_memory``, one shared by the batch.
Workers only compute; the calling thread writes every record, so the answers file has one
writer and progress events come from one thread.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from docmem import prompts
from docmem.agent.loop import Agent, AnswerResult, Trace
from docmem.agent.recall import Recall
from docmem.batch.answers import DONE, AnswersFile, Loaded, OutputLock, Record, error_record, make_record
from docmem.batch.questions import Question
from docmem.batch.reports import ReportInfo, write_report
from docmem.batch.state import corpus_state, stale_reasons
from docmem.config import Settings
from docmem.errors import DocmemError
from docmem.protocols import Processor
from docmem.store.corpus import Corpus
from docmem.threads import start_thread

log = logging.getLogger(__name__)


class CorpusChanged(DocmemError):
    """Answers in the file were made from another corpus state, and no --rerun-stale."""


@dataclass(frozen=True)
class BatchOptions:
    jobs: int = 4
    max_steps: int = 24
    share_memory: bool = False
    rerun_stale: bool = False
    max_consecutive_failures: int = 5  # stop early when the LLM is clearly unusable; 0: never
    report_every: float = 2.0  # seconds between refreshes of the CSV / Markdown outputs
    allow_unverified: bool = False  # keep "unverified" records on a re-run (else they are asked again)
    trace_dir: Path | None = None  # one JSONL of agent steps per question

    @property
    def done(self) -> tuple[str, ...]:
        """Statuses a re-run keeps."""
        return DONE + ("unverified",) if self.allow_unverified else DONE


@dataclass
class Plan:
    state: str
    todo: list[tuple[Question, str]] = field(default_factory=list)  # (question, why: new | retry | edited | stale | other corpus)
    skipped: int = 0  # done for this corpus state
    stale: dict[str, list[str]] = field(default_factory=dict)  # id -> reasons (re-asked)
    rechecked: int = 0  # older answers whose citations all still hold (kept)
    kept_abstentions: list[str] = field(default_factory=list)  # older abstentions kept (cite nothing)

    def count(self, why: str) -> int:
        return sum(1 for _, w in self.todo if w == why)


@dataclass(frozen=True)
class BatchProgress:
    """One event of a run, for the CLI's progress bar or a test's list."""

    kind: str  # "start" | "record" | "interrupt" | "abort" | "done"
    total: int  # questions to run in this invocation
    done: int = 0
    answered: int = 0
    abstained: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    record: Record | None = None
    message: str | None = None
    unverified: int = 0

    @classmethod
    def tally(cls, kind: str, total: int, summary: BatchSummary, record: Record | None = None) -> BatchProgress:
        """An event carrying the run's counts so far."""
        return cls(kind, total, summary.ran, summary.answered, summary.abstained, summary.failed,
                   summary.tokens_in, summary.tokens_out, record, unverified=summary.unverified)


@dataclass
class BatchSummary:
    questions: int
    skipped: int
    ran: int = 0
    answered: int = 0
    unverified: int = 0  # replies without a verified citation
    abstained: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    stale: dict[str, list[str]] = field(default_factory=dict)
    rechecked: int = 0
    kept_abstentions: list[str] = field(default_factory=list)
    not_run: int = 0  # left for the next run (interrupted or stopped)
    interrupted: bool = False
    aborted: str | None = None
    outputs: list[str] = field(default_factory=list)
    state: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[BatchProgress], None]


class Batch:
    def __init__(self, corpus: Corpus, settings: Settings, questions: list[Question], answers: Path, *,
                 reports: list[Path] | None = None, options: BatchOptions = BatchOptions(),
                 title: str = "questions", progress: Progress | None = None) -> None:
        self.corpus = corpus
        self.settings = settings
        self.questions = questions
        self.file = AnswersFile(answers)
        self.reports = list(reports or [])
        self.options = options
        self.title = title
        self.progress = progress or (lambda _event: None)
        self.lock = OutputLock(answers)
        self.lock.acquire()  # before reading: the file another run is appending to is not ours to plan from
        try:
            self.loaded: Loaded = self.file.load()
        except BaseException:
            self.lock.release()
            raise
        self.latest: dict[str, Record] = self.loaded.latest()
        self.tag = hashlib.sha256(str(answers.resolve()).encode()).hexdigest()[:8]
        self._stop = threading.Event()
        self._running: set[Agent] = set()
        self._running_lock = threading.Lock()

    def close(self) -> None:
        """Release the answers file for the next run (``run`` does it too)."""
        self.file.close()
        self.lock.release()

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the plan ------------------------------------------------------------------

    def plan(self) -> Plan:
        """What this run does. Raises CorpusChanged for older answers without rerun_stale."""
        plan = Plan(corpus_state(self.corpus))
        older: list[Record] = []
        foreign: list[Question] = []  # answered over another corpus: never reused here
        for q in self.questions:
            record = self.latest.get(q.id)
            if record is None:
                plan.todo.append((q, "new"))
            elif " ".join(str(record.get("question", "")).split()) != " ".join(q.text.split()):
                plan.todo.append((q, "edited"))
            elif record.get("status") not in self.options.done:
                plan.todo.append((q, "retry"))
            elif record.get("corpus", self.corpus.name) != self.corpus.name:
                foreign.append(q)
            elif record.get("checked_state") == plan.state:  # this corpus, this state
                plan.skipped += 1
            else:
                older.append(record)
        if (older or foreign) and not self.options.rerun_stale:
            corpora = {str(self.latest[q.id].get("corpus")) for q in foreign}
            other = f" (from corpus {', '.join(repr(c) for c in sorted(corpora))})" if corpora else ""
            raise CorpusChanged(
                f"{len(older) + len(foreign)} answers in {self.file.path} were made from another state of the "
                f"corpus{other} (now {self.corpus.name!r} in state {plan.state}): re-run with --rerun-stale to "
                "re-answer only the questions whose cited passages changed or disappeared (and keep the rest; "
                "answers from another corpus are all asked again), or use another --out to answer all again")
        plan.todo += [(q, "other corpus") for q in foreign]
        if foreign:
            self.loaded.needs_rewrite = True
        if older:
            plan.stale = stale_reasons(self.corpus, older)
            by_id = {q.id: q for q in self.questions}
            for record in older:
                rid = str(record["id"])
                if rid in plan.stale:
                    plan.todo.append((by_id[rid], "stale"))
                    continue
                record["checked_state"] = plan.state  # its citations all hold in this state
                plan.rechecked += 1
                if record.get("status") == "abstained":
                    plan.kept_abstentions.append(rid)
            self.loaded.needs_rewrite = True
        return plan

    # -- the run -------------------------------------------------------------------

    def run(self, plan: Plan, make_processor: Callable[[], Processor] | None = None) -> BatchSummary:
        """Ask ``plan.todo`` on ``jobs`` threads; every record is on disk as soon as it exists."""
        started = time.perf_counter()
        summary = BatchSummary(len(self.questions), plan.skipped, stale=plan.stale, rechecked=plan.rechecked,
                               kept_abstentions=plan.kept_abstentions, state=plan.state)
        todo = list(plan.todo)
        processors = self._processors(todo, make_processor)  # before any file: fail fast on config
        if self.loaded.needs_rewrite:  # drop a partial tail, superseded records; persist rechecks
            self.file.rewrite(self._ordered())
        try:
            if todo:
                self._forget_old_shared_notes(plan.state)
                self._run(plan, todo, processors, summary)
        finally:
            self.file.close()
            try:
                if self.latest or self.file.path.exists():
                    self.file.rewrite(self._ordered())
                self._write_reports(plan.state)
            finally:
                self.lock.release()
            summary.outputs = [str(self.file.path)] + [str(p) for p in self.reports]
            summary.seconds = round(time.perf_counter() - started, 3)
        self.progress(BatchProgress.tally("done", len(todo), summary))
        return summary

    def _processors(self, todo: list[tuple[Question, str]],
                    make_processor: Callable[[], Processor] | None) -> list[Processor]:
        """One LLM client per worker; and a check that the window holds instructions and tools."""
        if not todo:
            return []
        if make_processor is None:
            raise DocmemError("no LLM processor to answer with")
        processors = [make_processor() for _ in range(max(1, min(self.options.jobs, len(todo))))]
        probe = Recall(":memory:", "probe")
        try:
            self._agent(processors[0], probe, "probe")
        finally:
            probe.close()
        return processors

    def _run(self, plan: Plan, todo: list[tuple[Question, str]], processors: list[Processor],
             summary: BatchSummary) -> None:
        jobs = len(processors)
        work: queue.Queue[tuple[Question, str] | None] = queue.Queue()
        for item in todo:
            work.put(item)
        results: queue.Queue[Record | None] = queue.Queue()
        shared = self._shared_scope(plan.state) if self.options.share_memory else None
        threads = [start_thread(self._worker, args=(processors[n], work, results, plan, shared), name=f"batch-{n}")
                   for n in range(jobs)]
        total = len(todo)
        self.progress(BatchProgress("start", total, message=_start_message(plan)))
        alive, consecutive, last_report = jobs, 0, time.monotonic()
        interrupts = 0
        while alive:
            try:
                try:
                    record = results.get(timeout=0.5)
                except queue.Empty:
                    continue
                if record is None:
                    alive -= 1
                    continue
                self._write(record, summary)
                consecutive = consecutive + 1 if record["status"] == "error" else 0
                limit = self.options.max_consecutive_failures
                if limit and consecutive >= limit and not summary.aborted:
                    summary.aborted = (f"stopped after {consecutive} failed questions in a row; last error: "
                                       f"{record.get('error')}")
                    self._halt()
                    self.progress(BatchProgress("abort", total, summary.ran, message=summary.aborted))
                self.progress(BatchProgress.tally("record", total, summary, record))
                if self.reports and time.monotonic() - last_report >= self.options.report_every:
                    self._write_reports(plan.state)
                    last_report = time.monotonic()
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts > 1:
                    break  # what is written stays; the questions in flight run again next time
                self._halt()
                summary.interrupted = True
                self.progress(BatchProgress("interrupt", total, summary.ran, message=(
                    "interrupted: stopping the questions in flight at their next step (they run again next "
                    "time); Ctrl+C again to quit at once")))
        summary.not_run = total - summary.ran
        for processor in processors:
            close = getattr(processor, "close", None)
            if close and not any(t.is_alive() for t in threads):
                close()

    def _worker(self, processor: Processor, work: queue.Queue[tuple[Question, str] | None],
                results: queue.Queue[Record | None], plan: Plan, shared: str | None) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    break
                record = self._ask(processor, item[0], item[1], plan, shared)
                if record is not None:
                    results.put(record)
        finally:
            results.put(None)

    def _ask(self, processor: Processor, question: Question, why: str, plan: Plan,
             shared: str | None) -> Record | None:
        """One question, start to finish; None when it was interrupted (it runs again next time)."""
        scope = shared or f"batch-{self.tag}-{question.id}"
        store = self.corpus.store
        kw: dict[str, Any] = {"model": getattr(processor, "model", None) or self.settings.model,
                              "corpus": self.corpus.name, "state": plan.state,
                              "notes_scope": shared}
        previous = self.latest.get(question.id)
        if why == "stale" and previous is not None:
            kw["stale"] = {"reasons": plan.stale.get(question.id, []), "previous_answer": previous.get("answer"),
                           "previous_state": previous.get("corpus_state")}
        started = time.perf_counter()
        recall = Recall(":memory:", scope)
        agent: Agent | None = None
        trace = self._trace(question)
        try:
            if not shared:
                store.delete_scope(scope)  # what a killed run may have left
            agent = self._agent(processor, recall, scope)
            with self._running_lock:
                self._running.add(agent)
            if self._stop.is_set():
                return None
            text = question.text
            if shared:
                text = prompts.load("batch_shared_memory").format(question=question.text)
            result: AnswerResult = agent.ask(text, trace=trace)
        except Exception as exc:  # a bug or an I/O failure: record it, go on with the others
            log.exception("question %s failed", question.id)
            return error_record(question, f"{type(exc).__name__}: {exc}",
                                seconds=time.perf_counter() - started, **kw)
        finally:
            if agent is not None:
                with self._running_lock:
                    self._running.discard(agent)
            recall.close()
            if trace is not None:
                trace.close()
            if not shared:
                try:
                    store.delete_scope(scope)
                except Exception:  # never lose the answer over a clean-up
                    log.warning("could not delete the notes of %s", scope, exc_info=True)
        if result.status == "interrupted":
            return None
        return make_record(question, result, seconds=time.perf_counter() - started, **kw)

    def _trace(self, question: Question) -> Trace | None:
        """``--trace DIR``: the question's steps, in ``DIR/ID.jsonl`` (a retry starts it afresh)."""
        folder = self.options.trace_dir
        if folder is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_file_name(question.id)}.jsonl"
        path.unlink(missing_ok=True)
        return Trace(path)

    def _agent(self, processor: Processor, recall: Recall, scope: str) -> Agent:
        from docmem.agent.session import agent_options

        return Agent(processor, self.corpus, recall, max_steps=self.options.max_steps, notes_scope=scope,
                     **agent_options(self.settings))

    def _halt(self) -> None:
        """Start no new question, and stop the running ones at their next step."""
        self._stop.set()
        with self._running_lock:
            for agent in self._running:
                agent.interrupt.set()

    def _write(self, record: Record, summary: BatchSummary) -> None:
        self.latest[str(record["id"])] = record  # first: the final compaction keeps it even if
        self.file.append(record)                 # an interrupt lands in the middle of the append
        summary.ran += 1
        summary.tokens_in += int(record.get("tokens_in") or 0)
        summary.tokens_out += int(record.get("tokens_out") or 0)
        if record["status"] == "answered":
            summary.answered += 1
        elif record["status"] == "unverified":
            summary.unverified += 1
        elif record["status"] == "abstained":
            summary.abstained += 1
        else:
            summary.failed += 1

    # -- notes ---------------------------------------------------------------------

    def _shared_scope(self, state: str) -> str:
        return f"batch-{self.tag}-shared-{state}"

    def _forget_old_shared_notes(self, state: str) -> None:
        """Shared notes were made from an older corpus state: they may cite what is gone."""
        prefix, current = f"batch-{self.tag}-shared-", self._shared_scope(state)
        for scope in {str(r.get("notes_scope")) for r in self.latest.values() if r.get("notes_scope")}:
            if scope.startswith(prefix) and scope != current:
                self.corpus.store.delete_scope(scope)

    # -- output --------------------------------------------------------------------

    def _ordered(self) -> list[Record]:
        """One record per question, in the questions file's order; records of questions no
        longer in the file are kept, after them."""
        ids = [q.id for q in self.questions]
        known = set(ids)
        out = [self.latest[i] for i in ids if i in self.latest]
        out += [r for i, r in self.latest.items() if i not in known]
        return out

    def _write_reports(self, state: str) -> None:
        """The CSV and Markdown outputs, rewritten whole from the records so far."""
        records, info = self._ordered(), ReportInfo(self.title, self.corpus.name, state, self.file.path.name)
        for path in self.reports:
            write_report(path, records, info)


def _file_name(question_id: str) -> str:
    """A question id as a safe file name (ids come from user files)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", question_id).strip("._") or "question"
    return name[:80] if name == question_id else f"{name[:60]}-{hashlib.sha256(question_id.encode()).hexdigest()[:8]}"


def _start_message(plan: Plan) -> str:
    parts = []
    for why, label in (("new", "new"), ("retry", "failed or unverified before"), ("edited", "edited"),
                       ("stale", "stale"), ("other corpus", "answered over another corpus")):
        if n := plan.count(why):
            parts.append(f"{n} {label}")
    done = f"; {plan.skipped} already answered" if plan.skipped else ""
    return f"{len(plan.todo)} to ask ({', '.join(parts)}){done}"
