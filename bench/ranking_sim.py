"""Ranking ideas simulated on the bench corpora before any of them touches docmem.

    .venv/bin/python bench/ranking_sim.py [--dump]      # ~10 s once dumped

The paraphrase corpus (bench/_paraphrase.py) and the NQ corpus of retrieval_quality.py are
read once (every chunk's dense vector and section, each question's query vector and BM25
list) into bench/cache/ranking_sim/*.pkl; then every variant ranks all chunks in numpy
(exact cosine), so a variant costs milliseconds, not a re-ingest. Run retrieval_quality.py
first: it builds the corpora.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, log  # noqa: E402

os.environ["DOCMEM_HOME"] = str(CACHE / "retrieval" / "home-v1")
import _paraphrase  # noqa: E402
import numpy as np  # noqa: E402

OUT = CACHE / "ranking_sim"
NQ = Path("/work/shared/data/nq-open-oracle.jsonl.gz")


def dump(name: str, out: str, questions: list[str], gold: Callable[[int, Any], bool]) -> dict[str, Any]:
    import qdrant_edge as qe

    from docmem.config import load_settings
    from docmem.embedders import bm25_query
    from docmem.schema import Chunk
    from docmem.store.base import SPARSE, VectorQuery
    from docmem.store.corpus import open_corpus

    corpus = open_corpus(load_settings(), name)
    shard = corpus.store.shard
    ids, vecs, chunks, offset = [], [], [], None
    while True:
        records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=512, with_payload=True, with_vector=True))
        for r in records:
            v = r.vector.get("dense") if isinstance(r.vector, dict) else None
            if v is None:
                continue
            ids.append(str(r.id))
            vecs.append(v)
            chunks.append(Chunk.from_payload(r.payload or {}))
        if offset is None:
            break
    embedder = corpus.embedder
    qv = np.array([embedder.embed_query(q) for q in questions], dtype=np.float32)
    bm25 = []
    for q in questions:
        found = corpus.store.candidates([VectorQuery(SPARSE, bm25_query(q), 100)])[0]
        bm25.append([(s.point_id, s.score) for s in found])
    golds = [[j for j, c in enumerate(chunks) if gold(i, c)] for i in range(len(questions))]
    corpus.close()
    data = {"ids": ids, "vecs": np.array(vecs, dtype=np.float32), "qv": qv, "bm25": bm25, "golds": golds,
            "sections": [(c.path, tuple(c.headings) or ("\0" + c.id,)) for c in chunks],
            "paths": [c.path for c in chunks], "index": [c.index for c in chunks],
            "opens": np.array([c.opens_section for c in chunks], dtype=np.float32),
            "texts": [c.embed_text() for c in chunks], "raw": [c.text for c in chunks], "titles": [c.title for c in chunks], "questions": questions}
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / f"{out}.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    log(f"dumped {name} as {out}: {len(ids)} chunks, {len(questions)} questions")
    return data


def dump_all() -> None:
    from retrieval_quality import NQ_CORPUS, PARA_CORPUS, build

    build(PARA_CORPUS, _paraphrase.ROOTS)
    for out, path in (("para", _paraphrase.QUESTIONS), *_paraphrase.CHECK_SETS.items()):
        qs = _paraphrase.load_questions(path)
        spans = _paraphrase.section_spans(qs)
        dump(PARA_CORPUS, out, [q["question"] for q in qs],
             lambda i, c, qs=qs, spans=spans: _paraphrase.is_gold(qs[i], spans.get(i), c))
    import random

    rows = [json.loads(line) for line in gzip.open(NQ, "rt", encoding="utf-8")]
    passages: dict[tuple[str, str], int] = {}
    for row in rows:
        ctx = row["ctxs"][0]
        passages.setdefault((ctx["title"].strip(), " ".join(ctx["text"].split())), len(passages))
    chosen = random.Random(1).sample(rows, 500)
    want = []
    for row in chosen:
        ctx = row["ctxs"][0]
        want.append(f"p{passages[(ctx['title'].strip(), ' '.join(ctx['text'].split()))]:05d}.txt")
    dump(NQ_CORPUS, "nq", [r["question"] for r in chosen], lambda i, c: c.path == want[i])


def load(name: str) -> dict[str, Any]:
    with (OUT / f"{name}.pkl").open("rb") as fh:
        return pickle.load(fh)


def metrics(ranks: list[int | None]) -> tuple[float, float, float, float]:
    n = len(ranks)
    at = [sum(1 for r in ranks if r is not None and r <= k) / n for k in (1, 5, 10)]
    return (*at, sum(1 / r for r in ranks if r) / n)


def by_section(order: np.ndarray, sections: list[Any], window: int = 50) -> list[int]:
    seen: dict[Any, int] = {}
    keyed = []
    for pos, j in enumerate(order[:window]):
        key = sections[j]
        keyed.append((seen.get(key, 0), pos, int(j)))
        seen[key] = seen.get(key, 0) + 1
    return [j for _, _, j in sorted(keyed)] + [int(j) for j in order[window:]]


def evaluate(d: dict[str, Any], scorer: Callable[[int, np.ndarray], np.ndarray], grouped: bool = True,
             subset: list[int] | None = None) -> tuple[float, ...]:
    cos = d["qv"] @ d["vecs"].T
    ranks = []
    for i in subset if subset is not None else range(len(d["questions"])):
        s = scorer(i, cos[i])
        order = np.argsort(-s, kind="stable")[:100]
        ranked = by_section(order, d["sections"]) if grouped else list(order)
        gold = set(d["golds"][i])
        ranks.append(next((r + 1 for r, j in enumerate(ranked[:25]) if j in gold), None))
    return metrics(ranks)


# --- variants ------------------------------------------------------------------------------------

W_BM25 = 0.1  # the linear fusion's BM25 weight (docmem.ranking.SECTIONS_FUSION)
DEFAULT = "sections, share 0.5, opening 0.03"  # docmem's default ranking


def prepare(d: dict[str, Any]) -> dict[str, Any]:
    """Index helpers: point id -> row, each row's section number, and its neighbours in its file."""
    d["row"] = {p: j for j, p in enumerate(d["ids"])}
    numbers: dict[Any, int] = {}
    d["sec"] = np.array([numbers.setdefault(s, len(numbers)) for s in d["sections"]])
    at = {(p, ix): j for j, (p, ix) in enumerate(zip(d["paths"], d["index"]))}
    d["prev"] = np.array([at.get((p, ix - 1), j) for j, (p, ix) in enumerate(zip(d["paths"], d["index"]))])
    d["next"] = np.array([at.get((p, ix + 1), j) for j, (p, ix) in enumerate(zip(d["paths"], d["index"]))])
    return d


