"""Ingest and search end to end on small real files, through the real Qdrant engine."""

from __future__ import annotations

import json
import math
import os
import random
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from docmem.search import search
from docmem.store.corpus import list_corpora, open_corpus
from ingest import extract, pipeline
from ingest.chunker import extracted_text
from ingest.loaders import load
from ingest.pipeline import ingest
from tests.conftest import write_tree

GUIDE = """# Field guide

## Owls

The barn owl hunts at night over open fields. Its heart-shaped face collects sound.

## Herons

The grey heron stands still in shallow water and strikes fish with its bill.
"""

NOTES = "Lighthouse log\n\nThe keeper lit the lamp at dusk.\n\nFog horns sounded twice before dawn.\n"


def _tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "docs", {"guide.md": GUIDE, "sub/notes.txt": NOTES})


def _ingest(settings, paths, **kw):
    with open_corpus(settings, create=True, embedder=kw.pop("embedder", "none")) as corpus:
        return ingest(corpus, paths, workers=kw.pop("workers", 1), **kw)


def test_ingest_then_search_cites_file_heading_and_span(tmp_path):
    from docmem.config import load_settings

    settings = load_settings(chunk_tokens=40, chunk_overlap=5)  # small chunks: one per section
    root = _tree(tmp_path)
    summary = _ingest(settings, [root])
    assert sorted(summary.added) == ["guide.md", "sub/notes.txt"]
    assert summary.failed == [] and summary.chunks_written >= 2

    with open_corpus(settings) as corpus:
        page = search(corpus, "heron fish", page_size=3)
        top = page.hits[0].chunk
        assert top.path == "guide.md"
        assert top.headings == ("Field guide", "Herons")
        assert "grey heron" in top.text
        # The span points into the document's extracted text, exactly.
        text, _ = extracted_text(load(root / "guide.md"))
        assert text[top.char_start:top.char_end] == top.text
        assert page.mode == "bm25"
        assert page.header().startswith("Showing results 1-")


def test_rerun_unchanged_does_no_extraction(settings, tmp_path, monkeypatch):
    root = _tree(tmp_path)
    _ingest(settings, [root])
    loads: list[Path] = []
    monkeypatch.setattr(extract, "load", lambda p, **kw: loads.append(p) or load(p, **kw))
    summary = _ingest(settings, [root])
    assert sorted(summary.unchanged) == ["guide.md", "sub/notes.txt"]
    assert loads == [] and summary.chunks_written == 0

    # Touching a file without changing it costs a hash, not an extraction.
    os.utime(root / "guide.md", ns=(1, 1))
    summary = _ingest(settings, [root])
    assert loads == [] and "guide.md" in summary.unchanged


def test_edit_and_delete_are_reflected(settings, tmp_path):
    root = _tree(tmp_path)
    _ingest(settings, [root])
    (root / "guide.md").write_text(GUIDE.replace("grey heron", "purple heron"), encoding="utf-8")
    (root / "sub" / "notes.txt").unlink()
    summary = _ingest(settings, [root])
    assert summary.updated == ["guide.md"] and summary.removed == ["sub/notes.txt"]
    with open_corpus(settings) as corpus:
        assert "purple heron" in search(corpus, "heron").hits[0].chunk.text
        assert search(corpus, "grey").total == 0
        assert search(corpus, "lighthouse keeper").total == 0
        assert corpus.store.count() == corpus.manifest.totals()[2]


def test_missing_root_removes_nothing(settings, tmp_path):
    root = _tree(tmp_path)
    _ingest(settings, [root])
    summary = _ingest(settings, [tmp_path / "typo"])
    assert summary.removed == [] and summary.failed == [(str(tmp_path / "typo"), "no such file or directory")]
    with open_corpus(settings) as corpus:
        assert corpus.manifest.totals()[0] == 2


def test_paging_is_stable_and_header_is_true(settings, tmp_path):
    files = {f"doc{i:02d}.txt": f"Report {i}\n\nThe turbine vibration was measured at site {i}." for i in range(23)}
    root = write_tree(tmp_path / "many", files)
    _ingest(settings, [root])
    with open_corpus(settings) as corpus:
        pages = [search(corpus, "turbine vibration", page=p, page_size=5) for p in (1, 2, 5, 6)]
    assert pages[0].header() == "Showing results 1-5 of 23 (page 1 of 5)"
    assert pages[1].header() == "Showing results 6-10 of 23 (page 2 of 5)"
    assert pages[2].header() == "Showing results 21-23 of 23 (page 5 of 5)"
    assert pages[3].hits == [] and "past the last page" in pages[3].header()
    ids = [h.chunk.id for p in pages[:3] for h in p.hits]
    assert len(ids) == len(set(ids)) == 13


