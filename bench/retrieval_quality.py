"""Retrieval quality of docmem.search.search() on NQ-Open (oracle passages).

    .venv/bin/python bench/retrieval_quality.py [--quick] [--questions N] [--sweep-passages N]

Main corpus (ingested through the real pipeline, bundled embedder, default chunking 200/30):
  * one .txt file per distinct gold passage of /work/shared/data/nq-open-oracle.jsonl.gz,
    the title as its first line, then the passage;
  * plus every document of sample_corpora/ as distractors (real prose, manuals, e-mail).
For each question, search() is run under each ranking and the rank of the first chunk of the
gold passage's file is recorded (page_size 25 = pages 1-5 of size 5: pages are slices of one
ranked list). Reported: recall@1/@5/@25, MRR@25, in page 1 (= r@5), in pages 1-5 (= r@25).

Chunk sweep (skipped by --quick): the same passages concatenated 5 to a file (title line,
passage, blank line, next...), ingested at several chunk sizes/overlaps. A hit is a chunk of
the right file whose span covers at least half of the gold passage or half of the chunk
lies inside it; "answer hit" further needs one of the gold answers in the chunk's text.

Nested-KV check: 140 `Key-value pair: key = K, value = V` chunks (one line of
kv-retrieval-140_keys.jsonl.gz, made nested: a chain of keys whose values are keys); for each
key, is the pair with that key in the top 2, for the bare key and for "What is the value of
key K?".

The built corpora are cached in bench/cache/retrieval/ (ingest is incremental, so a re-run
only searches). Query embeddings are memoised across rankings (bench-only wrapper).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, SAMPLE, Timer, log, machine, table, write_json  # noqa: E402
import _paraphrase  # noqa: E402

DATA = Path("/work/shared/data")
NQ = DATA / "nq-open-oracle.jsonl.gz"
KV = DATA / "kv-retrieval-140_keys.jsonl.gz"
ROOT = CACHE / "retrieval"
HOME = ROOT / "home-v1"
os.environ["DOCMEM_HOME"] = str(HOME)  # before docmem reads its settings

# Qdrant's weighted RRF scores a list's item at 0-based position p as 1 / ((p+1)/w + k - 1):
# a weight divides the rank, it does not multiply the score. With k=60 a big weight flattens
# that list into a near-constant bonus, so small k values are measured too (Qdrant's default k=2).
RANKINGS = ["sections", "sections+open0", "sections+share0", "fused:linear:0.1,1", "sections:linear:0.05,1", "sections:linear:0.2,1",
            "sections:rrf:2:1,3", "sections:rrf:60:0,1", "bm25", "dense", "rrf:60", "rrf:60:1,2", "rrf:60:1,3", "rrf:60:1,5", "rrf:20:1,3", "rrf:10:1,3",
            "rrf:10:1,2", "rrf:5:1,3", "rrf:2", "rrf:2:1,2", "rrf:2:1,3", "rrf:2:1,5", "rrf:1", "rrf:1:1,2",
            "rrf:1:1,3", "rrf:1:1,5", "dbsf"]
SWEEP = [(128, 16), (200, 30), (300, 40)]
SWEEP_RANKINGS = ["sections", "sections+open0", "sections+share0", "sections+share0", "fused:linear:0.1,1", "sections:linear:0.05,1", "sections:linear:0.2,1",
            "sections:rrf:2:1,3", "sections:rrf:60:0,1", "bm25", "dense", "rrf:60", "rrf:60:1,3", "rrf:2:1,3", "rrf:1:1,2", "rrf:1:1,3", "dbsf"]
TOP = 25


class _MemoEmbedder:
    """Wraps the corpus embedder so each question is embedded once for all rankings."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.spec, self.dim = inner, inner.spec, inner.dim
        self.cache: dict[str, list[float]] = {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        if text not in self.cache:
            self.cache[text] = self.inner.embed_query(text)
        return self.cache[text]


# --- data ----------------------------------------------------------------------------------------

def load_nq() -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    questions, passages, index = [], [], {}
    with gzip.open(NQ, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ctx = row["ctxs"][0]
            key = (ctx["title"].strip(), " ".join(ctx["text"].split()))
            if key not in index:
                index[key] = len(passages)
                passages.append(key)
            questions.append({"question": row["question"], "answers": row["answers"], "passage": index[key]})
    return questions, passages


def write_gold(passages: list[tuple[str, str]]) -> Path:
    folder = ROOT / "docs-v1" / "nq-gold"
    if not (folder / ".written").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for i, (title, text) in enumerate(passages):
            (folder / f"p{i:05d}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
        (folder / ".written").write_text(str(len(passages)))
    return folder


def write_concatenated(passages: list[tuple[str, str]], n: int, per_file: int = 5) -> tuple[Path, dict[int, str]]:
    folder = ROOT / "docs-v1" / f"nq-concat-{n}"
    where = {i: f"c{i // per_file:04d}.txt" for i in range(n)}
    if not (folder / ".written").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, n, per_file):
            body = "".join(f"{t}\n\n{x}\n\n" for t, x in passages[start:start + per_file])
            (folder / f"c{start // per_file:04d}.txt").write_text(body, encoding="utf-8")
        (folder / ".written").write_text(str(n))
    return folder, where


def write_kv() -> tuple[Path, list[tuple[str, str]], list[int]]:
    with gzip.open(KV, "rt", encoding="utf-8") as fh:
        pairs = [list(p) for p in json.loads(fh.readline())["ordered_kv_records"]]
    rng = random.Random(3)
    chain = rng.sample(range(len(pairs)), 4)  # nested: value of key[c0] is key[c1], ...
    for a, b in zip(chain, chain[1:]):
        pairs[a][1] = pairs[b][0]
    folder = ROOT / "docs-v1" / "kv-140"
    if not (folder / ".written").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for i, (k, v) in enumerate(pairs):
            (folder / f"pair{i:03d}.txt").write_text(f"Key-value pair: key = {k}, value = {v}\n", encoding="utf-8")
        (folder / ".written").write_text(json.dumps(chain))
    return folder, [tuple(p) for p in pairs], chain


# --- building ------------------------------------------------------------------------------------

def build(name: str, paths: list[Path], chunk_tokens: int = 200, overlap: int = 30) -> dict[str, Any]:
    from docmem.config import load_settings
    from docmem.store.corpus import open_corpus
    from ingest.pipeline import ingest

    settings = load_settings(chunk_tokens=chunk_tokens, chunk_overlap=overlap)
    with open_corpus(settings, name, create=True, embedder="bundled") as corpus:
        with Timer() as t:
            s = ingest(corpus, paths, workers=2, dense=True)
        points = corpus.store.count()
    info = {"corpus": name, "chunk_tokens": chunk_tokens, "overlap": overlap, "points": points,
            "written": s.chunks_written, "embedded": s.chunks_embedded, "failed": len(s.failed),
            "dense_pending": s.dense_pending, "seconds": round(t.seconds, 1)}
    log(f"built {info}")
    for failure in s.failed:
        log(f"  failed: {failure}")
    return info


def open_for_search(name: str) -> Any:
    from docmem.config import load_settings
    from docmem.store.corpus import open_corpus

    corpus = open_corpus(load_settings(), name)
    corpus._embedder = _MemoEmbedder(corpus.embedder)  # bench-only memo
    return corpus


# --- scoring -------------------------------------------------------------------------------------

# Ranking suffixes: the same ranking with one of docmem.ranking's constants at 0, to measure what it adds.
WITHOUT = {"+share0": "SECTION_SHARE", "+open0": "OPENING_BONUS"}


def search(corpus: Any, query: str, *, ranking: str | None = None, **options: Any) -> Any:
    """docmem.search.search, where ``sections+share0`` is ``sections`` without the section
    evidence and ``sections+open0`` without the bonus of a section's opening chunk."""
    from docmem import ranking as ranking_module
    from docmem.search import search as docmem_search

    suffix = next((k for k in WITHOUT if ranking and ranking.endswith(k)), None)
    if suffix is None:
        return docmem_search(corpus, query, ranking=ranking, **options)
    name = WITHOUT[suffix]
    saved = getattr(ranking_module, name)
    setattr(ranking_module, name, 0.0)
    try:
        return docmem_search(corpus, query, ranking=ranking[:-len(suffix)], **options)
    finally:
        setattr(ranking_module, name, saved)


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)

    def at(k: int) -> float:
        return round(sum(1 for r in ranks if r is not None and r <= k) / n, 4)

    return {"n": n, "r@1": at(1), "r@5": at(5), "r@10": at(10), "r@25": at(25),
            "mrr": round(sum(1 / r for r in ranks if r is not None) / n, 4),
            "page1": at(5), "pages1_5": at(25)}


def eval_main(questions: list[dict[str, Any]], gold_path: dict[int, str], rankings: list[str],
              candidates: int | None = None) -> dict[str, Any]:
    from docmem.search import looks_like_identifier

    corpus = open_for_search(NQ_CORPUS)
    out: dict[str, Any] = {"identifier_like_questions": sum(looks_like_identifier(q["question"]) for q in questions)}
    try:
        for ranking in rankings:
            ranks, times = [], []
            for q in questions:
                t0 = time.perf_counter()
                page = search(corpus, q["question"], page=1, page_size=TOP, ranking=ranking, candidates=candidates)
                times.append(time.perf_counter() - t0)
                target = gold_path[q["passage"]]
                ranks.append(next((h.rank for h in page.hits if h.chunk.path == target), None))
            m = metrics(ranks)
            m["mean_ms"] = round(1000 * sum(times) / len(times), 2)
            out[ranking] = m
            log(f"nq {ranking}: {m}")
        out["totals"] = of_n(corpus, [q["question"] for q in questions],
                             lambda i, chunk: chunk.path == gold_path[questions[i]["passage"]])
        # Pages are meant to be slices of one list: is page p of size 5 == ranks 5p-4..5p of one
        # size-25 call (as far as pages go)? And does the same call twice give the same order (ties)?
        out["paging"] = {}
        for ranking in [r for r in ("sections", "rrf:60:1,3", "rrf:2:1,3", "rrf:1:1,3", "dbsf", "dense") if r in rankings]:
            paged_diff = repeat_diff = dup_or_missing = 0
            for q in questions[:100]:
                whole = [h.chunk.id for h in search(corpus, q["question"], page_size=TOP, ranking=ranking).hits]
                again = [h.chunk.id for h in search(corpus, q["question"], page_size=TOP, ranking=ranking).hits]
                paged = [h.chunk.id for p in range(1, 6)
                         for h in search(corpus, q["question"], page=p, page_size=5, ranking=ranking).hits]
                # Under ``sections`` page 1 is filled past the relevant ones, later pages are not:
                # pages are then a prefix of the size-25 list, not all of it.
                paged_diff += whole[:len(paged)] != paged
                repeat_diff += whole != again
                dup_or_missing += len(set(paged)) != len(paged) or not set(paged) <= set(whole)
            out["paging"][ranking] = {"queries": 100, "pages_differ_from_one_list": paged_diff,
                                      "same_call_differs": repeat_diff, "pages_1_5_repeat_or_skip": dup_or_missing}
            log(f"paging {ranking}: {out['paging'][ranking]}")
    finally:
        corpus.close()
    return out


DEFAULT = "sections"
README_QUESTION = "How do I fit a linear model in R?"


def of_n(corpus: Any, questions: list[str], gold: Any = None) -> dict[str, Any]:
    """The "of N" the default ranking reports, and for how many questions a gold hit of the
    top 10 is ranked past N (``gold(i, chunk)`` says if a chunk is gold): the floor only
    counts, page 1 shows such hits all the same. (How many gold hits have a cosine under the
    floor: bench/ranking_sim.py.)"""
    import statistics

    totals, capped, dropped = [], 0, 0
    for i, q in enumerate(questions):
        page = search(corpus, q, page=1, page_size=10, ranking=DEFAULT)
        totals.append(page.total)
        capped += page.capped
        if gold is not None:
            dropped += any(gold(i, h.chunk) for h in page.hits[page.total:])
    out = {"median": statistics.median(totals), "max": max(totals), "capped": round(capped / len(totals), 3)}
    if gold is not None:
        out["gold_dropped"] = dropped
    return out


def off_topic_totals(name: str) -> dict[str, Any]:
    corpus = open_for_search(name)
    try:
        return of_n(corpus, _paraphrase.OFF_TOPIC)
    finally:
        corpus.close()


# The corpora; renamed when ingest changes what an existing file's chunks (or their point ids)
# are: ingest is incremental, so a cached corpus would keep the old ones.
PARA_CORPUS = "para5"
NQ_CORPUS = "nq2"


def eval_paraphrase(rankings: list[str], candidates: int | None = None) -> dict[str, Any]:
    """hit@1/5/10 and MRR@25 on the hand-written paraphrase set (and its HTML questions apart)
    and on each check set (bench/_paraphrase.py), all searched in one corpus."""

    sets = {"main": _paraphrase.load_questions(), **{name: _paraphrase.load_questions(path)
                                                     for name, path in _paraphrase.CHECK_SETS.items()}}
    spans = {name: _paraphrase.section_spans(qs) for name, qs in sets.items()}
    unlocated = [q["question"] for name, qs in sets.items() for i, q in enumerate(qs)
                 if i in spans[name] and not spans[name][i]]
    if unlocated:
        raise SystemExit(f"gold sections not found for: {unlocated}")
    info = build(PARA_CORPUS, _paraphrase.ROOTS)
    corpus = open_for_search(PARA_CORPUS)
    questions = sets["main"]
    html = [i for i, q in enumerate(questions) if q["file"].endswith(".html")]
    out: dict[str, Any] = {"build": info, "questions": len(questions), "html_questions": len(html),
                           "sets": {name: len(qs) for name, qs in sets.items()}, "ranks": {}, "main_html": {}, "labelled": {},
                           **{name: {} for name in _paraphrase.CHECK_SETS}}
    try:
        for ranking in rankings:
            for name, qs in sets.items():
                ranks, labelled = [], []
                for i, q in enumerate(qs):
                    page = search(corpus, q["question"], page=1, page_size=TOP, ranking=ranking, candidates=candidates)
                    ranks.append(next((h.rank for h in page.hits if _paraphrase.is_gold(q, spans[name].get(i), h.chunk)),
                                      None))
                    labelled.append(next((h.rank for h in page.hits
                                          if _paraphrase.is_labelled_gold(q, spans[name].get(i), h.chunk)), None))
                if name == "main":
                    out[ranking] = metrics(ranks)
                    out["ranks"][ranking] = ranks
                    out["main_html"][ranking] = metrics([ranks[i] for i in html])
                else:
                    out[name][ranking] = metrics(ranks)
                out["labelled"].setdefault(name, {})[ranking] = metrics(labelled)
            log(f"paraphrase {ranking}: {out[ranking]}; " + "; ".join(f"{n} {out[n][ranking]}" for n in _paraphrase.CHECK_SETS))
        for name, qs in sets.items():
            out[f"{name}_totals"] = of_n(corpus, [q["question"] for q in qs],
                                         lambda i, chunk, qs=qs, name=name: _paraphrase.is_gold(qs[i], spans[name].get(i), chunk))
        out["totals"] = out.pop("main_totals")
        out["readme_question"] = next(i for i, q in enumerate(questions) if q["question"] == README_QUESTION)
    finally:
        corpus.close()
    return out


def _spans(folder: Path, files: set[str], passages: list[tuple[str, str]], where: dict[int, str]) -> dict[int, tuple[int, int]]:
    """Char span of each passage in its file's extracted text (what chunk spans refer to)."""
    from ingest.chunker import extracted_text
    from ingest.loaders import load

    texts = {f: extracted_text(load(folder / f))[0] for f in files}
    spans = {}
    for i, f in where.items():
        body = passages[i][1]
        pos = texts[f].find(body)
        if pos < 0:
            pos = texts[f].find(body[:60])
        if pos >= 0:
            spans[i] = (pos, pos + len(body))
    return spans


def eval_sweep(questions: list[dict[str, Any]], passages: list[tuple[str, str]], n: int) -> dict[str, Any]:

    folder, where = write_concatenated(passages, n)
    spans = _spans(folder, set(where.values()), passages, where)
    qs = [q for q in questions if q["passage"] in spans]
    out: dict[str, Any] = {"passages": n, "files": len(set(where.values())), "questions": len(qs),
                           "unlocated_passages": n - len(spans), "configs": {}}
    for tokens, overlap in SWEEP:
        name = f"sweep-{n}-{tokens}-{overlap}"
        info = build(name, [folder], tokens, overlap)
        corpus = open_for_search(name)
        res: dict[str, Any] = {"build": info}
        try:
            for ranking in SWEEP_RANKINGS:
                ranks, answer_ranks = [], []
                for q in qs:
                    page = search(corpus, q["question"], page=1, page_size=TOP, ranking=ranking)
                    start, end = spans[q["passage"]]
                    rank = arank = None
                    for h in page.hits:
                        c = h.chunk
                        if c.path != where[q["passage"]]:
                            continue
                        inside = max(0, min(end, c.char_end) - max(start, c.char_start))
                        if inside >= 0.5 * (end - start) or inside >= 0.5 * max(1, c.char_end - c.char_start):
                            rank = rank or h.rank
                            text = c.text.lower()
                            if arank is None and any(a.lower() in text for a in q["answers"]):
                                arank = h.rank
                    ranks.append(rank)
                    answer_ranks.append(arank)
                res[ranking] = {"passage": metrics(ranks), "answer": metrics(answer_ranks)}
                log(f"sweep {tokens}/{overlap} {ranking}: {res[ranking]['passage']}")
        finally:
            corpus.close()
        out["configs"][f"{tokens}/{overlap}"] = res
    return out


def eval_kv(rankings: list[str], candidates: int | None = None) -> dict[str, Any]:

    folder, pairs, chain = write_kv()
    info = build("kv", [folder])
    corpus = open_for_search("kv")
    out: dict[str, Any] = {"build": info, "chain": chain}
    try:
        for ranking in rankings:
            res = {}
            for form, template in (("bare key", "{k}"), ("question", "What is the value of key {k}?")):
                ok = 0
                for i, (k, _v) in enumerate(pairs):
                    page = search(corpus, template.format(k=k), page=1, page_size=2, ranking=ranking,
                                  candidates=candidates)
                    ok += any(h.chunk.path == f"pair{i:03d}.txt" for h in page.hits)
                res[form] = round(ok / len(pairs), 4)
            out[ranking] = res
            log(f"kv {ranking}: {res}")
    finally:
        corpus.close()
    return out


def _split_rankings(text: str) -> list[str]:
    """"dbsf,rrf:1:1,3,dense" -> ["dbsf", "rrf:1:1,3", "dense"]: a bare number continues the
    weight list of the ranking before it (``rrf:K:W,W``, ``dbsf:W,W``, with a ``sections:`` or
    ``fused:`` prefix)."""
    out: list[str] = []
    for part in text.split(","):
        prev = out[-1].split(":") if out else []
        method = prev[1] if prev and prev[0] in ("sections", "fused") and len(prev) > 1 else (prev[0] if prev else "")
        numbers = len(prev) - prev.index(method) - 1 if method in prev else 0
        opens_weights = (method == "rrf" and numbers == 2) or (method in ("dbsf", "linear") and numbers == 1)
        if prev and part.replace(".", "").isdigit() and opens_weights and "," not in prev[-1]:
            out[-1] += "," + part
        else:
            out.append(part)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the chunk sweep; 500 questions")
    parser.add_argument("--questions", type=int, default=None, help="questions to evaluate (default all)")
    parser.add_argument("--sweep-passages", type=int, default=1500)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--rankings", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--candidates", type=int, default=None,
                        help="search()'s cap on ranked results (default: the setting, 100); output gets a -cN suffix")
    opts = parser.parse_args()
    rankings = _split_rankings(opts.rankings) if opts.rankings else RANKINGS
    started = time.time()
    questions, passages = load_nq()
    log(f"NQ: {len(questions)} questions, {len(passages)} distinct gold passages")
    n_q = opts.questions or (500 if opts.quick else len(questions))
    chosen = questions if n_q >= len(questions) else random.Random(1).sample(questions, n_q)

    gold = write_gold(passages)
    builds = [build(NQ_CORPUS, [gold, SAMPLE])]
    gold_path = {i: f"p{i:05d}.txt" for i in range(len(passages))}
    nq = eval_main(chosen, gold_path, rankings, opts.candidates)
    kv = eval_kv(rankings, opts.candidates)
    para = eval_paraphrase(rankings, opts.candidates)
    totals = {"paraphrase": para["totals"], **{name: para[f"{name}_totals"] for name in _paraphrase.CHECK_SETS},
              "nq": nq["totals"],
              "off-topic, paraphrase corpus": off_topic_totals(PARA_CORPUS), "off-topic, NQ corpus": off_topic_totals(NQ_CORPUS)}
    sweep = None if opts.quick or opts.skip_sweep else eval_sweep(questions, passages, min(opts.sweep_passages, len(passages)))

    rows = []
    for r in rankings:
        m = nq[r]
        rows.append([r, m["r@1"], m["r@5"], m["r@10"], m["r@25"], m["mrr"], m["page1"], m["pages1_5"], m["mean_ms"],
                     kv[r]["bare key"], kv[r]["question"]])
    print(table(["ranking", "r@1", "r@5", "r@10", "r@25", "MRR", "in page 1", "in pages 1-5", "ms/query",
                 "KV top-2 (key)", "KV top-2 (question)"], rows,
                f"NQ-Open oracle, {len(chosen)} questions; corpus {builds[0]['points']} chunks "
                f"({len(passages)} gold passages + sample_corpora distractors); chunk 200/30; "
                f"candidates {opts.candidates or 'default (100)'}"))
    checks = list(_paraphrase.CHECK_SETS)
    rows = [[r, para[r]["r@1"], para[r]["r@5"], para[r]["r@10"], para[r]["mrr"], para["main_html"][r]["r@5"],
             para["main_html"][r]["r@10"]]
            + [para[c][r][k] for c in checks for k in ("r@1", "r@5", "r@10", "mrr")]
            + [nq[r]["r@1"], nq[r]["r@5"], nq[r]["r@10"], nq[r]["mrr"], kv[r]["bare key"], kv[r]["question"],
               para["ranks"][r][para["readme_question"]]] for r in rankings]
    print(table(["ranking", "para hit@1", "hit@5", "hit@10", "MRR", "para HTML hit@5", "hit@10"]
                + [f"{c} {k}" if k == "hit@1" else k for c in checks for k in ("hit@1", "hit@5", "hit@10", "MRR")]
                + ["NQ r@1", "r@5", "r@10", "MRR", "KV key", "KV question", "lm() rank"], rows,
                f"Side by side: paraphrase set ({para['questions']} questions, {para['html_questions']} of them HTML) "
                f"and the check sets ({', '.join(c + ' ' + str(para['sets'][c]) for c in checks)} questions) in one corpus "
                f"({para['build']['points']} chunks), NQ ({len(chosen)} questions), KV top-2; "
                f"lm() rank = 'How do I fit a linear model in R?'"))
    sets = ["main", *checks]
    print(table(["ranking"] + [f"{c} {k}" if k == "hit@1" else k for c in sets for k in ("hit@1", "hit@5", "hit@10")],
                [[r] + [para["labelled"][c][r][k] for c in sets for k in ("r@1", "r@5", "r@10")] for r in rankings],
                "The same questions, a hit counted only when it is filed under the gold section (its last heading is "
                "the gold heading, as a reader of the result sees it) and is a chunk of it"))
    print(table(["questions", "median of N", "max", "share with N+", "gold of the top 10 ranked past N"],
                [[k, v["median"], v["max"], v["capped"], v.get("gold_dropped", "-")] for k, v in totals.items()],
                f"'of N' under the default ranking ({DEFAULT})"))
    print(f"questions that look like identifiers (hybrid rankings led by BM25 for these): "
          f"{nq['identifier_like_questions']}")
    for ranking, p in nq["paging"].items():
        print(f"paging, {ranking}, 100 questions: pages 1-5 (size 5) differ from one size-25 list in "
              f"{p['pages_differ_from_one_list']}, the same call twice differs in {p['same_call_differs']}, "
              f"pages 1-5 repeat or skip a hit in {p['pages_1_5_repeat_or_skip']}")
    if sweep:
        print()
        rows = []
        for cfg, res in sweep["configs"].items():
            for r in SWEEP_RANKINGS:
                p, a = res[r]["passage"], res[r]["answer"]
                rows.append([cfg, res["build"]["points"], r, p["r@1"], p["r@5"], p["r@25"], p["mrr"], a["r@1"], a["r@5"],
                             a["mrr"]])
        print(table(["chunk/overlap", "chunks", "ranking", "r@1", "r@5", "r@25", "MRR", "answer r@1", "answer r@5",
                     "answer MRR"], rows,
                    f"Chunk sweep: {sweep['passages']} passages, 5 per file ({sweep['files']} files), "
                    f"{sweep['questions']} questions"))
    data = {"bench": "retrieval_quality", "machine": machine(), "quick": opts.quick, "questions": len(chosen),
            "candidates": opts.candidates,
            "passages": len(passages), "builds": builds, "nq": nq, "kv": kv, "paraphrase": para, "of_n": totals,
            "sweep": sweep,
            "wall_s": round(time.time() - started, 1)}
    name = "retrieval_quality" + (f"-c{opts.candidates}" if opts.candidates else "") + ("-quick" if opts.quick else "")
    print(f"\nwrote {write_json(name, data)}")


if __name__ == "__main__":
    main()
