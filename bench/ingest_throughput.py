"""Ingest throughput: extraction vs embedder vs the real pipeline, and peak RSS.

    .venv/bin/python bench/ingest_throughput.py [--quick] [--pdf-mb 100] [--html-mb 20]
        [--embed-sample 2000] [--dense-cap 2000]

For each corpus, in one run:
  (a) extraction alone: load() + Chunker over the same files, 2-process spawn pool,
      biggest file first (as the pipeline schedules them)          -> pages/s, MB/s, chunks/s
  (b) the embedder alone: BundledEmbedder().embed over those chunks' embed texts
      (a fixed random sample for large corpora), in calls of 128   -> chunks/s
  (c) the real ingest with dense=False, in a subprocess: time until the last file is written
      and flushed (BM25-searchable), as a ratio of (a)'s rate (target >= 0.8)
  (d) a second ingest with dense=True on that corpus: the dense fill resumes; its rate vs (b)
      (target >= 0.8). For large corpora the fill is stopped after --dense-cap chunks (it
      would take far too long on 2 cores) and the whole-ingest rate is extrapolated.
  (e) peak RSS (process tree, sampled) of each ingest subprocess; for the PDF corpus at
      two sizes to show RSS stays bounded.

Corpora: sample_corpora/ and (without --quick) Debian documentation packages fetched with
`apt-get download` + `dpkg -x` into bench/cache/: texlive-latex-extra-doc (PDFs; a fixed
random subset of --pdf-mb MB) and linux-doc-6.1 (HTML; a subset of --html-mb MB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, REPO, SAMPLE, RssSampler, Timer, load1, log, machine, table, write_json  # noqa: E402

WORKERS = 2
CHUNK_TOKENS, CHUNK_OVERLAP = 200, 30  # the product defaults (docmem.config.Settings)
EMBED_CALL = 128  # ingest.pipeline.DENSE_BATCH


# --- corpora -------------------------------------------------------------------------------------

def _have_package(name: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
    return "Candidate:" in out and "Candidate: (none)" not in out


def fetch_package(candidates: list[str]) -> tuple[str, Path]:
    """apt-get download + dpkg -x the first package that exists; returns (name, root)."""
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for name in candidates:
        root = CACHE / "x" / name
        if (root / ".done").exists():
            return name, root
        existing = sorted(debs.glob(f"{name}_*.deb"))
        if not existing:
            if not _have_package(name):
                log(f"package {name} not available, trying the next candidate")
                continue
            log(f"apt-get download {name}")
            subprocess.run(["apt-get", "download", name], cwd=debs, check=True)
            existing = sorted(debs.glob(f"{name}_*.deb"))
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(existing[-1]), str(root)], check=True)
        (root / ".done").write_text(existing[-1].name)
        return name, root
    raise SystemExit(f"none of {candidates} could be fetched (run apt-get update?)")


def stage_subset(src_files: list[Path], target_mb: float, label: str, seed: int = 42) -> tuple[Path, list[Path]]:
    """A fixed random subset of about target_mb, hard-linked flat into a staging folder."""
    files = sorted(src_files)
    random.Random(seed).shuffle(files)
    chosen, total = [], 0
    for f in files:
        if total >= target_mb * 1e6:
            break
        chosen.append(f)
        total += f.stat().st_size
    dest = CACHE / "corpora" / f"{label}-{target_mb:g}MB"
    marker = dest / ".staged"
    if not marker.exists():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for i, f in enumerate(chosen):
            target = dest / f"{i:04d}-{f.name}"
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)
        marker.write_text(json.dumps({"files": len(chosen), "bytes": total}))
    return dest, chosen


def corpus_files(root: Path) -> list[Path]:
    """The files the pipeline would load from root (same discovery and format filter)."""
    from ingest.discover import discover
    from ingest.loaders import unsupported_reason

    found = discover([root])
    files = [f for f in found.files if unsupported_reason(f.path) is None]
    files.sort(key=lambda f: -f.size)  # biggest first, as ingest.pipeline does
    return [f.path for f in files]


# --- (a) extraction alone ------------------------------------------------------------------------

def _extract(path: str) -> tuple[str, int, int, list[str], str | None]:
    """Worker: load + chunk one file; returns (path, pages, bytes, embed texts, error)."""
    from ingest.chunker import Chunker
    from ingest.loaders import load

    global _CHUNKER
    try:
        chunker = _CHUNKER
    except NameError:
        chunker = _CHUNKER = Chunker(CHUNK_TOKENS, CHUNK_OVERLAP)
    size = os.path.getsize(path)
    try:
        document = load(Path(path))
        chunks = chunker.chunk(document, doc_hash=hashlib.sha256(path.encode()).hexdigest(), path=path)
        return path, document.pages, size, [c.embed_text() for c in chunks], None
    except Exception as exc:  # counted, as ingest would report it
        return path, 0, size, [], f"{type(exc).__name__}: {exc}"


def extraction_alone(files: list[Path]) -> tuple[dict[str, Any], list[str]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    texts: list[str] = []
    pages = size = failed = 0
    with Timer() as t:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx) as pool:
            for _path, p, s, chunk_texts, error in pool.map(_extract, [str(f) for f in files], chunksize=1):
                pages += p
                size += s
                failed += error is not None
                texts.extend(chunk_texts)
    secs = t.seconds
    return {
        "files": len(files), "failed": failed, "pages": pages, "mb": round(size / 1e6, 2),
        "chunks": len(texts), "seconds": round(secs, 2),
        "pages_per_s": round(pages / secs, 1), "mb_per_s": round(size / 1e6 / secs, 3),
        "chunks_per_s": round(len(texts) / secs, 1),
    }, texts


# --- (b) embedder alone --------------------------------------------------------------------------

def embedder_alone(texts: list[str], sample: int | None, sorted_too: bool = True) -> dict[str, Any]:
    """Random order, as the dense fill meets chunks (it scrolls points by id, i.e. at random);
    then the same texts sorted by length, which shows what batch padding costs."""
    from docmem.embedders import BundledEmbedder

    rng = random.Random(7)
    chosen = rng.sample(texts, sample) if sample and len(texts) > sample else rng.sample(texts, len(texts))
    with Timer() as load_t:
        embedder = BundledEmbedder()
    embedder.embed(chosen[:8])  # warm-up: onnxruntime's first run allocates its arenas

    def run(order: list[str]) -> float:
        with Timer() as t:
            for start in range(0, len(order), EMBED_CALL):
                embedder.embed(order[start:start + EMBED_CALL])
        return t.seconds

    secs = run(chosen)
    out = {"chunks": len(chosen), "model_load_s": round(load_t.seconds, 2), "seconds": round(secs, 2),
           "chunks_per_s": round(len(chosen) / secs, 1),
           "mean_chars": round(sum(map(len, chosen)) / max(1, len(chosen)))}
    if sorted_too:
        secs_sorted = run(sorted(chosen, key=len))
        out["sorted_seconds"] = round(secs_sorted, 2)
        out["sorted_chunks_per_s"] = round(len(chosen) / secs_sorted, 1)
    del embedder
    return out


# --- (c)/(d)/(e) the real ingest, in a subprocess ------------------------------------------------

class _Stop(Exception):
    pass


def child(args: dict[str, Any]) -> None:
    """Runs in a subprocess: one real ingest; writes its measurements to args['out']."""
    os.environ["DOCMEM_HOME"] = args["home"]
    from docmem.config import load_settings
    from docmem.search import search
    from docmem.store.corpus import open_corpus
    from ingest.pipeline import Progress, ingest

    marks: dict[str, Any] = {"dense_first": None, "dense_last": None, "dense_done": 0, "index": None}
    cap = args.get("dense_cap")

    def progress(event: Progress) -> None:
        now = time.perf_counter()
        if event.stage == "dense":
            if marks["dense_first"] is None:
                marks["dense_first"] = now
            marks["dense_last"], marks["dense_done"] = now, event.done
            if cap and event.done >= cap:
                raise _Stop
        elif event.stage == "index" and marks["index"] is None:
            marks["index"] = now

    settings = load_settings()
    result: dict[str, Any] = {}
    with Timer() as open_t:
        corpus = open_corpus(settings, "bench", create=True, embedder="bundled")
    start = time.perf_counter()
    stopped = False
    try:
        try:
            summary = ingest(corpus, [Path(p) for p in args["paths"]], workers=WORKERS,
                             dense=args["dense"], progress=progress)
            result["summary"] = {k: v for k, v in summary.as_dict().items()
                                 if k not in ("added", "updated", "removed", "unchanged", "skipped", "warnings")}
            result["summary"]["failed"] = summary.failed[:20]
            result["summary"]["files_added"] = len(summary.added)
        except _Stop:
            stopped = True
        end = time.perf_counter()
        result.update(
            open_s=round(open_t.seconds, 2), total_s=round(end - start, 2), stopped_at_cap=stopped,
            searchable_s=round(marks["index"] - start, 2) if marks["index"] else None,
            dense_done=marks["dense_done"],
            dense_s=round(marks["dense_last"] - marks["dense_first"], 2) if marks["dense_first"] else None,
        )
        if not args["dense"]:
            with Timer() as q:
                page = search(corpus, args.get("probe", "configuration options"), ranking="bm25", page_size=5)
            result["probe_search"] = {"hits": len(page.hits), "total": page.total, "ms": round(q.seconds * 1000, 1)}
        result["points"] = corpus.store.count()
        result["missing_dense"] = corpus.store.count(missing_dense=True)
    finally:
        corpus.close()
    # Not ru_maxrss: Linux carries the high-water mark of the forking parent (the bench,
    # with the model loaded) into the child, so it over-reports; the parent samples RSS.
    Path(args["out"]).write_text(json.dumps(result))


def run_child(home: Path, paths: list[Path], dense: bool, dense_cap: int | None = None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        out = fh.name
    spec = {"home": str(home), "paths": [str(p) for p in paths], "dense": dense,
            "dense_cap": dense_cap, "out": out}
    env = dict(os.environ, DOCMEM_HOME=str(home))
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], env=env, cwd=REPO)
    with RssSampler(proc.pid) as rss:
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"ingest subprocess failed with exit code {code}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    result["peak_rss_tree_mb"] = rss.peak_tree_mb
    result["peak_rss_main_mb"] = rss.peak_main_mb
    result["peak_rss_main_anon_mb"] = rss.peak_main_anon_mb
    result["load1_after"] = load1()
    return result


# --- one corpus ----------------------------------------------------------------------------------

def bench_corpus(label: str, root: Path, embed_sample: int | None, dense_cap: int | None,
                 extra_sizes: list[tuple[str, Path]] = ()) -> dict[str, Any]:
    files = corpus_files(root)
    log(f"{label}: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    log(f"{label}: (a) extraction alone")
    a, texts = extraction_alone(files)
    a["load1_after"] = load1()
    log(f"{label}: (a) {a}")
    log(f"{label}: (b) embedder alone on {min(len(texts), embed_sample or len(texts))} chunks")
    b = embedder_alone(texts, embed_sample)
    b["load1_after"] = load1()
    log(f"{label}: (b) {b}")
    del texts
    home = Path(tempfile.mkdtemp(prefix=f"docmem-bench-ingest-{label}-", dir="/tmp"))
    try:
        log(f"{label}: (c) ingest dense=False")
        c = run_child(home, [root], dense=False)
        log(f"{label}: (c) {c}")
        log(f"{label}: (d) ingest dense=True (resume; cap {dense_cap})")
        d = run_child(home, [root], dense=True, dense_cap=dense_cap)
        log(f"{label}: (d) {d}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    chunks = c.get("points") or a["chunks"]
    c_rate = {
        "mb_per_s": round(a["mb"] / c["searchable_s"], 3),
        "chunks_per_s": round(chunks / c["searchable_s"], 1),
        "pages_per_s": round(a["pages"] / c["searchable_s"], 1),
    }
    dense_rate = d["dense_done"] / d["dense_s"] if d.get("dense_s") else float("nan")
    if d["stopped_at_cap"]:
        whole_s = c["total_s"] + chunks / dense_rate  # extrapolated
    else:
        whole_s = c["total_s"] + d["total_s"]
    result = {
        "label": label, "root": str(root.relative_to(REPO)) if root.is_relative_to(REPO) else str(root),
        "a_extraction": a, "b_embedder": b, "c_ingest_bm25": c, "d_ingest_dense": d,
        "c_rate": c_rate, "c_vs_a": round(c_rate["mb_per_s"] / a["mb_per_s"], 3),
        "d_dense_rate": round(dense_rate, 1), "d_dense_vs_b": round(dense_rate / b["chunks_per_s"], 3),
        "whole_ingest_s": round(whole_s, 1), "whole_extrapolated": d["stopped_at_cap"],
        "whole_chunks_per_s": round(chunks / whole_s, 1),
        "whole_vs_b": round(chunks / whole_s / b["chunks_per_s"], 3),
        "rss_sizes": [{"label": label, "mb": a["mb"], "chunks": chunks,
                       "bm25_peak_rss_tree_mb": c["peak_rss_tree_mb"], "bm25_peak_rss_main_mb": c["peak_rss_main_mb"],
                       "bm25_peak_rss_main_anon_mb": c["peak_rss_main_anon_mb"],
                       "dense_peak_rss_tree_mb": d["peak_rss_tree_mb"],
                       "dense_peak_rss_main_anon_mb": d["peak_rss_main_anon_mb"]}],
    }
    for extra_label, extra_root in extra_sizes:
        home = Path(tempfile.mkdtemp(prefix=f"docmem-bench-ingest-{extra_label}-", dir="/tmp"))
        try:
            log(f"{extra_label}: (e) ingest dense=False for RSS")
            e = run_child(home, [extra_root], dense=False)
            log(f"{extra_label}: (e) {e}")
        finally:
            shutil.rmtree(home, ignore_errors=True)
        result["rss_sizes"].append({
            "label": extra_label, "mb": round(sum(f.stat().st_size for f in corpus_files(extra_root)) / 1e6, 2),
            "chunks": e["points"], "bm25_peak_rss_tree_mb": e["peak_rss_tree_mb"],
            "bm25_peak_rss_main_mb": e["peak_rss_main_mb"], "bm25_peak_rss_main_anon_mb": e["peak_rss_main_anon_mb"],
            "dense_peak_rss_tree_mb": None, "dense_peak_rss_main_anon_mb": None,
            "searchable_s": e["searchable_s"],
        })
    return result


def report(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        a, b, c, d = r["a_extraction"], r["b_embedder"], r["c_ingest_bm25"], r["d_ingest_dense"]
        rows.append([r["label"], a["files"], a["mb"], a["pages"], a["chunks"], a["seconds"], a["pages_per_s"],
                     a["mb_per_s"], a["chunks_per_s"]])
    print(table(["corpus", "files", "MB", "pages", "chunks", "s", "pages/s", "MB/s", "chunks/s"], rows,
                "(a) extraction alone: load + chunk, 2 worker processes"))
    print()
    rows = [[r["label"], r["b_embedder"]["chunks"], r["b_embedder"]["mean_chars"], r["b_embedder"]["seconds"],
             r["b_embedder"]["chunks_per_s"], r["b_embedder"].get("sorted_chunks_per_s")] for r in results]
    print(table(["corpus", "chunks", "mean chars", "s", "chunks/s (random order)", "chunks/s (length-sorted)"],
                rows, "(b) embedder alone: BundledEmbedder().embed, calls of 128"))
    print()
    rows = []
    for r in results:
        c = r["c_ingest_bm25"]
        rows.append([r["label"], c["points"], c["searchable_s"], c["total_s"], r["c_rate"]["mb_per_s"],
                     r["c_rate"]["chunks_per_s"], r["c_vs_a"], "ok" if r["c_vs_a"] >= 0.8 else "BELOW"])
    print(table(["corpus", "chunks", "searchable s", "total s (+optimize)", "MB/s", "chunks/s", "vs (a)",
                 "target 0.8"], rows, "(c) ingest, dense=False: time until BM25-searchable"))
    print()
    rows = []
    for r in results:
        d = r["d_ingest_dense"]
        rows.append([r["label"], d["dense_done"], d["dense_s"], r["d_dense_rate"], r["d_dense_vs_b"],
                     r["whole_ingest_s"] if not r["whole_extrapolated"] else f"~{r['whole_ingest_s']:.0f} (extrap.)",
                     r["whole_chunks_per_s"], r["whole_vs_b"], "ok" if r["whole_vs_b"] >= 0.8 else "BELOW"])
    print(table(["corpus", "embedded", "fill s", "fill chunks/s", "fill vs (b)", "whole ingest s",
                 "whole chunks/s", "whole vs (b)", "target 0.8"], rows,
                "(d) dense fill (second ingest, dense=True) and the whole ingest"))
    print()
    rows = []
    for r in results:
        for s in r["rss_sizes"]:
            rows.append([s["label"], s["mb"], s["chunks"], s["bm25_peak_rss_main_mb"], s["bm25_peak_rss_main_anon_mb"],
                         s["bm25_peak_rss_tree_mb"], s["dense_peak_rss_tree_mb"], s["dense_peak_rss_main_anon_mb"]])
    print(table(["corpus", "MB", "chunks", "bm25: main RSS", "bm25: main anon", "bm25: tree RSS",
                 "dense: tree RSS", "dense: main anon"], rows,
                "(e) peak RSS (MB) of the ingest subprocess; tree = + worker processes; "
                "anon = RSS minus file-backed pages (Qdrant's mmapped files)"))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sample_corpora only")
    parser.add_argument("--pdf-mb", type=float, default=100.0)
    parser.add_argument("--html-mb", type=float, default=20.0)
    parser.add_argument("--embed-sample", type=int, default=2000, help="chunks for (b) on large corpora")
    parser.add_argument("--dense-cap", type=int, default=2000, help="chunks embedded in (d) on large corpora")
    parser.add_argument("--skip-html", action="store_true")
    opts = parser.parse_args()

    started = time.time()
    results = [bench_corpus("sample_corpora", SAMPLE, embed_sample=None, dense_cap=None)]
    notes = []
    if not opts.quick:
        name, root = fetch_package(["texlive-latex-extra-doc", "texlive-pictures-doc", "texlive-latex-recommended-doc"])
        notes.append(f"PDF corpus from Debian package {name}")
        pdfs = [p for p in root.rglob("*.pdf") if p.is_file()]
        full, _ = stage_subset(pdfs, opts.pdf_mb, "texlive-pdf")
        half, _ = stage_subset(pdfs, opts.pdf_mb / 2, "texlive-pdf")
        results.append(bench_corpus(f"texlive-pdf-{opts.pdf_mb:g}MB", full, opts.embed_sample, opts.dense_cap,
                                    extra_sizes=[(f"texlive-pdf-{opts.pdf_mb / 2:g}MB", half)]))
        if not opts.skip_html:
            name, root = fetch_package(["linux-doc-6.1", "linux-doc"])
            notes.append(f"HTML corpus from Debian package {name}")
            htmls = [p for p in root.rglob("*.html") if p.is_file()]
            sub, _ = stage_subset(htmls, opts.html_mb, "linux-html")
            results.append(bench_corpus(f"linux-html-{opts.html_mb:g}MB", sub, opts.embed_sample, opts.dense_cap))
    report(results)
    data = {"bench": "ingest_throughput", "machine": machine(), "quick": opts.quick, "notes": notes,
            "settings": {"workers": WORKERS, "chunk_tokens": CHUNK_TOKENS, "chunk_overlap": CHUNK_OVERLAP,
                         "embed_sample": opts.embed_sample, "dense_cap": opts.dense_cap},
            "wall_s": round(time.time() - started, 1), "results": results}
    print(f"\nwrote {write_json('ingest_throughput' + ('-quick' if opts.quick else ''), data)}")


if __name__ == "__main__":
    main()
