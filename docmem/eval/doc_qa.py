"""Multi-document QA (MemGPT, section 3.2.1, after Liu et al.'s retriever-reader task).

Questions and their gold Wikipedia passages come from NQ-Open (``nq-open-oracle.jsonl.gz``).
The corpus is a pool of passages: the gold passages of the questions asked, plus other
questions' passages as distractors (by default the whole file, ~2,600 passages).

- **baseline, K documents**: docmem's own retriever (``docmem.search``, the ranking the agent
  uses) returns the top K passages for the question; they go into one fixed prompt,
  truncated *in tokens* to fit the baseline window (each passage gets an equal share, and
  what a short passage leaves is shared by the others). One call.
- **docmem**: the whole pool is in archival storage and the agent pages through it as it
  likes. It is not limited by K, as in the paper (its archival storage held the whole
  document set), so its accuracy is one number, drawn across the K axis as a flat line.

Score: any gold answer contained in the response after SQuAD-style normalization (lower
case, no punctuation or articles), as the paper does; an optional judge model decides the
rest. Every record also says whether retrieval surfaced the gold passage at all, so a
retrieval failure is told apart from a reading failure.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docmem.errors import DocmemError
from docmem.eval.corpora import EvalCorpus, IngestFn, corpus_name, doc_hash
from docmem.eval.harness import Estimate, Harness, Prior, agent_estimate, prompt
from docmem.schema import document_key
from docmem.search import search
from docmem.store.corpus import Corpus
from docmem.tokens import TokenCounter

SHARED_FILE = "nq-open-oracle.jsonl.gz"
# Shipped with docmem (MIT / CC BY-SA, attribution in eval/data/README.md): no --data needed.
PACKAGED_DATA = Path(__file__).resolve().parent / "data" / SHARED_FILE
NOT_FOUND = "insufficient information"
_CHUNK = re.compile(r"chunk ([0-9a-f]{12})-\d+")


# -- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    title: str
    text: str

    @property
    def file_text(self) -> str:
        return f"# {self.title}\n\n{self.text.strip()}\n"

    @functools.cached_property
    def hash(self) -> str:
        return doc_hash(self.file_text)

    @property
    def file_name(self) -> str:
        return f"passage-{self.hash[:12]}.md"

    @functools.cached_property
    def key(self) -> str:
        """The document key ingest gives this passage's file; its chunk ids start with ``key[:12]``."""
        return document_key(self.file_name, self.hash)


@dataclass(frozen=True)
class QAItem:
    index: int  # line of the data file
    question: str
    answers: tuple[str, ...]
    gold: Passage

    @property
    def id(self) -> str:
        return f"q{self.index:04d}"


def find_data(given: Path | None) -> Path:
    """--data (a file, or a folder holding it), else the slice shipped in the package."""
    if given is not None:
        path = given / SHARED_FILE if given.is_dir() else given
        if not path.exists():
            raise DocmemError(f"no {SHARED_FILE} at {given}")
        return path
    if not PACKAGED_DATA.exists():
        raise DocmemError(f"doc-qa needs {SHARED_FILE} (NQ-Open with gold passages), missing from this "
                          f"install at {PACKAGED_DATA}: pass --data PATH")
    return PACKAGED_DATA


@functools.cache
def load(path: Path) -> tuple[QAItem, ...]:
    items = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                record = json.loads(line)
                ctx = record["ctxs"][0]
                items.append(QAItem(n, record["question"], tuple(record["answers"]),
                                    Passage(ctx["title"], ctx["text"])))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise DocmemError(f"cannot read NQ data {path}: {exc}") from None
    return tuple(items)


@dataclass(frozen=True)
class QAParams:
    docs: tuple[int, ...] = (1, 5, 10, 20, 50, 100)
    questions: int = 50
    pool: int | None = None  # passages in the corpus; None: every distinct passage of the file
    seed: int = 0
    data: Path | None = None
    embedder: str = "bundled"
    fresh: bool = False


@dataclass(frozen=True)
class Selection:
    items: list[QAItem]
    pool: list[Passage]  # sorted by hash: the corpus


def select(params: QAParams) -> Selection:
    """The questions (seeded sample) and the pool: their gold passages plus distractors."""
    items = load(find_data(params.data))
    rng = random.Random(f"nq:{params.seed}")
    chosen = [items[i] for i in rng.sample(range(len(items)), min(params.questions, len(items)))]
    passages = {p.hash: p for p in sorted((i.gold for i in items), key=lambda p: p.hash)}
    gold = {i.gold.hash for i in chosen}
    size = len(passages) if params.pool is None else params.pool
    if size < len(gold):
        raise DocmemError(f"--pool {size} is smaller than the {len(gold)} gold passages of the questions")
    others = sorted(h for h in passages if h not in gold)
    extra = random.Random(f"nq-pool:{params.seed}").sample(others, min(size - len(gold), len(others)))
    pool = sorted((passages[h] for h in gold | set(extra)), key=lambda p: p.hash)
    return Selection(chosen, pool)


