"""Question files: plain text (one a line, ``#`` comments), JSONL or CSV.

Every question gets an id that stays the same across runs, since resuming and stale
detection key on it: the file's own ``id`` (JSONL field or CSV column), else a hash of the
question's text with whitespace collapsed (so re-ordering or inserting lines is harmless).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docmem.errors import DocmemError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)  # the input's other fields, carried through
    line: int = 0  # where it was read (1-based line, or CSV row)


def question_id(text: str) -> str:
    """A stable id for a question that has none: ``q-`` + 10 hex digits of its text."""
    normalized = " ".join(text.split())
    return "q-" + hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:10]


def load_questions(path: Path) -> tuple[list[Question], list[str]]:
    """(questions in file order, warnings). Raises DocmemError with the line at fault."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DocmemError(f"no questions file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DocmemError(f"cannot read questions file {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        items = _from_jsonl(path, raw)
    elif suffix in CSV_SUFFIXES:
        items = _from_csv(path, raw, "\t" if suffix == ".tsv" else ",")
    else:
        items = _from_text(raw)
    return _dedupe(path, items)


def _from_text(raw: str) -> list[Question]:
    out = []
    for n, line in enumerate(raw.splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            out.append(Question(question_id(text), text, {}, n))
    return out


def _from_jsonl(path: Path, raw: str) -> list[Question]:
    out = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DocmemError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise DocmemError(f'{path}:{n}: expected an object like {{"id": "q1", "question": "..."}}')
        text = item.get("question")
        if not isinstance(text, str) or not text.strip():
            raise DocmemError(f'{path}:{n}: no "question" (a non-empty string)')
        given = item.get("id")
        if given is not None and not isinstance(given, (str, int)):
            raise DocmemError(f'{path}:{n}: "id" must be a string or a number')
        extra = {k: v for k, v in item.items() if k not in ("id", "question")}
        ident = str(given).strip() if given is not None and str(given).strip() else question_id(text)
        out.append(Question(ident, text.strip(), extra, n))
    return out


def _from_csv(path: Path, raw: str, delimiter: str) -> list[Question]:
    reader = csv.DictReader(raw.splitlines(), delimiter=delimiter)
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    if "question" not in columns:
        found = ", ".join(repr(c) for c in reader.fieldnames or []) or "none"
        raise DocmemError(f"{path}: no 'question' column (columns: {found})")
    q_col, id_col = columns["question"], columns.get("id")
    out = []
    for n, row in enumerate(reader, start=2):  # row 1 is the header
        text = (row.get(q_col) or "").strip()
        if not text:
            continue
        given = (row.get(id_col) or "").strip() if id_col else ""
        extra = {k: v for k, v in row.items() if k not in (q_col, id_col) and k is not None}
        out.append(Question(given or question_id(text), text, extra, n))
    return out


def _dedupe(path: Path, items: list[Question]) -> tuple[list[Question], list[str]]:
    """The same question twice is asked once; one id for two questions is an error."""
    seen: dict[str, Question] = {}
    out, warnings = [], []
    for q in items:
        first = seen.get(q.id)
        if first is None:
            seen[q.id] = q
            out.append(q)
        elif " ".join(first.text.split()) == " ".join(q.text.split()):
            warnings.append(f"{path}:{q.line}: same question as line {first.line}; asked once")
        else:
            raise DocmemError(f"{path}:{q.line}: id {q.id!r} is already used on line {first.line} "
                              "for another question; ids must be unique")
    if not out:
        raise DocmemError(f"{path}: no questions found")
    return out, warnings
