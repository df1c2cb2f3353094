"""The answers file (JSONL): one record per question, the source of truth of a batch.

Records are appended one at a time, each flushed and fsynced before the next question's
record, so a run killed at any moment keeps every answer it had written. A kill can leave
at most a partial last line; reading drops it (that question simply runs again). The file
is rewritten atomically (temp file, fsync, rename) only to compact it: one record per
question, the newest, in the order of the questions file.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from docmem.agent.loop import AnswerResult
from docmem.batch.questions import Question
from docmem.errors import DocmemError

DONE = ("answered", "abstained")  # kept by a re-run; "unverified" too with --allow-unverified
KEPT = ("answered", "unverified", "abstained")  # statuses a record keeps (anything else: "error")

Record = dict[str, Any]


def make_record(question: Question, result: AnswerResult, *, seconds: float, model: str | None,
                corpus: str, state: str, notes_scope: str | None = None,
                stale: dict[str, Any] | None = None) -> Record:
    """The JSONL record of one answered (or failed) question; keys in reading order."""
    status = result.status if result.status in KEPT else "error"
    record: Record = {
        "id": question.id,
        "question": question.text,
        "status": status,
        "answer": result.answer,
        "citations": [{
            "n": n, "path": c.path, "page": c.page, "quote": c.quote, "chunk_id": c.chunk_id,
            "verified": c.verified, "score": c.score, "content_hash": c.content_hash,
            **({"reason": c.reason} if c.reason else {}),
        } for n, c in enumerate(result.citations, start=1)],
        "error": result.error if status == "error" else None,
        "warning": result.error if status != "error" and result.error else None,
        "searches": result.searches,
        "steps": result.steps,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "seconds": round(seconds, 3),
        "model": model,
        "corpus": corpus,
        "corpus_state": state,  # the corpus state the answer was made in
        "checked_state": state,  # the latest state its citations are known to hold in
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fields": question.fields,
    }
    if notes_scope:
        record["notes_scope"] = notes_scope
    if stale:
        record["stale"] = stale
    return record


def error_record(question: Question, error: str, **kw: Any) -> Record:
    return make_record(question, AnswerResult("error", "", error=error), **kw)


@dataclass
class Loaded:
    records: list[Record] = field(default_factory=list)  # every complete record, in file order
    dropped_tail: bool = False  # a partial last line (a kill mid-write) was left out
    needs_rewrite: bool = False  # partial tail or superseded records: compact before appending

    def latest(self) -> dict[str, Record]:
        """The newest record of each question id."""
        out: dict[str, Record] = {}
        for record in self.records:
            out[str(record["id"])] = record
        return out


class AnswersFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def load(self) -> Loaded:
        loaded = Loaded()
        if not self.path.exists():
            return loaded
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise DocmemError(f"cannot read {self.path}: {exc}") from None
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" unless the last write was cut short
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            loaded.records.append(self._parse(line, n))
        if tail.strip():
            try:
                loaded.records.append(self._parse(tail, len(lines) + 1))
            except DocmemError:
                loaded.dropped_tail = True
            loaded.needs_rewrite = True
        ids = [str(r["id"]) for r in loaded.records]
        if len(set(ids)) != len(ids):
            loaded.needs_rewrite = True
        return loaded

    def _parse(self, line: bytes, n: int) -> Record:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DocmemError(f"{self.path}:{n}: not a valid record ({exc}); fix or delete that line "
                              "(that question will then be asked again)") from None
        if not isinstance(record, dict) or "id" not in record or "status" not in record:
            raise DocmemError(f"{self.path}:{n}: not an answer record (no id or status); fix or delete "
                              "that line")
        for citation in record.get("citations") or []:  # records before 2026-12 said "file"
            if isinstance(citation, dict) and "file" in citation and "path" not in citation:
                citation["path"] = citation.pop("file")
        return record

    # -- writing ---------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """One record, on disk before this returns."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def rewrite(self, records: list[Record]) -> None:
        """Replace the file with exactly these records, atomically."""
        self.close()
        write_atomic(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class OutputLock:
    """One batch at a time per answers file: an flock on ``FILE.lock`` beside it.

    Two runs appending to one file lose records and resume from each other's answers. The
    lock is on a sidecar because the answers file itself is replaced on compaction (a lock
    on it would go with the old inode). It holds only the PID (never the command line), is
    private to the user, and is released by the kernel when the process dies, however.
    The empty sidecar stays: removing it would race with the next run's open.
    """

    def __init__(self, answers: Path) -> None:
        self.path = answers.with_name(answers.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            answers = self.path.with_name(self.path.name.removesuffix(".lock"))
            raise DocmemError(f"{answers} is being written by another docmem batch ({holder}): wait for it "
                              "to finish, or give another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file so that a reader (or a kill) sees the old one or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
