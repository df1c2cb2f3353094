"""The ``sections`` ranking: fusion done by docmem agrees with the engine's, pages show
different sections first, and "of N" counts only relevant passages."""

from __future__ import annotations

import dataclasses
import math

import pytest

from docmem import ranking
from docmem.agent.functions import WEAK_MATCH, State, archival_search
from docmem.agent.memory import MainContext
from docmem.agent.recall import Recall
from docmem.schema import Chunk
from docmem.search import search
from docmem.store.base import DENSE, SPARSE, FusionSpec, Scored, SparseVec, VectorQuery
from docmem.store.corpus import open_corpus
from docmem.store.manifest import DENSE_COMPLETE
from docmem.tokens import TokenCounter
from ingest.pipeline import ingest
from tests.conftest import write_tree


def _store(tmp_path, backend: str, dim: int):
    if backend == "edge":
        from docmem.store.edge import EdgeStore

        return EdgeStore(tmp_path / "shard", dim)
    qdrant_client = pytest.importorskip("qdrant_client")
    from docmem.store.server import ServerStore

    return ServerStore(qdrant_client.QdrantClient(path=str(tmp_path / "local")), "c", dim)


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_docmem_rrf_orders_like_the_engine(tmp_path, backend):
    """docmem.ranking reimplements Qdrant's weighted RRF, so the two must agree point for point."""
    n = 40
    store = _store(tmp_path, backend, 2)
    chunks = [Chunk(doc_hash=f"{i:064x}", index=0, text=f"t{i}", path=f"p{i % 7}.md", title="t",
                    headings=(f"h{i % 3}",)) for i in range(n)]
    sparse = [SparseVec([1], [float((i * 7) % n + 1)]) for i in range(n)]  # no two BM25 scores tie
    dense = [[math.cos(i * 0.11), math.sin(i * 0.11)] for i in range(n)]
    store.upsert(chunks, sparse, dense)
    lists = [VectorQuery(SPARSE, SparseVec([1], [1.0]), 25), VectorQuery(DENSE, [math.cos(1), math.sin(1)], 25)]
    fusion = FusionSpec("rrf", 2, (1.0, 3.0))
    found = store.candidates(lists)
    assert [len(f) for f in found] == [25, 25]
    by_id = {ch.point_id: (ch.path, ch.headings) for ch in chunks}
    assert store.sections([c.point_id for c in found[1]]) == {c.point_id: by_id[c.point_id] for c in found[1]}
    engine = store.query(lists, fusion, 50)
    mine = ranking.rank(found, fusion)
    assert [round(s.score, 6) for s in mine] == [round(s.score, 6) for s in engine]

    def by_score(points):  # two sums of RRF terms can tie; tied points may differ in float bits
        groups: dict[float, set[str]] = {}
        for s in points:
            groups.setdefault(round(s.score, 6), set()).add(s.point_id)
        return groups

    assert by_score(mine) == by_score(engine)


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_a_point_id_names_its_section_and_older_ids_are_read_from_the_store(tmp_path, backend):
    """Ordering by section used to read 50 candidates' heading paths from the store per search
    (a third of the time at 1M chunks); the id now says it. Ids made before (uuid5) still rank."""
    import uuid

    from docmem.schema import section_of
    from docmem.search import _sections

    class OldChunk(Chunk):  # a point written by an earlier docmem: uuid5 of (document, index)
        @property
        def point_id(self) -> str:
            return str(uuid.uuid5(uuid.UUID(int=7), f"{self.doc_hash}:{self.index}"))

    doc_a, doc_b = "a" * 64, "b" * 64
    chunks = [Chunk(doc_hash=doc_a, index=0, text="t", path="a.md", title="t", headings=("Intro",)),
              Chunk(doc_hash=doc_a, index=1, text="t", path="a.md", title="t", headings=("Intro",)),
              Chunk(doc_hash=doc_a, index=2, text="t", path="a.md", title="t", headings=("Intro", "Details")),
              Chunk(doc_hash=doc_b, index=0, text="t", path="b.md", title="t", headings=("Intro",)),
              Chunk(doc_hash=doc_b, index=1, text="t", path="b.md", title="t"),
              Chunk(doc_hash=doc_b, index=2, text="t", path="b.md", title="t"),
              # a file is rewritten whole, so one file's points are all old or all new
              OldChunk(doc_hash="c" * 64, index=0, text="t", path="c.md", title="t", headings=("Intro",)),
              OldChunk(doc_hash="c" * 64, index=1, text="t", path="c.md", title="t", headings=("Intro",))]
    ids = [c.point_id for c in chunks]
    assert all(uuid.UUID(i).version == 8 for i in ids[:-2]) and uuid.UUID(ids[-1]).version == 5
    assert len(set(ids)) == len(ids) and section_of(ids[-1]) is None
    named = [section_of(i) for i in ids[:-2]]
    assert named[0] == named[1] and len(set(named)) == 5  # same file and headings; all else apart
    store = _store(tmp_path, backend, 2)
    store.upsert(chunks, [SparseVec([1], [1.0])] * len(chunks), [[1.0, 0.0]] * len(chunks))
    corpus = type("C", (), {"store": store})()
    derived, read = _sections(corpus, ids), store.sections(ids)
    assert derived[ids[-1]] == ("c.md", ("Intro",))  # the old id's section came from the store

    def same(sections: dict) -> set[tuple[int, int]]:
        keys = [ranking.section_key(i, sections[i]) for i in ids]
        return {(x, y) for x in range(len(ids)) for y in range(len(ids)) if keys[x] == keys[y]}

    assert same(derived) == same(read)
    assert set(store.retrieve(ids)) == set(ids)  # by the id stored, old or new