# -- scoring -------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_answer(response: str, answers: tuple[str, ...] | list[str]) -> bool:
    said = f" {normalize(response)} "
    return any(f" {normalize(a)} " in said for a in answers if normalize(a))


# -- the fixed context -------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    text: str  # the documents block
    included: list[str]  # hashes of passages with text in the prompt, in rank order
    truncated: int  # how many were cut
    tokens: int


def fixed_context(passages: list[Passage], question: str, budget: int, counter: TokenCounter) -> Context:
    """The K passages in one prompt of at most ``budget`` tokens, cut on token boundaries.

    Each passage gets an equal share; a passage shorter than its share gives the rest to the
    others. The paper's code computed the share in tokens and cut in characters; here both
    are tokens. Lowest-ranked passages are dropped only if even a few tokens each won't fit.
    """
    room = budget - counter.count(prompt("qa_baseline", documents="", question=question)) - 8
    heads = [f"Document [{n}](Title: {p.title}) " for n, p in enumerate(passages, start=1)]
    bodies = [" ".join(p.text.split()) for p in passages]
    need = [counter.count(h) + counter.count(b) + 1 for h, b in zip(heads, bodies)]
    keep = len(passages)
    while keep and sum(counter.count(h) + 16 for h in heads[:keep]) > room:
        keep -= 1
    alloc = _share(need[:keep], room)
    parts, included, cut = [], [], 0
    for n in range(keep):
        body = bodies[n]
        if alloc[n] < need[n]:
            body = counter.truncate(body, max(0, alloc[n] - counter.count(heads[n]) - 1))
            cut += 1
        parts.append(heads[n] + body)
        if body.strip():
            included.append(passages[n].hash)
    text = "\n".join(parts)
    return Context(text, included, cut + (len(passages) - keep), counter.count(text))


def _share(need: list[int], room: int) -> list[int]:
    """Water-filling: small needs are met in full; the rest split what remains equally."""
    alloc = [0] * len(need)
    left, pending = room, sorted(range(len(need)), key=lambda i: need[i])
    while pending:
        share = left // len(pending)
        i = pending[0]
        if need[i] <= share:
            alloc[i] = need[i]
            left -= need[i]
            pending.pop(0)
        else:
            for j in pending:
                alloc[j] = share
            break
    return alloc


def retrieve(corpus: Corpus, question: str, k: int, by_key: dict[str, Passage]) -> list[Passage]:
    """The top ``k`` distinct passages for the question, by the agent's own ranking."""
    if k <= 0:
        return []
    depth = 2 * k + 10  # a passage can span chunks; K=100 needs more than the default 100 candidates
    page = search(corpus, question, page=1, page_size=depth, candidates=max(corpus.settings.candidates, depth))
    ranked: list[Passage] = []
    for hit in page.hits:
        passage = by_key.get(hit.chunk.doc_hash)
        if passage is not None and passage not in ranked:
            ranked.append(passage)
        if len(ranked) == k:
            break
    return ranked