def test_cap_is_reported_as_plus(settings, tmp_path):
    root = write_tree(tmp_path / "many", {f"d{i}.txt": f"Alpha item {i}" for i in range(12)})
    _ingest(settings, [root])
    with open_corpus(settings) as corpus:
        page = search(corpus, "alpha", page_size=5, candidates=10)
    assert page.header() == "Showing results 1-5 of 10+ (page 1 of 2+)"


def test_identifier_query_finds_exact_match_in_hybrid(settings, tmp_path):
    rng = random.Random(7)
    keys = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(40)]
    files = {f"kv{i}.txt": f"Key-value pair: key = {k}, value = {keys[(i + 1) % 40]}" for i, k in enumerate(keys)}
    root = write_tree(tmp_path / "kv", files)
    with open_corpus(settings, create=True, embedder="bundled") as corpus:
        ingest(corpus, [root], workers=1)
        assert corpus.store.count(missing_dense=True) == 0
        for i in (0, 17, 39):
            for query in (keys[i], f"What is the value of key {keys[i]}?"):
                page = search(corpus, query, page_size=2)
                assert page.mode == "hybrid, BM25-led (identifier)"
                # Each key is also the value of one other pair: both exact matches lead the list.
                texts = [h.chunk.text for h in page.hits]
                assert any(f"key = {keys[i]}" in t for t in texts) and all(keys[i] in t for t in texts)
        assert search(corpus, "value pair key", page_size=5).mode == "hybrid"


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_tied_scores_come_back_in_one_order(tmp_path, backend):
    """Qdrant's RRF returns tied points in hash-map order, which changes from call to call
    (20 orders in 20 calls, measured); each page is its own call, so the store must order ties."""
    from docmem.schema import Chunk
    from docmem.store.base import DENSE, SPARSE, FusionSpec, SparseVec, VectorQuery

    n = 30
    if backend == "edge":
        from docmem.store.edge import EdgeStore

        store = EdgeStore(tmp_path / "shard", 2)
    else:
        qdrant_client = pytest.importorskip("qdrant_client")
        from docmem.store.server import ServerStore

        store = ServerStore(qdrant_client.QdrantClient(path=str(tmp_path / "local")), "ties", 2)
    chunks = [Chunk(doc_hash=f"{i:064x}", index=0, text=f"t{i}", path=f"p{i}.txt", title="t") for i in range(n)]
    # BM25 ranks 0, 1, 2, ...; dense ranks the reverse, so i and n-1-i always tie under RRF.
    sparse = [SparseVec([1], [float(n - i)]) for i in range(n)]
    dense = [[math.cos(i * 0.05), math.sin(i * 0.05)] for i in range(n)]
    store.upsert(chunks, sparse, dense)
    lists = [VectorQuery(SPARSE, SparseVec([1], [1.0]), n), VectorQuery(DENSE, [math.cos(2), math.sin(2)], n)]
    orders = {tuple(s.point_id for s in store.query(lists, FusionSpec("rrf", 1, None), n)) for _ in range(10)}
    assert len(orders) == 1
    (order,) = orders
    assert len(order) == n


def test_path_filter(settings, tmp_path):
    root = _tree(tmp_path)
    _ingest(settings, [root])
    with open_corpus(settings) as corpus:
        assert {h.chunk.path for h in search(corpus, "the", path="sub/*").hits} <= {"sub/notes.txt"}
        assert search(corpus, "keeper lamp", path="*.md").total == 0
        assert search(corpus, "owl", path="nothing/*").header() == 'No results for "owl"'


def test_embedder_mismatch_is_refused(settings, tmp_path):
    _ingest(settings, [_tree(tmp_path)])
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "docs"), "--embedder", "bundled"])
    assert result.exit_code == 1
    assert "was built with embedder none" in result.output