def linear(d: dict[str, Any], i: int, cos: np.ndarray, dense: np.ndarray | None = None, top: int = 100) -> np.ndarray:
    """docmem.ranking.linear over the top ``top`` of ``dense`` (default: the cosines) and the
    question's BM25 list; a point outside both lists scores -inf."""
    dense = cos if dense is None else dense
    order = np.argsort(-cos, kind="stable")[:top]
    out = np.full_like(cos, -np.inf)
    out[order] = dense[order]
    floor = dense[order].min()
    bm25 = d["bm25"][i]
    best = bm25[0][1] if bm25 and bm25[0][1] > 0 else 1.0
    for point, score in bm25:
        j = d["row"].get(point)
        if j is not None:
            out[j] = (out[j] if np.isfinite(out[j]) else floor) + W_BM25 * score / best
    return out


def section_evidence(d: dict[str, Any], cos: np.ndarray, share: float, window: int = 50,
                     opening: float = 0.0) -> np.ndarray:
    """docmem.ranking.with_section_evidence on the dense top ``window``, after
    docmem.ranking.with_opening_bonus (``opening``) on every chunk."""
    cos = cos + opening * d["opens"]
    order = np.argsort(-cos, kind="stable")[:window]
    means: dict[int, list[float]] = {}
    for j in order:
        means.setdefault(int(d["sec"][j]), []).append(float(cos[j]))
    out = cos.copy()
    for j in order:
        out[j] = (cos[j] + share * float(np.mean(means[int(d["sec"][j])]))) / (1 + share)
    return out


