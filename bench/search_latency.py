"""Search latency of docmem.search.search() at 10k, 100k and 1M chunks.

    .venv/bin/python bench/search_latency.py [--quick] [--scales 10000,100000,1000000]
        [--config auto|default|int8] [--queries 300] [--rebuild]

Corpora are synthetic but made of real text, so BM25 posting lists look like real ones:
  * the text source is real prose and technical writing: every document of sample_corpora/
    (through docmem's own loaders), the 2,655 NQ gold passages (Wikipedia) and, when the
    ingest bench's Debian cache has it, up to 20 MB of linux-doc .txt (reST) sources;
  * a chunk is a window of ~150 consecutive words of that text stream (crossing sentences,
    like a real chunk), with 15% of the words replaced by words drawn from the stream's own
    unigram distribution, so that at 1M chunks the same window is rarely repeated verbatim;
  * dense vectors: the real model does ~80 chunks/s, so 1M would take 3.5 hours. Instead a
    mixture of 1,024 gaussians in 384-d (unit vectors, ~0.7 cosine to their centre); a chunk's
    component follows its place in the text stream (same topic -> same cluster);
  * written through ``corpus.store.upsert(chunks, bm25_document(...), dense)`` with real
    ``Chunk`` objects (20 chunks per synthetic document), then ``corpus.store.optimize()``.
Queries: --queries spans of 5-10 words from sentences of held-out documents (never in the
stream), each with a query vector from the same mixture. The hybrid latency replaces only
the query embedding with that vector (a stub on ``corpus._embedder``); the real model's
``embed_query`` time is measured separately and must be added for an end-to-end figure.

--config: ``default`` is the shard exactly as docmem creates it; ``int8`` pre-creates the
shard (bench code only) with int8 scalar quantization and HNSW ef_construct=64, which
DESIGN.md says makes optimize() at 500k feasible. ``auto`` = default below 1M, int8 at 1M.
Built corpora are cached under bench/cache/search/ (several GB at 1M); --rebuild rebuilds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, REPO, SAMPLE, ExternalRssSampler, RssSampler, Timer, load1, log, machine, summary_ms, table, write_json  # noqa: E402

import numpy as np  # noqa: E402

GEN_VERSION = "v1"
# v2: point ids carry their section (docmem.schema.point_id) and each synthetic document has four
# headed sections of five chunks, so ordering by section groups as it does on real documents.
# v3: the first chunk of each section opens it (its id says so: docmem.schema.section_opener), so
# the opening bonus re-sorts the dense list as on real documents. v4: the opening mark is an XOR
# of the id's first 32 bits (v3's hash of them cost 0.17 ms a search).
BUILD_VERSION = "v4"
DIM = 384
CLUSTERS = 1024
TOPIC_SPAN = 4000  # words of the stream per topic -> cluster
CHUNK_WORDS = (120, 180)
SUBSTITUTE = 0.15
CHUNKS_PER_DOC = 20
BATCH = 1000
NOISE = 1.0  # |noise| ~ |centre| -> cosine to centre ~0.7
SRC = CACHE / "search" / f"source-{GEN_VERSION}.npz"
# "hybrid" is docmem's former default fusion (rrf:60:1,3); "dbsf" is the default since retrieval_quality.py
# measured it best on NQ, and "rrf:1:1,3" was its runner-up; "sections" is the default since the
# paraphrase set (docmem.ranking: both lists fetched, fused and grouped by section in docmem).
MODES = {"bm25": "bm25", "dense": "dense", "hybrid": "rrf:60:1,3", "dbsf": "dbsf", "rrf:1:1,3": "rrf:1:1,3",
         "sections": "sections"}
# The default's fusion without reading sections (no section evidence, no ordering by
# section): what the sections' payload reads cost, at the default's 100 candidates only.
MODES_AT_100 = {"fused": "fused:linear:0.1,1"}


# --- the text source -----------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _documents() -> list[tuple[str, str]]:
    """(name, text) of every real document used as a source."""
    import gzip

    from ingest.loaders import load, unsupported_reason
    from ingest.discover import discover

    docs: list[tuple[str, str]] = []
    for f in discover([SAMPLE]).files:
        if unsupported_reason(f.path):
            continue
        try:
            d = load(f.path)
        except Exception:
            continue
        docs.append((f.rel, "\n\n".join(b.text for b in d.blocks)))
    with gzip.open("/work/shared/data/nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as fh:
        seen = set()
        for line in fh:
            ctx = json.loads(line)["ctxs"][0]
            key = (ctx["title"], ctx["text"])
            if key not in seen:
                seen.add(key)
                docs.append((f"nq/{len(seen)}", f"{ctx['title']}. {ctx['text']}"))
    linux = CACHE / "x"
    budget = 20e6
    for root in sorted(linux.glob("linux-doc*")):
        for p in sorted(root.rglob("*.txt")):
            if budget <= 0:
                break
            text = p.read_text(encoding="utf-8", errors="replace")
            budget -= len(text)
            docs.append((str(p.relative_to(linux)), text))
    return docs


def build_source(n_queries: int) -> dict[str, Any]:
    if SRC.exists():
        data = np.load(SRC, allow_pickle=True)
        return {k: data[k] for k in data.files}
    log("building the text source (once; cached)")
    docs = _documents()
    rng = random.Random(11)
    rng.shuffle(docs)
    held, used, queries = [], [], []
    wanted = max(n_queries, 1000) * 2
    for name, text in docs:  # held-out documents until there are enough query sentences
        if len(queries) >= wanted:
            used.append((name, text))
            continue
        held.append((name, text))
        for sentence in _SENTENCE.split(text):
            words = sentence.split()
            if 8 <= len(words) <= 40 and sum(w.isalpha() for w in words) >= len(words) * 0.7:
                queries.append(words)
    vocab: dict[str, int] = {}
    stream: list[int] = []
    for _name, text in used:
        stream.extend(vocab.setdefault(w, len(vocab)) for w in text.split())
    qrng = random.Random(5)
    qrng.shuffle(queries)
    query_texts = []
    for words in queries[: max(n_queries, 1000)]:
        n = qrng.randint(5, 10)
        start = qrng.randint(0, max(0, len(words) - n))
        query_texts.append(" ".join(words[start:start + n]))
    out = {
        "vocab": np.array(list(vocab), dtype=object),
        "stream": np.array(stream, dtype=np.int32),
        "queries": np.array(query_texts, dtype=object),
        "meta": np.array(json.dumps({"documents": len(used), "held_out_documents": len(held),
                                     "words": len(stream), "vocabulary": len(vocab)}), dtype=object),
    }
    SRC.parent.mkdir(parents=True, exist_ok=True)
    np.savez(SRC, **out)
    return out


def centres() -> np.ndarray:
    rng = np.random.default_rng(1234)
    c = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def query_vectors(n: int) -> np.ndarray:
    rng = np.random.default_rng(99)
    c = centres()
    picks = rng.integers(0, CLUSTERS, n)
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * (NOISE / np.sqrt(DIM))
    return _unit(c[picks] + noise)


# --- generation workers (forked before Qdrant starts its threads) --------------------------------

_G: dict[str, Any] = {}


def _init_worker(vocab: np.ndarray, stream: np.ndarray) -> None:
    _G["vocab"], _G["stream"] = vocab, stream
    counts = np.bincount(stream, minlength=len(vocab)).astype(np.float64)
    _G["cdf"] = np.cumsum(counts / counts.sum())
    _G["centres"] = centres()


def _generate(batch_no: int, scale_seed: int) -> tuple[int, list[str], list[Any], np.ndarray]:
    from docmem.embedders import bm25_document

    rng = np.random.default_rng([scale_seed, batch_no])
    vocab, stream, cdf = _G["vocab"], _G["stream"], _G["cdf"]
    texts, sparse, clusters = [], [], []
    for _ in range(BATCH):
        n = int(rng.integers(*CHUNK_WORDS))
        start = int(rng.integers(0, len(stream) - n))
        ids = stream[start:start + n].copy()
        mask = rng.random(n) < SUBSTITUTE
        ids[mask] = np.searchsorted(cdf, rng.random(int(mask.sum())))
        ids = np.minimum(ids, len(vocab) - 1)
        text = " ".join(vocab[ids].tolist())
        texts.append(text)
        v = bm25_document(text)
        sparse.append((v.indices, v.values))
        clusters.append((start // TOPIC_SPAN) % CLUSTERS)
    noise = rng.standard_normal((BATCH, DIM)).astype(np.float32) * (NOISE / np.sqrt(DIM))
    dense = _unit(_G["centres"][np.array(clusters)] + noise)
    return batch_no, texts, sparse, dense


def _generate_star(args: tuple[int, int]) -> Any:
    return _generate(*args)


# --- one scale (in a subprocess) -----------------------------------------------------------------

def _precreate_int8(shard_dir: Path) -> dict[str, Any]:
    """The shard docmem's EdgeStore would create, plus int8 quantization and ef_construct=64."""
    import qdrant_edge as qe

    from docmem.store.base import DENSE, INTEGER_FIELDS, KEYWORD_FIELDS, SPARSE

    config = qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=10000),
        quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True),
    )
    shard_dir.mkdir(parents=True, exist_ok=True)
    shard = qe.EdgeShard.create(str(shard_dir), config)
    for name in KEYWORD_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
    for name in INTEGER_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))
    shard.close()
    return {"hnsw_m": 16, "ef_construct": 64, "quantization": "int8 scalar, quantile 0.99, always_ram"}