def reply_reserve(window: int) -> int:
    return min(1024, max(256, window // 16))


# -- planning and running --------------------------------------------------------------------------


def priors(item: QAItem, counter: TokenCounter, page_size: int, systems: tuple[str, ...],
           docs: tuple[int, ...], window: int, passage_tokens: float) -> list[Prior]:
    """Expected cost of one question: the agent ~4 calls; the baseline one call per K."""
    out: list[Prior] = []
    if "docmem" in systems:
        out.append(Prior("docmem", None, agent_estimate(counter, counter.count(item.question) + 60, 4,
                                                        page_size * 190)))
    if "baseline" in systems:
        budget = window - reply_reserve(window)
        for k in docs:
            out.append(Prior("baseline", k, Estimate(1, min(budget, 150 + k * passage_tokens), 60)))
    return out


def mean_passage_tokens(selection: Selection, counter: TokenCounter) -> float:
    sample = selection.pool[:200]
    return sum(counter.count(p.text) + 12 for p in sample) / max(1, len(sample))


def plan(params: QAParams, counter: TokenCounter, page_size: int, systems: tuple[str, ...],
         window: int, max_questions: int | None) -> list[dict[str, Any]]:
    selection = select(params)
    items = selection.items[:max_questions] if max_questions is not None else selection.items
    per_passage = mean_passage_tokens(selection, counter)
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    for item in items:
        for prior in priors(item, counter, page_size, systems, params.docs, window, per_passage):
            row = rows.setdefault((prior.system, prior.key), {
                "system": prior.system, "x": prior.key, "questions": 0, "calls": 0.0, "tokens_in": 0.0,
                "tokens_out": 0.0})
            row["questions"] += 1
            row["calls"] += prior.estimate.calls
            row["tokens_in"] += prior.estimate.tokens_in
            row["tokens_out"] += prior.estimate.tokens_out
    return sorted(rows.values(), key=lambda r: (r["system"] != "docmem", r["x"] or 0))


def run(harness: Harness, params: QAParams, ingest: IngestFn) -> list[dict[str, Any]]:
    options, settings = harness.options, harness.settings
    selection = select(params)
    by_key = {p.key: p for p in selection.pool}
    harness.header({"docs": list(params.docs), "questions": len(selection.items), "pool": len(selection.pool),
                    "seed": params.seed, "data": str(find_data(params.data)), "embedder": params.embedder,
                    "docmem_scope": "whole pool, pages freely (not limited by K)"})
    name = corpus_name("nq", (p.hash for p in selection.pool), settings, params.embedder)
    harness.notify(f"corpus {name}: {len(selection.pool)} passages (built once, then reused)")
    records: list[dict[str, Any]] = []
    per_passage = mean_passage_tokens(selection, harness.counter)
    reserve = reply_reserve(options.baseline_window)
    total = len(selection.items) if options.max_questions is None else min(len(selection.items),
                                                                          options.max_questions)
    with EvalCorpus(settings, name, params.embedder, ingest, fresh=params.fresh) as corpus:
        corpus.sync({p.file_name: p.file_text for p in selection.pool})
        for n, item in enumerate(selection.items, start=1):
            if not harness.may_start(priors(item, harness.counter, settings.page_size, options.systems,
                                            params.docs, options.baseline_window, per_passage)):
                break
            common = {"id": item.id, "question": item.question, "gold": list(item.answers),
                      "gold_title": item.gold.title, "gold_doc": item.gold.key[:12]}
            marks = []
            if "baseline" in options.systems:
                ranked = retrieve(corpus.corpus, item.question, max(params.docs), by_key)
                for k in params.docs:
                    top = ranked[:k]
                    context = fixed_context(top, item.question, options.baseline_window - reserve,
                                            harness.counter)
                    text = prompt("qa_baseline", documents=context.text, question=item.question)
                    outcome = harness.ask_baseline(text, f"{item.id}-k{k}", k, extra={
                        "retrieved": [p.hash[:12] for p in top]})
                    retrieval = {"gold_retrieved": item.gold.hash in {p.hash for p in top},
                                 "gold_in_context": item.gold.hash in context.included,
                                 "answer_in_context": contains_answer(context.text, item.answers),
                                 "docs_retrieved": len(top), "docs_in_context": len(context.included),
                                 "truncated": context.truncated, "context_tokens": context.tokens}
                    records.append(_scored(harness, item, outcome, {**common, "k": k, "x": k, **retrieval}))
                marks.append("baseline " + "".join("✓" if r["correct"] else "✗"
                                                   for r in records[-len(params.docs):]))
            if "docmem" in options.systems:
                outcome = harness.ask_agent(corpus.corpus, prompt("qa_question", question=item.question),
                                            item.id, None)
                seen_docs = {m for text in outcome.seen for m in _CHUNK.findall(text)}
                retrieval = {"gold_retrieved": item.gold.key[:12] in seen_docs,
                             "answer_in_context": contains_answer("\n".join(outcome.seen), item.answers),
                             "docs_retrieved": len(seen_docs)}
                record = _scored(harness, item, outcome, {**common, "k": None, "x": None, **retrieval})
                records.append(record)
                marks.append(f"docmem {'✓' if record['correct'] else '✗'} ({outcome.status}, "
                              f"{outcome.steps} steps, {len(seen_docs)} passages seen)")
            harness.notify(f"[{n}/{total}] {item.question[:60]}: " + " · ".join(marks))
    return records


def _scored(harness: Harness, item: QAItem, outcome: Any, fields: dict[str, Any]) -> dict[str, Any]:
    answered = outcome.status == "answered"
    matched = answered and contains_answer(outcome.answer, item.answers)
    verdict = None
    if answered and not matched and NOT_FOUND not in outcome.answer.lower():
        verdict = harness.judge(item.question, list(item.answers), outcome.answer, outcome)
    correct = bool(matched or verdict)
    return harness.result({**fields, **outcome.fields(), "match": matched, "judge": verdict,
                           "correct": correct})