def test_a_corpus_ingested_with_older_point_ids_still_searches(settings, tmp_path, monkeypatch):
    """Corpora written before ids carried sections keep their uuid5 ids until a file changes;
    search read hits back by recomputing each chunk's id, and found none of them."""
    import uuid

    import docmem.schema

    root = write_tree(tmp_path / "docs", TOPICS)
    with monkeypatch.context() as old:
        old.setattr(docmem.schema, "point_id",
                    lambda doc, index, headings=(), opens=False: str(uuid.uuid5(uuid.UUID(int=7), f"{doc}:{index}")))
        with open_corpus(settings, create=True, embedder="bundled") as corpus:
            ingest(corpus, [root], workers=1)
    question = "How do I fix a bicycle wheel with a hole in it?"
    with open_corpus(settings) as corpus:
        page = search(corpus, question, page_size=5)
        assert [h.chunk.path for h in page.hits][:1] == ["bikes.md"] and len(page.hits) == 4
        (root / "tax.md").write_text(TOPICS["tax.md"] + "\nKeep them for six years.\n")
        ingest(corpus, [root], workers=1)  # one file rewritten: new ids beside old ones
        every = corpus.store.candidates([VectorQuery(DENSE, corpus.embedder.embed_query("tax"), 10)])[0]
        assert sorted(uuid.UUID(c.point_id).version for c in every) == [5, 5, 5, 8]
        page = search(corpus, "yearly tax return receipts", page_size=5)
        assert page.hits[0].chunk.path == "tax.md" and "six years" in page.hits[0].chunk.text
        assert len(search(corpus, question, page_size=5).hits) == 4


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_the_chunk_that_opens_a_section_says_so_in_its_id(settings, tmp_path, backend):
    """The ranking lifts a section's opening chunk (its heading and the text introducing it);
    like the section, that is read from the point id (as either store returns it), never from
    the store's payload."""
    import uuid

    from docmem.schema import point_id, section_of, section_opener

    doc = "d" * 64
    opener, other = point_id(doc, 3, ("Guide", "Owls"), True), point_id(doc, 4, ("Guide", "Owls"))
    assert section_opener(opener) and not section_opener(other) and section_of(opener) == section_of(other)
    assert point_id(doc, 3, ("Guide", "Owls")) != opener and uuid.UUID(opener).version == 8
    assert not section_opener(point_id(doc, 5, (), True))  # a chunk without headings is not a section's
    # no id made before the mark (v8 without it, uuid5) reads as an opener
    assert not any(section_opener(point_id(f"{i:064x}", i, ("H",))) for i in range(2000))
    assert not section_opener(str(uuid.uuid5(uuid.UUID(int=7), f"{doc}:3")))

    if backend == "server":
        pytest.importorskip("qdrant_client")
        settings = dataclasses.replace(settings, qdrant_url=str(tmp_path / "qdrant-local"))
    root = write_tree(tmp_path / "docs", {
        "guide.md": "# Guide\n\n" + "Owls hunt at night and sleep by day. " * 40 + "\n\n## Owls\n\n"
                    + "Barn owls nest in old buildings. " * 60 + "\n\n## Finches\n\nFinches eat seeds.\n",
        "plain.txt": "No headings here at all. " * 80,
    })
    with open_corpus(settings, create=True, embedder="bundled") as corpus:
        ingest(corpus, [root], workers=1)
        page = search(corpus, "birds", page_size=20)
        stored = {h.chunk.point_id: h.chunk for h in page.hits}
        assert len(stored) == corpus.store.count()
        for chunk in stored.values():
            assert section_opener(chunk.point_id) == chunk.opens_section
            starts_at_heading = bool(chunk.headings) and any(chunk.text.startswith(h) for h in chunk.headings)
            assert chunk.opens_section == starts_at_heading, chunk.text[:40]
        assert {c.headings[-1] for c in stored.values() if c.opens_section} >= {"Guide", "Owls"}
        assert not any(c.opens_section for c in stored.values() if c.path == "plain.txt")


