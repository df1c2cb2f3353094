"""The public paraphrase set: questions written by hand that avoid their section's words.

``bench/paraphrase/questions.jsonl`` holds one question a line, each with its gold file
(relative to the ingested roots) and either the gold section's heading(s) or, for a PDF,
a page range. The corpus is ``sample_corpora/`` plus ``bench/paraphrase/docs/`` (ten pages
of the PostgreSQL 15 manual and eight of Flask's, see bench/paraphrase/README.md): about
3,000 chunks. ``unseen.jsonl`` holds the questions over the Flask pages, written after every
ranking choice was made and never used to tune one: the check that a choice is not fitted to
the main set.

A hit is a chunk of the gold section: its character span overlaps the span of a heading
block with the gold text up to the next heading block (so a section that starts in the
middle of a chunk still counts, and a table of contents listing the heading does not), or,
for a page range, a chunk on one of those pages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import BENCH, SAMPLE

PARA = BENCH / "paraphrase"
QUESTIONS = PARA / "questions.jsonl"
UNSEEN = PARA / "unseen.jsonl"
# Check sets, each written after the main set's choices (bench/paraphrase/README.md): name -> questions.
CHECK_SETS = {"flask": UNSEEN, "python": PARA / "unseen-python.jsonl", "apache": PARA / "unseen-apache.jsonl",
              "libs": PARA / "unseen-libs.jsonl"}
DOCS = PARA / "docs"
ROOTS = [SAMPLE, DOCS]

# Questions no document of either bench corpus answers: their "of N" should be small.
OFF_TOPIC = [
    "What is the capital of Mongolia?", "How do I configure a Kubernetes ingress controller?",
    "Who won the 1998 football world cup?", "best recipe for banana bread",
    "How do I train a neural network with PyTorch?", "symptoms of vitamin D deficiency",
    "How do I file my taxes online?", "What is the airspeed velocity of an unladen swallow?",
    "lyrics of bohemian rhapsody", "how to fix a flat bicycle tyre",
]


def _norm(text: str) -> str:
    return " ".join(text.replace("\xa0", " ").split()).lower()


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _file(rel: str) -> Path:
    for root in ROOTS:
        if (root / rel).exists():
            return root / rel
    raise FileNotFoundError(rel)


def section_spans(questions: list[dict[str, Any]]) -> dict[int, list[tuple[int, int]]]:
    """Question index -> character spans of its gold section(s) in the extracted text."""
    from ingest.chunker import extracted_text
    from ingest.loaders import load

    blocks_of: dict[str, list[tuple[int, int, str, bool]]] = {}
    spans: dict[int, list[tuple[int, int]]] = {}
    for i, q in enumerate(questions):
        if "sections" not in q:
            continue
        if q["file"] not in blocks_of:
            document = load(_file(q["file"]))
            text, starts = extracted_text(document)
            blocks_of[q["file"]] = [(s, s + len(b.text), _norm(b.text), b.is_heading)
                                    for b, s in zip(document.blocks, starts)] + [(len(text), len(text), "", True)]
        blocks = blocks_of[q["file"]]
        golds = {_norm(s) for s in q["sections"]}
        found = []
        for j, (start, _end, text, is_heading) in enumerate(blocks[:-1]):
            if is_heading and text in golds:
                stop = next(s for s, _e, _t, h in blocks[j + 1:] if h)
                found.append((start, stop))
        spans[i] = found
    return spans


def is_labelled_gold(q: dict[str, Any], spans: list[tuple[int, int]] | None, chunk: Any) -> bool:
    """The stricter test a reader (or a harness that reads the result's heading) applies: the
    hit is filed under the gold section, its last heading one of the gold headings, and is a
    chunk of it. A chunk that only overlaps the section (packed after another section, or
    reaching into it by its overlap) does not count. Page-range questions as ``is_gold``."""
    if "pages" in q:
        return is_gold(q, spans, chunk)
    golds = {_norm(s) for s in q.get("sections", ())}
    return bool(chunk.headings) and _norm(chunk.headings[-1]) in golds and is_gold(q, spans, chunk)


def is_gold(q: dict[str, Any], spans: list[tuple[int, int]] | None, chunk: Any) -> bool:
    if chunk.path != q["file"]:
        return False
    if "pages" in q:
        first, last = q["pages"]
        page = chunk.page or 0
        return page <= last and (chunk.page_end or page) >= first
    return any(min(end, chunk.char_end) > max(start, chunk.char_start) for start, end in spans or [])