def variants(d: dict[str, Any]) -> dict[str, tuple[Callable[[int, np.ndarray], np.ndarray], bool]]:
    """name -> (scorer, ordered by section)."""
    def prf(beta: float, k: int) -> Callable[[int, np.ndarray], np.ndarray]:
        def score(i: int, cos: np.ndarray) -> np.ndarray:
            q = d["qv"][i] + beta * d["vecs"][np.argsort(-cos)[:k]].mean(0)
            again = d["vecs"] @ (q / np.linalg.norm(q))
            return linear(d, i, again)
        return score

    def neighbours(g: float) -> Callable[[int, np.ndarray], np.ndarray]:
        def score(i: int, cos: np.ndarray) -> np.ndarray:
            same = lambda n: np.where(d["sec"][n] == d["sec"], cos[n], cos)  # noqa: E731
            return linear(d, i, cos, (cos + g * np.maximum(same(d["prev"]), same(d["next"]))) / (1 + g))
        return score

    def whole_section_mean(share: float) -> Callable[[int, np.ndarray], np.ndarray]:
        def score(i: int, cos: np.ndarray) -> np.ndarray:
            sums = np.bincount(d["sec"], weights=cos)
            counts = np.bincount(d["sec"])
            return linear(d, i, cos, (cos + share * (sums / counts)[d["sec"]]) / (1 + share))
        return score

    out: dict[str, tuple[Callable[[int, np.ndarray], np.ndarray], bool]] = {
        "dense": (lambda i, cos: cos, False),
        "fused:linear:0.1,1": (lambda i, cos: linear(d, i, cos), False),
        "sections, share 0 (before)": (lambda i, cos: linear(d, i, cos), True),
    }
    for share in (0.25, 0.5, 1.0):
        out[f"sections, share {share}"] = (lambda i, cos, share=share: linear(d, i, cos, section_evidence(d, cos, share)),
                                           True)
    for bonus in (0.02, 0.03, 0.04):
        out[f"sections, share 0.5, opening {bonus}"] = (
            lambda i, cos, bonus=bonus: linear(d, i, cos + bonus * d["opens"], section_evidence(d, cos, 0.5, opening=bonus)),
            True)
    out["sections, share 0.5 over all the section's chunks"] = (whole_section_mean(0.5), True)
    for beta, k in ((0.3, 3), (0.5, 3), (0.3, 5), (1.0, 3)):
        out[f"sections, share 0, PRF beta {beta} top {k}"] = (prf(beta, k), True)
    for g in (0.1, 0.3):
        out[f"sections, share 0, neighbours {g}"] = (neighbours(g), True)
    return out


def report() -> None:
    from _common import table

    import _paraphrase

    sets = {name: prepare(load(name)) for name in ("para", *_paraphrase.CHECK_SETS, "nq")}
    html = [i for i, q in enumerate(_paraphrase.load_questions()) if q["file"].endswith(".html")]
    other = [i for i in range(len(sets["para"]["questions"])) if i not in set(html)]
    columns = [("para", None), ("para", html), ("para", other), *((c, None) for c in _paraphrase.CHECK_SETS),
               ("nq", None)]
    rows = []
    for name in variants(sets["para"]):
        row = [name]
        for set_name, subset in columns:
            scorer, grouped = variants(sets[set_name])[name]
            row += [round(x, 3) for x in evaluate(sets[set_name], scorer, grouped, subset)]
        rows.append(row)
    heads = ["variant"] + [f"{s}{'' if sub is None else (' HTML' if sub is html else ' other')} {m}"
                           for s, sub in columns for m in ("h@1", "h@5", "h@10", "MRR")]
    print(table(heads, rows, f"Simulated rankings (exact cosine over all chunks, no relevance floor): paraphrase "
                             f"{len(sets['para']['questions'])} ({len(html)} HTML), "
                             + ", ".join(f"{c} {len(sets[c]['questions'])}" for c in _paraphrase.CHECK_SETS)
                             + f", NQ {len(sets['nq']['questions'])}"))


def floor_report() -> None:
    """Does the relevance floor (docmem.ranking.DENSE_FLOOR) separate answers from the rest?
    For each set: questions whose best gold hit of the default's top 10 has a cosine under a
    floor; for the off-topic questions, how many chunks of each corpus are over it."""
    from _common import table

    import _paraphrase
    from docmem.embedders import BundledEmbedder

    off = np.array(BundledEmbedder().embed(_paraphrase.OFF_TOPIC), dtype=np.float32)
    floors = (0.1, 0.15, 0.2, 0.25)
    rows = []
    for name in ("para", *_paraphrase.CHECK_SETS, "nq"):
        d = prepare(load(name))
        cos = d["qv"] @ d["vecs"].T
        scorer, _ = variants(d)[DEFAULT]
        best = []
        for i in range(len(d["questions"])):
            ranked = by_section(np.argsort(-scorer(i, cos[i]), kind="stable")[:100], d["sections"])[:10]
            gold = [float(cos[i][j]) for j in ranked if j in set(d["golds"][i])]
            if gold:
                best.append(max(gold))
        counts = [(off @ d["vecs"].T >= f).sum(1) for f in floors]
        rows.append([name, len(best), round(min(best), 3)] + [sum(b < f for b in best) for f in floors]
                    + [float(np.median(c)) for c in counts])
    print(table(["set", "questions with gold in top 10", "lowest gold cosine"]
                + [f"gold under {f}" for f in floors] + [f"off-topic median over {f}" for f in floors], rows,
                "Relevance floor: gold cosines in the default's top 10 (simulated) vs off-topic questions' counts"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dump", action="store_true", help="read the corpora again (after a rebuild)")
    opts = parser.parse_args()
    if opts.dump or not (OUT / "para.pkl").exists():
        dump_all()
    report()
    floor_report()


if __name__ == "__main__":
    main()