def test_a_section_opening_chunk_wins_a_near_tie_only():
    dense = [Scored("mid", 0.50), Scored("open", 0.49), Scored("far", 0.40)]
    lifted = ranking.with_opening_bonus(dense, {"open", "far"}, 0.03)
    assert [(s.point_id, round(s.score, 2)) for s in lifted] == [("open", 0.52), ("mid", 0.5), ("far", 0.43)]
    assert ranking.with_opening_bonus(dense, set()) == dense


def test_each_section_shows_once_before_any_shows_twice():
    ranked = [Scored(p, s) for p, s in (("a1", 0.9), ("a2", 0.8), ("a3", 0.7), ("b1", 0.6), ("c1", 0.5), ("b2", 0.4))]
    sections = {s.point_id: ("a.md", (s.point_id[0],)) for s in ranked}
    assert [s.point_id for s in ranking.by_section(ranked, sections)] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    # Chunks without headings (plain text, PDFs without an outline) are not one section each file.
    plain = {s.point_id: ("book.txt", ()) for s in ranked}
    assert [s.point_id for s in ranking.by_section(ranked, plain)] == ["a1", "a2", "a3", "b1", "c1", "b2"]


def test_linear_fusion_is_dense_led_and_bm25_breaks_near_ties():
    def c(pid: str, score: float) -> Scored:
        return Scored(pid, score)

    dense = [c("x", 0.60), c("y", 0.58), c("z", 0.30)]
    sparse = [c("y", 12.0), c("w", 11.0)]  # w: found by BM25 only
    scores = ranking.linear([sparse, dense], (0.1, 1.0))
    order = sorted(scores, key=lambda p: -scores[p])
    assert order == ["y", "x", "w", "z"]  # y: 0.58 + 0.1; w: 0.30 (dense floor) + 0.092
    assert ranking.linear([[], dense], (0.1, 1.0)) == {"x": 0.6, "y": 0.58, "z": 0.3}


def test_a_section_is_judged_by_its_typical_passage_not_only_its_best():
    """b1 has the best cosine, but the other passage of its section barely matches: a1, alone
    in its section, ranks first. Past the window, points keep their cosine and their order."""
    dense = [Scored("b1", 0.62), Scored("a1", 0.60), Scored("b2", 0.30), Scored("c1", 0.25), Scored("d1", 0.20)]
    sections = {"a1": ("f.md", ("A",)), "b1": ("f.md", ("B",)), "b2": ("f.md", ("B",)), "c1": ("f.md", ("B",))}
    blended = ranking.with_section_evidence(dense, sections, share=0.5, window=3)
    assert [c.point_id for c in blended] == ["a1", "b1", "b2", "c1", "d1"]
    assert [round(c.score, 4) for c in blended] == [0.6, round((0.62 + 0.5 * 0.46) / 1.5, 4),
                                                    round((0.30 + 0.5 * 0.46) / 1.5, 4), 0.25, 0.2]
    assert [c.point_id for c in ranking.with_section_evidence(dense, sections, share=0.0)] == \
        ["b1", "a1", "b2", "c1", "d1"]


TOPICS = {
    "bread.md": "# Baking\n\n## Sourdough\n\nFeed the starter with flour and water, let the dough rise overnight, "
                "then bake the loaf in a hot oven until the crust is dark.\n",
    "bikes.md": "# Cycling\n\n## Punctures\n\nTo repair a flat tyre, remove the wheel, find the hole in the inner "
                "tube, glue a patch over it and pump the tyre up again.\n",
    "stars.md": "# Astronomy\n\n## Telescopes\n\nA reflecting telescope gathers starlight with a curved mirror; "
                "the eyepiece magnifies the image it forms.\n",
    "tax.md": "# Paperwork\n\n## Returns\n\nFile the yearly return before the deadline and keep receipts for "
              "every deductible expense.\n",
}


