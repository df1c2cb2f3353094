"""Ingest jobs: one writer per corpus at a time, the rest queued with their position shown.

A job runs in its own thread; its events are kept, so any number of watchers (the CLI in
this process, a client over the socket) read them from the start. Readers are never
blocked: searches run on the same open store while chunks arrive.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from dataclasses import asdict
from typing import Any, Callable, Iterator

from docmem.errors import DocmemError
from docmem.schema import JOB_DONE, JOB_FAILED, JOB_PROGRESS, JOB_QUEUED, JobEvent
from docmem.threads import start_thread

log = logging.getLogger(__name__)

# work(emit) -> the summary as a dict; emit(progress_event) for each pipeline event
Work = Callable[[Callable[[Any], None]], dict[str, Any]]


class JobCancelled(DocmemError):
    """The one who asked for the ingest stopped it (Ctrl+C)."""


class Job:
    def __init__(self, corpus: str, owner_pid: int | None) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.corpus = corpus
        self.owner_pid = owner_pid  # the process that asked for it (None: this one)
        self._events: list[JobEvent] = []
        self._cond = threading.Condition()
        self.finished = False
        self.cancelled = False

    def cancel(self) -> None:
        """Stop at the pipeline's next progress event (what it has written stays, and resumes)."""
        self.cancelled = True

    def emit(self, kind: str, **fields: Any) -> None:
        with self._cond:
            self._events.append(JobEvent(self.id, kind, **fields))
            if kind in (JOB_DONE, JOB_FAILED):
                self.finished = True
            self._cond.notify_all()

    def events(self) -> Iterator[JobEvent]:
        for index in itertools.count():
            with self._cond:
                while index >= len(self._events) and not self.finished:
                    self._cond.wait()
                if index >= len(self._events):
                    return
                event = self._events[index]
            yield event

    def wait(self) -> JobEvent:
        return last_event(self.events())


def last_event(events: Iterator[JobEvent]) -> JobEvent:
    """Watch a job to its end: its JOB_DONE or JOB_FAILED event."""
    last = None
    for last in events:
        pass
    assert last is not None
    return last


KEEP_FINISHED = 100  # finished jobs whose events stay readable (a watcher may connect late)


class JobQueue:
    """Per corpus, a FIFO of jobs of which only the head runs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, list[Job]] = {}
        self.jobs: dict[str, Job] = {}

    def submit(self, corpus: str, work: Work, owner_pid: int | None = None) -> Job:
        job = Job(corpus, owner_pid)
        with self._cond:
            queue = self._queues.setdefault(corpus, [])
            queue.append(job)
            self.jobs[job.id] = job
            job.emit(JOB_QUEUED, position=len(queue) - 1)
        start_thread(self._run, args=(job, work), name=f"ingest-{job.id}")
        return job

    def _run(self, job: Job, work: Work) -> None:
        with self._cond:
            while self._queues[job.corpus][0] is not job:
                self._cond.wait()
        def emit(event: Any) -> None:
            if job.cancelled:
                raise JobCancelled("the ingest was interrupted; run it again to resume")
            job.emit(JOB_PROGRESS, progress=asdict(event))

        try:
            if job.cancelled:
                raise JobCancelled("the ingest was interrupted before it started")
            summary = work(emit)
        except Exception as exc:  # the job's error goes to whoever watches it
            log.debug("ingest job %s failed", job.id, exc_info=True)
            job.emit(JOB_FAILED, error=str(exc) or type(exc).__name__)
        else:
            job.emit(JOB_DONE, summary=summary)
        finally:
            with self._cond:
                queue = self._queues[job.corpus]
                queue.remove(job)
                finished = [j for j in self.jobs.values() if j.finished]
                for old in finished[:-KEEP_FINISHED]:  # oldest first (dicts keep insertion order)
                    del self.jobs[old.id]
                for position, waiting in enumerate(queue):
                    if position:
                        waiting.emit(JOB_QUEUED, position=position)
                self._cond.notify_all()

    def busy(self, corpus: str | None = None) -> list[Job]:
        with self._cond:
            queues = [self._queues.get(corpus, [])] if corpus else list(self._queues.values())
            return [job for queue in queues for job in queue]

    def wait_idle(self, corpus: str | None = None) -> None:
        with self._cond:
            while any(True for queue in ([self._queues.get(corpus, [])] if corpus else self._queues.values())
                      for _ in queue):
                self._cond.wait()