class _StubEmbedder:
    """Stands in for the model at query time only: returns the query's mixture vector."""

    spec = "bundled"
    dim = DIM

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text]


def _build(home: Path, scale: int, config: str, src: dict[str, Any]) -> dict[str, Any]:
    import multiprocessing

    os.environ["DOCMEM_HOME"] = str(home)
    info: dict[str, Any] = {"scale": scale, "config": config}
    ctx = multiprocessing.get_context("fork")  # before qdrant_edge/onnx threads exist
    pool = ctx.Pool(2, initializer=_init_worker, initargs=(src["vocab"], src["stream"]))
    from docmem.config import load_settings
    from docmem.schema import Chunk
    from docmem.store.base import SparseVec
    from docmem.store.corpus import open_corpus

    if config == "int8":
        info["shard_config"] = _precreate_int8(home / "corpora" / "bench" / "shard")
    else:
        info["shard_config"] = "docmem default (EdgeStore): HNSW m=16 ef_construct=100, no quantization"
    settings = load_settings()
    n_batches = -(-scale // BATCH)
    seed = 7
    written = 0
    with RssSampler() as rss, Timer() as t_load:
        with open_corpus(settings, "bench", create=True, embedder="bundled") as corpus:
            upsert_s = 0.0
            for batch_no, texts, sparse, dense in pool.imap(_generate_star, [(b, seed) for b in range(n_batches)]):
                chunks = []
                for i, text in enumerate(texts):
                    n = batch_no * BATCH + i
                    doc, index = divmod(n, CHUNKS_PER_DOC)
                    digest = hashlib.sha256(f"synthetic-{doc}".encode()).hexdigest()
                    chunks.append(Chunk(doc_hash=digest, index=index, text=text, path=f"synthetic/doc{doc:07d}.txt",
                                        title=f"Synthetic document {doc}", headings=(f"Part {index // 5 + 1}",),
                                        opens_section=index % 5 == 0, char_start=index * 900,
                                        char_end=index * 900 + len(text)))
                t0 = time.perf_counter()
                corpus.store.upsert(chunks, [SparseVec(list(i), list(v)) for i, v in sparse], dense.tolist())
                upsert_s += time.perf_counter() - t0
                written += len(chunks)
                if batch_no % 50 == 0:
                    log(f"  {written:,} / {scale:,} written ({written / (time.perf_counter() - t_load.start):,.0f}/s)")
            corpus.store.flush()
            pool.close()
            pool.join()
            info["write_s"] = round(time.perf_counter() - t_load.start, 1)
            info["upsert_call_s"] = round(upsert_s, 1)
            info["points_per_s"] = round(written / info["write_s"], 0)
            info["write_peak_rss_mb"] = rss.peak_tree_mb
    log(f"  written {written:,} in {info['write_s']} s; optimizing")
    # optimize() holds the GIL throughout, so the sampler must be another process.
    with ExternalRssSampler() as rss:
        with open_corpus(settings, "bench") as corpus:
            with Timer() as t_opt:
                corpus.store.optimize()
                corpus.store.flush()
    info["optimize_s"] = round(t_opt.seconds, 1)
    info["optimize_peak_rss_mb"] = rss.peak_mb
    info["optimize_peak_anon_mb"] = rss.peak_anon_mb
    info["load1_after_optimize"] = load1()
    info["disk_mb"] = round(sum(p.stat().st_blocks * 512 for p in home.rglob("*") if p.is_file()) / 1e6)
    log(f"  optimize {info['optimize_s']} s, peak RSS {info['optimize_peak_rss_mb']} MB")
    return info


def child(spec: dict[str, Any]) -> None:
    scale, config, home = spec["scale"], spec["config"], Path(spec["home"])
    src = build_source(spec["queries"])
    marker = home / "built.json"
    if marker.exists() and not spec["rebuild"]:
        build = json.loads(marker.read_text())
        build["cached"] = True
    else:
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        build = _build(home, scale, config, src)
        marker.write_text(json.dumps(build))
        build["cached"] = False
    os.environ["DOCMEM_HOME"] = str(home)
    import psutil

    from docmem.config import load_settings
    from docmem.search import search
    from docmem.store.corpus import open_corpus
    from docmem.store.manifest import DENSE_COMPLETE

    queries = [str(q) for q in src["queries"][: spec["queries"]]]
    vectors = query_vectors(len(queries))
    stub = _StubEmbedder({q: vectors[i].tolist() for i, q in enumerate(queries)})
    result: dict[str, Any] = {"build": build, "latency": {}}
    with Timer() as t_open:
        corpus = open_corpus(load_settings(), "bench")
    result["open_s"] = round(t_open.seconds, 2)
    mem = psutil.Process().memory_info()
    result["rss_after_open_mb"] = round(mem.rss / 1e6, 1)
    result["anon_after_open_mb"] = round((mem.rss - mem.shared) / 1e6, 1)
    try:
        corpus._embedder = stub  # bench-only: the query vector comes from the mixture
        result["points"] = corpus.store.count()
        # Written by store.upsert with every vector, not by ingest: say so, as ingest would.
        if not corpus.store.count(missing_dense=True):
            corpus.manifest.set_meta(DENSE_COMPLETE, "1")
        for q in queries[:30]:  # warm the page cache and the engine
            search(corpus, q, page_size=5, ranking=MODES["hybrid"])
        runs = ([(m, 500) for m in MODES] + [(m, c) for m in ("bm25", "hybrid") for c in (100, 1000)]
                + [(m, 100) for m in ("dbsf", "rrf:1:1,3", "dense", "sections", *MODES_AT_100)])
        for mode, cap in runs:
            times, empty = [], 0
            for q in queries:
                t0 = time.perf_counter()
                page = search(corpus, q, page=1, page_size=5, ranking={**MODES, **MODES_AT_100}[mode], candidates=cap)
                times.append(time.perf_counter() - t0)
                empty += not page.hits
            stats = summary_ms(times)
            stats["empty"] = empty
            stats["load1_after"] = load1()
            result["latency"][f"{mode}@{cap}"] = stats
            log(f"  {scale:,} {mode} candidates={cap}: p50 {stats['p50_ms']} ms p95 {stats['p95_ms']} ms")
        result["breakdown"] = _breakdown(corpus, queries)
        result["hnsw_recall_at_10"] = _hnsw_recall(corpus, vectors[:100])
        mem = psutil.Process().memory_info()
        result["rss_after_queries_mb"] = round(mem.rss / 1e6, 1)
        result["anon_after_queries_mb"] = round((mem.rss - mem.shared) / 1e6, 1)
    finally:
        corpus.close()
    Path(spec["out"]).write_text(json.dumps(result))


def _breakdown(corpus: Any, queries: list[str]) -> dict[str, Any]:
    """Where search()'s time goes: the one store.query ranking `candidates` results (what
    search() does, to state "of N"), vs the same query asked only for page 1 (limit 5)."""
    from docmem.search import Ranking, _lists

    out: dict[str, Any] = {}
    for mode in ("bm25", "hybrid"):
        plan = Ranking.parse(MODES[mode])
        for cap, limit in ((500, 500), (500, 5), (100, 100)):
            times = []
            for q in queries:
                lists = _lists(corpus, q, plan, cap)
                t0 = time.perf_counter()
                corpus.store.query(lists, plan.fusion if len(lists) == 2 else None, limit)
                times.append(time.perf_counter() - t0)
            out[f"{mode} prefetch={cap} limit={limit}"] = summary_ms(times)
    return out


def _hnsw_recall(corpus: Any, vectors: np.ndarray) -> float:
    """Dense top-10 as searched (HNSW) vs exact, on the mixture vectors (a sanity figure:
    random-ish vectors are a hard case for HNSW, real text embeddings an easier one)."""
    import qdrant_edge as qe

    shard = corpus.store.shard
    hits = 0
    for v in vectors:
        got = [set(str(p.id) for p in shard.query(qe.QueryRequest(
            limit=10, query=qe.Query.Nearest(v.tolist(), using="dense"), with_payload=False, with_vector=False,
            params=qe.SearchParams(exact=exact)))) for exact in (False, True)]
        hits += len(got[0] & got[1])
    return round(hits / (10 * len(vectors)), 3)


def embed_query_latency(queries: list[str]) -> dict[str, Any]:
    from docmem.embedders import BundledEmbedder

    e = BundledEmbedder()
    for q in queries[:10]:
        e.embed_query(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        e.embed_query(q)
        times.append(time.perf_counter() - t0)
    return summary_ms(times)


def run_scale(scale: int, config: str, n_queries: int, rebuild: bool) -> dict[str, Any]:
    home = CACHE / "search" / f"{scale}-{config}-{GEN_VERSION}{BUILD_VERSION}"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        out = fh.name
    spec = {"scale": scale, "config": config, "home": str(home), "queries": n_queries, "rebuild": rebuild, "out": out}
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO)
    with RssSampler(proc.pid) as rss:
        code = proc.wait()
    if code:
        raise SystemExit(f"scale {scale} failed ({code})")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    result["scale"], result["config"], result["peak_rss_tree_mb"] = scale, config, rss.peak_tree_mb
    return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k only")
    parser.add_argument("--scales", default="10000,100000,1000000")
    parser.add_argument("--config", default="auto", choices=["auto", "default", "int8"])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rebuild", action="store_true")
    opts = parser.parse_args()
    scales = [10_000] if opts.quick else [int(s) for s in opts.scales.split(",")]
    started = time.time()
    src = build_source(opts.queries)
    meta = json.loads(str(src["meta"]))
    log(f"source: {meta}")
    queries = [str(q) for q in src["queries"][: opts.queries]]
    results = []
    for scale in scales:
        config = opts.config if opts.config != "auto" else ("int8" if scale >= 1_000_000 else "default")
        log(f"scale {scale:,} ({config})")
        results.append(run_scale(scale, config, opts.queries, opts.rebuild))
    log("real embed_query latency")
    embed = embed_query_latency(queries)

    rows = []
    for r in results:
        b = r["build"]
        rows.append([f"{r['scale']:,}", r["config"], "yes" if b.get("cached") else "no", b["write_s"], b["points_per_s"],
                     b["write_peak_rss_mb"], b["optimize_s"], b["optimize_peak_rss_mb"], b["disk_mb"], r["open_s"],
                     r["rss_after_open_mb"], r["hnsw_recall_at_10"]])
    print(table(["chunks", "shard config", "cached", "write s", "points/s", "write RSS MB", "optimize s",
                 "optimize RSS MB", "disk MB", "reopen s", "RSS open MB", "HNSW recall@10"], rows,
                "Build (synthetic corpus written through corpus.store.upsert, then optimize())"))
    print()
    rows = []
    for r in results:
        for key, s in r["latency"].items():
            mode, cap = key.split("@")
            target = ""
            if r["scale"] >= 1_000_000 and mode != "dense":
                target = "ok" if s["p50_ms"] <= 5 and s["p95_ms"] <= 20 else "MISSED"
            rows.append([f"{r['scale']:,}", mode, cap, s["p50_ms"], s["p95_ms"], s["p99_ms"], s["mean_ms"],
                         s["empty"], target])
    print(table(["chunks", "mode", "candidates", "p50 ms", "p95 ms", "p99 ms", "mean ms", "no hits",
                 "1M target (p50<=5, p95<=20)"], rows,
                f"search() page 1, page_size 5, {opts.queries} queries (hybrid = rrf:60:1,3; query vector stubbed)"))
    rows = []
    for r in results:
        for key, st in r.get("breakdown", {}).items():
            rows.append([f"{r['scale']:,}", key, st["p50_ms"], st["p95_ms"]])
    print()
    print(table(["chunks", "store.query alone", "p50 ms", "p95 ms"], rows,
                "Breakdown: the store query alone, ranking all candidates (as search() does) vs only page 1"))
    print(f"\nRSS after reopening (MB, anon = without file-backed mmapped pages): " + ", ".join(
        f"{r['scale']:,}: {r['rss_after_open_mb']:,.0f} (anon {r.get('anon_after_open_mb', float('nan')):,.0f})"
        for r in results))
    print(f"\nreal embed_query (bundled MiniLM int8) on the same queries: p50 {embed['p50_ms']} ms, "
          f"p95 {embed['p95_ms']} ms -- add this to dense/hybrid for end-to-end latency")
    data = {"bench": "search_latency", "machine": machine(), "quick": opts.quick, "source": meta,
            "generator": {"version": GEN_VERSION + BUILD_VERSION, "clusters": CLUSTERS, "chunk_words": CHUNK_WORDS,
                          "substitute": SUBSTITUTE, "noise": NOISE, "topic_span": TOPIC_SPAN},
            "embed_query": embed, "wall_s": round(time.time() - started, 1), "results": results}
    print(f"\nwrote {write_json('search_latency' + ('-quick' if opts.quick else ''), data)}")


if __name__ == "__main__":
    main()