def test_of_n_counts_relevant_passages_only(settings, tmp_path):
    """Dense vectors score every chunk, so without a floor every hybrid search said "of N+"."""
    root = write_tree(tmp_path / "docs", TOPICS)
    with open_corpus(settings, create=True, embedder="bundled") as corpus:
        ingest(corpus, [root], workers=1)
        assert corpus.store.count() == 4 and corpus.store.count(missing_dense=True) == 0
        question = "How do I fix a bicycle wheel with a hole in it?"
        page = search(corpus, question, page_size=5)
        assert page.hits[0].chunk.path == "bikes.md"
        # Page 1 still shows every candidate (an answer can sit under the floor); N counts the relevant.
        assert len(page.hits) == 4 and 1 <= page.total < 4 and not page.capped
        assert page.header() == f"Showing results 1-4 of {page.total} (page 1 of 1)"
        # Past the relevant ones there is no further page.
        assert search(corpus, question, page_size=page.total, page=2).header() == \
            f"Page 2 is past the last page: {page.total} result{'s' if page.total > 1 else ''} (1 page)"
        # The same corpus ranked by the engine's DBSF lists every chunk.
        assert search(corpus, "How do I fix a bicycle wheel with a hole in it?", ranking="dbsf").total == 4
        nothing = search(corpus, "quantum chromodynamics of gluon plasma", page_size=5)
        assert nothing.total < 4
        # ... and the agent is told when nothing is close in meaning (a hint; it still reads)
        assert nothing.closest is not None and nothing.closest < WEAK_MATCH < page.closest
        state = State(corpus, MainContext(system="", working_budget=256), Recall(":memory:", "s"), TokenCounter(None))
        weak = archival_search(state, "How do I repair a leaking garden hose?")  # the tyre patch, at ~0.28
        assert weak.startswith("Showing results 1-") and "No passage is close in meaning" in weak.splitlines()[-1]
        assert "close in meaning" not in archival_search(state, "How do I fix a bicycle wheel with a hole in it?")
        assert search(corpus, "bicycle", ranking="bm25").closest is None  # no dense list, no verdict


def test_a_key_lookup_that_finds_its_key_is_not_called_weak(settings, tmp_path):
    """A UUID's dense cosine to anything is low, so the exact match of a key lookup was told
    "No passage is close in meaning", and a constrained model was steered to abstain."""
    key = "2a56dfdd-773f-4260-8e35-f4e407379579"
    log = ("Repair log for the workshop. The rear wheel was trued and the brake pads were replaced; the "
           f"chain was cleaned and oiled, and the tyres were pumped to four bar. Ticket {key} is closed.\n")
    root = write_tree(tmp_path / "docs", {"pair.txt": log, "tax.md": TOPICS["tax.md"]})
    with open_corpus(settings, create=True, embedder="bundled") as corpus:
        ingest(corpus, [root], workers=1)
        state = State(corpus, MainContext(system="", working_budget=256), Recall(":memory:", "s"), TokenCounter(None))
        found = archival_search(state, key)
        assert search(corpus, key).closest < WEAK_MATCH  # the cosine alone would call it weak
        assert "pair.txt" in found and "close in meaning" not in found and not state.searches[-1]["weak"]
        assert state.searches[-1]["hits"][0].startswith(found.split("chunk ")[1][:12])
        other = archival_search(state, "1746f89a-b7b4-4e98-8e77-58c261a9aac7")  # a key that is not there
        assert state.searches[-1]["weak"] and "close in meaning" in other


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_chunks_waiting_for_dense_vectors_are_found_by_their_words(settings, tmp_path, backend):
    """BM25 makes a chunk searchable the moment it is written (an ingest with --no-dense, or
    one still filling dense vectors while a chat searches); the relevance floor counted only
    dense hits, so the default ranking said "No results" for a word the corpus holds."""
    if backend == "server":
        pytest.importorskip("qdrant_client")
        settings = dataclasses.replace(settings, qdrant_url=str(tmp_path / "qdrant-local"))
    root = write_tree(tmp_path / "docs", {"fruit.md": "# Fruit\n\nThe secret word is pineapple.\n"})
    with open_corpus(settings, create=True, embedder="bundled") as corpus:
        ingest(corpus, [root], workers=1, dense=False)
        assert corpus.store.count(missing_dense=True) == 1
        page = search(corpus, "pineapple")
        assert [h.chunk.path for h in page.hits] == ["fruit.md"] and page.total == 1
        assert corpus.manifest.get_meta(DENSE_COMPLETE) == "0"
        # Once every vector is in, search stops asking which hits lack one; the count holds.
        ingest(corpus, [root], workers=1)
        assert corpus.manifest.get_meta(DENSE_COMPLETE) == "1"
        assert search(corpus, "pineapple").total == 1