def test_cli_ingest_json_search_and_corpora(tmp_path):
    root = _tree(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["ingest", str(root), "--corpus", "birds", "--embedder", "none", "--json",
                                 "--chunk-tokens", "40", "--chunk-overlap", "5"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["corpus"] == "birds" and len(data["added"]) == 2

    result = runner.invoke(cli, ["search", "barn owl", "--corpus", "birds", "--json"], catch_exceptions=False)
    hit = json.loads(result.output)["hits"][0]
    assert hit["path"] == "guide.md" and hit["headings"] == ["Field guide", "Owls"] and hit["rank"] == 1

    result = runner.invoke(cli, ["search", "barn owl", "--corpus", "birds"], catch_exceptions=False)
    assert "Showing results 1-" in result.output and "guide.md" in result.output

    result = runner.invoke(cli, ["ingest", str(root), "--corpus", "birds"], catch_exceptions=False)
    assert "is up to date: 2 files unchanged." in result.output

    listing = json.loads(runner.invoke(cli, ["corpora", "--json"]).output)
    assert [(c["name"], c["files"], c["embedder"]) for c in listing] == [("birds", 2, "none")]

    result = runner.invoke(cli, ["search", "x", "--corpus", "nope"])
    assert result.exit_code == 1 and "no corpus 'nope'" in result.output


def test_server_backend_matches_embedded(settings, tmp_path):
    """The qdrant-client path (local mode stands in for a server) returns the same ranking."""
    pytest.importorskip("qdrant_client")
    from docmem.config import load_settings

    root = _tree(tmp_path)
    _ingest(settings, [root])
    server = load_settings(corpus="remote", qdrant_url=str(tmp_path / "qdrant-local"))
    _ingest(server, [root])
    with open_corpus(settings) as a, open_corpus(server) as b:
        for q in ("heron fish", "keeper lamp dusk", "owl"):
            ra, rb = search(a, q), search(b, q)
            assert [h.chunk.id for h in ra.hits] == [h.chunk.id for h in rb.hits]
            assert ra.total == rb.total
        assert b.store.neighbours("guide.md", 0, 99)[0].index == 0
    assert {c.name: c.backend for c in list_corpora(settings)}["remote"] == str(tmp_path / "qdrant-local")


def test_changed_chunk_settings_rechunk_everything(tmp_path):
    from docmem.config import load_settings

    root = _tree(tmp_path)
    first = _ingest(load_settings(chunk_tokens=200, chunk_overlap=30), [root])
    again = _ingest(load_settings(chunk_tokens=16, chunk_overlap=2), [root])
    assert sorted(again.updated) == ["guide.md", "sub/notes.txt"]
    assert "chunk settings changed from 200/30 to 16/2" in again.notes[0]
    assert again.chunks_written > first.chunks_written
    forced = _ingest(load_settings(chunk_tokens=16, chunk_overlap=2), [root], force=True)
    assert sorted(forced.updated) == ["guide.md", "sub/notes.txt"] and not forced.notes
    with open_corpus(load_settings()) as corpus:
        assert corpus.store.count() == again.chunks_written  # old chunks replaced, not added


def test_a_corpus_from_an_older_extraction_is_re_extracted(settings, tmp_path):
    root = _tree(tmp_path)
    _ingest(settings, [root])
    with open_corpus(settings) as corpus:
        assert corpus.manifest.get_meta("extraction") == pipeline.EXTRACTION_VERSION
        corpus.manifest.set_meta("extraction", "1")  # as a corpus built by an older docmem
    again = _ingest(settings, [root])
    assert sorted(again.updated) == ["guide.md", "sub/notes.txt"]
    assert again.notes == [f"this corpus was built by an older text extraction (v1, now "
                           f"v{pipeline.EXTRACTION_VERSION}): re-extracting every file"]
    assert not _ingest(settings, [root]).updated  # and then it is up to date


def test_delete_corpus(tmp_path):
    root = _tree(tmp_path)
    runner = CliRunner()
    runner.invoke(cli, ["ingest", str(root), "--corpus", "gone", "--embedder", "none", "--json"], catch_exceptions=False)
    result = runner.invoke(cli, ["corpora", "--delete", "gone"], catch_exceptions=False)
    assert result.exit_code == 0 and "Deleted corpus 'gone'" in result.output
    assert json.loads(runner.invoke(cli, ["corpora", "--json"]).output) == []
    assert (root / "guide.md").exists()
    result = runner.invoke(cli, ["corpora", "--delete", "gone"])
    assert result.exit_code == 1 and "no corpus 'gone'" in result.output


def test_identical_files_in_two_places_are_two_documents(settings, tmp_path):
    root = write_tree(tmp_path / "docs", {"a/copy.txt": NOTES, "b/copy.txt": NOTES})
    summary = _ingest(settings, [root])
    with open_corpus(settings) as corpus:
        assert corpus.store.count() == summary.chunks_written == corpus.manifest.totals()[2]
        assert {h.chunk.path for h in search(corpus, "keeper lamp").hits} == {"a/copy.txt", "b/copy.txt"}
    (root / "a" / "copy.txt").unlink()
    _ingest(settings, [root])
    with open_corpus(settings) as corpus:
        assert [h.chunk.path for h in search(corpus, "keeper lamp").hits] == ["b/copy.txt"]
