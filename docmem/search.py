"""Archival search: the one function both ``docmem search`` and the agent's
``archival_search`` call. It returns structured pages; formatting is elsewhere.

The default ranking, ``sections``, fetches the BM25 and dense lists in one batched engine call
and ranks them in docmem.ranking: dense-led, a section's opening passage lifted a little, a
section judged by its typical passage, each section once before any twice (bench/README.md,
sections 3b-3d). Queries that look like
identifiers are led by BM25 instead (``IDENTIFIER_FUSION``): a dense near-miss can outrank
the exact UUID. The engine's own fusions (``dbsf``, ``rrf``) stay selectable.
"Of N" is honest: under ``sections`` N counts the candidates that pass a relevance floor
(page 1 is still filled from the ranked list); under the engine's fusions it is the number
ranked. "N+" means the cap was reached. Pages are slices of one ranked list, so page 2 never
repeats page 1.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from dataclasses import dataclass
from typing import Sequence

from docmem.embedders import bm25_query
from docmem.errors import DocmemError
from docmem.schema import Hit, SearchPage, section_of, section_opener
from docmem import ranking
from docmem.store.base import DENSE, SPARSE, FusionSpec, Scored, Section, VectorQuery
from docmem.store.corpus import Corpus
from docmem.store.manifest import DENSE_COMPLETE

log = logging.getLogger(__name__)

# UUIDs, hex ids, and tokens mixing letters and digits (error codes, part numbers, versions).
# The lookaheads are bounded: unbounded, each word boundary of a run like "a-a-a-..." scanned the
# rest of it, and a 32,000-character query took 9 s to classify (quadratic); now it is linear.
_IDENTIFIER = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    r"|\b[0-9a-f]{10,}\b"
    r"|\b(?=[A-Za-z_-]{0,64}\d)(?=\d{0,64}[A-Za-z])[A-Za-z0-9_.-]{4,}\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Ranking:
    """How the lists are combined; parsed from a setting like ``rrf:60:1,3`` or ``sections``.

    ``bm25``, ``dense``, ``dbsf`` and ``rrf`` fuse inside the engine. ``sections[:FUSION]``
    fuses here (docmem.ranking), orders by section and counts only relevant candidates;
    ``fused:FUSION`` is the same fusion without the section order (for measuring).
    """

    mode: str  # "hybrid" | "bm25" | "dense"
    fusion: FusionSpec
    in_docmem: bool = False  # fused by docmem.ranking rather than by the engine
    grouped: bool = False  # ordered by section

    @classmethod
    def parse(cls, text: str) -> "Ranking":
        parts = text.strip().lower().split(":")
        method = parts[0]
        if method in ("sections", "fused"):
            fusion = _fusion(":".join(parts[1:]), text) if len(parts) > 1 else SECTIONS_FUSION
            return cls("hybrid", fusion, in_docmem=True, grouped=method == "sections")
        if method in ("bm25", "dense"):
            return cls(method, FusionSpec())
        return cls("hybrid", _fusion(text.strip().lower(), text))


def _fusion(spec: str, text: str) -> FusionSpec:
    parts = spec.split(":")
    method = parts[0]
    try:
        if method in ("dbsf", "linear"):
            weights = tuple(float(w) for w in parts[1].split(",")) if len(parts) > 1 else None
            fusion = FusionSpec(method, weights=weights)
        elif method == "rrf":
            k = int(parts[1]) if len(parts) > 1 and parts[1] else 60
            weights = tuple(float(w) for w in parts[2].split(",")) if len(parts) > 2 else None
            fusion = FusionSpec("rrf", k, weights)
        else:
            raise DocmemError(f"unknown fusion {text!r}: use sections, rrf[:K[:W_BM25,W_DENSE]], dbsf, "
                              "bm25 or dense")
    except ValueError:
        raise DocmemError(f"bad fusion {text!r}: expected rrf[:K[:W_BM25,W_DENSE]] or dbsf[:W_BM25,W_DENSE]") from None
    if fusion.weights is not None and len(fusion.weights) != 2:
        raise DocmemError(f"bad fusion {text!r}: give two weights, BM25 then dense")
    return fusion


# Qdrant's weighted RRF divides the rank by the weight: ``1 / ((p+1)/w + k - 1)``. With k=1
# and BM25 at weight 3, BM25's top hit scores 3 and dense's best 1: the exact match leads
# and dense still orders the rest. (With k=60, weights barely matter: 1/59.3 vs 1/60.)
IDENTIFIER_FUSION = FusionSpec("rrf", 1, (3.0, 1.0))
# The ``sections`` default: dense-led weighted RRF (bench/README.md, section 3b).
SECTIONS_FUSION = FusionSpec("linear", weights=(0.1, 1.0))


def looks_like_identifier(query: str) -> bool:
    """Exact identifiers (UUIDs, codes) are BM25's job: dense vectors blur them."""
    return bool(_IDENTIFIER.search(query))


def identifiers(text: str) -> list[str]:
    """The identifiers in ``text``, once each, in order."""
    return list(dict.fromkeys(m.group(0) for m in _IDENTIFIER.finditer(text)))


def shares_identifier(text: str, others: Sequence[str]) -> bool:
    """Whether an identifier of ``text`` occurs in one of ``others`` (case-insensitive): a key
    lookup that found its key is close, though the dense cosine of a UUID says nothing."""
    wanted = {i.casefold() for i in identifiers(text)}
    return bool(wanted) and any(wanted & {i.casefold() for i in identifiers(o)} for o in others)


def matching_paths(corpus: Corpus, glob: str) -> list[str]:
    """As git does: a pattern with no ``/`` also matches the file name in any folder."""
    bare = "/" not in glob
    return [p for p in corpus.manifest.paths()
            if fnmatch.fnmatchcase(p, glob) or (bare and fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], glob))]


def search(corpus: Corpus, query: str, *, page: int = 1, page_size: int | None = None,
           path: str | None = None, ranking: str | None = None,
           candidates: int | None = None, notes_scope: str | None = None) -> SearchPage:
    settings = corpus.settings
    page_size = page_size or settings.page_size
    cap = candidates or settings.candidates
    if page < 1 or page_size < 1:
        raise DocmemError("--page and --page-size start at 1")
    if not query.strip():
        raise DocmemError("empty query")
    plan = Ranking.parse(ranking or settings.fusion)
    if ranking and plan.mode == "dense" and not corpus.has_dense:  # asked for by name: BM25 is another answer
        raise DocmemError(f"corpus '{corpus.name}' has no dense vectors (embedder {corpus.embedder_spec}): "
                          f"--fusion {ranking} cannot run; use --fusion bm25")
    filters = {"path": path} if path else {}
    paths = matching_paths(corpus, path) if path else None
    if paths == []:
        mode = plan.mode if corpus.has_dense else "bm25"
        return SearchPage(query, page, page_size, [], 0, False, mode, filters, _notes(corpus, mode, path, 0))

    started = time.perf_counter()
    lists = _lists(corpus, query, plan, cap)
    mode = "hybrid" if len(lists) == 2 else lists[0].using.replace(SPARSE, "bm25")
    fusion = plan.fusion
    exact = len(lists) == 2 and looks_like_identifier(query)
    if exact:
        fusion, mode = IDENTIFIER_FUSION, "hybrid, BM25-led (identifier)"
    closest = None
    if plan.in_docmem:
        scored, total, capped, closest = _ranked_here(corpus, lists, fusion, plan.grouped, exact, cap, paths,
                                                      notes_scope)
        # Page 1 is filled from the ranked list even past the relevant ones ("results 1-5 of 2"):
        # a paraphrase's answer can sit just under the floor; later pages list relevant ones only.
        scored = scored[:max(total, page_size)] if total else []
    else:
        scored = corpus.store.query(lists, fusion if len(lists) == 2 else None, cap, paths, notes_scope)
        total, capped = len(scored), len(scored) >= cap
    window = scored[(page - 1) * page_size: page * page_size]
    chunks = corpus.store.retrieve([s.point_id for s in window])
    # The store filtered notes by scope; checked again here, whatever the backend.
    hits = [Hit((page - 1) * page_size + i + 1, s.score, chunks[s.point_id]) for i, s in enumerate(window)
            if s.point_id in chunks and chunks[s.point_id].visible_to(notes_scope)]
    log.debug("search %r: %s, %d of %d candidates, page %d, %.1f ms", query, mode, total, cap, page,
              (time.perf_counter() - started) * 1000)
    return SearchPage(query, page, page_size, hits, total, capped, mode, filters, _notes(corpus, mode, path, total),
                      closest)


def _ranked_here(corpus: Corpus, lists: list[VectorQuery], fusion: FusionSpec, grouped: bool, exact: bool,
                 cap: int, paths: list[str] | None, notes_scope: str | None) -> tuple[list[Scored], int, bool, float | None]:
    """Fused by docmem.ranking: the ranked candidates, how many of them pass the relevance
    floor (the "of N"), whether a list was still relevant at its cap ("N+"), and the best
    dense cosine (None when no dense list was searched). The floor
    counts and does not cut the ranking: on the unseen paraphrase set 4 of 33 answers had a
    cosine under it yet ranked in the top 10 (bench/README.md, section 3b)."""
    found = corpus.store.candidates(lists, paths, notes_scope)
    if len(found) == 1:  # BM25 only: every match contains query words
        found = [found[0], []] if lists[0].using == SPARSE else [[], found[0]]
    keep = ranking.relevant_ids(found[0], found[1], exact) if len(lists) == 2 else None
    if keep is not None and corpus.manifest.get_meta(DENSE_COMPLETE) != "1":
        # a chunk still waiting for its dense vector is judged by its words
        dense_ids = {c.point_id for c in found[1]}
        keep.update(corpus.store.lacking_dense([c.point_id for c in found[0] if c.point_id not in dense_ids]))
    closest = max((c.score for c in found[1]), default=None) if len(lists) == 2 else None
    sections: dict[str, Section] = {}
    if grouped and fusion.method == "linear" and found[1]:  # dense-led: a section's other passages count
        dense = ranking.with_opening_bonus(found[1], {c.point_id for c in found[1] if section_opener(c.point_id)})
        sections = _sections(corpus, [c.point_id for c in dense[:ranking.GROUP_WINDOW]])
        found = [found[0], ranking.with_section_evidence(dense, sections)]
    scored = ranking.rank(found, fusion)
    if grouped:
        head = scored[:ranking.GROUP_WINDOW]
        missing = [s.point_id for s in head if s.point_id not in sections]
        sections.update(_sections(corpus, missing))
        scored = ranking.by_section(head, sections) + scored[len(head):]
    relevant = len(scored) if keep is None else sum(1 for s in scored if s.point_id in keep)
    more = any(len(points) >= cap and (keep is None or points[-1].point_id in keep) for points in found)
    return scored[:cap], min(relevant, cap), more or relevant > cap, closest


def _sections(corpus: Corpus, point_ids: list[str]) -> dict[str, Section]:
    """Each point's section, from its id when the id carries it (docmem.schema.point_id), else
    read from the store. Only equality of sections matters to the ranking, so an id's section
    stands in for the (path, heading path) pair."""
    out: dict[str, Section] = {}
    unknown = []
    for pid in point_ids:
        named = section_of(pid)
        if named is None:
            unknown.append(pid)
        else:
            out[pid] = (named, ("",))
    if unknown:
        out.update(corpus.store.sections(unknown))
    return out


def _notes(corpus: Corpus, mode: str, path: str | None, total: int) -> list[str]:
    """What the header alone would hide: chunks a hybrid search cannot find by meaning yet
    (counted by the last ingest), and a --path filter that left nothing."""
    notes = []
    pending = int(corpus.manifest.get_meta("dense_pending") or 0) if mode.startswith("hybrid") else 0
    if pending:
        notes.append(f"{pending} chunks have no dense vector yet, so only BM25 can find them: "
                     "re-run `docmem ingest` to fill them")
    if path and not total:
        matched, files = len(matching_paths(corpus, path)), len(corpus.manifest.paths())
        notes.append(f"no file of the {files} in '{corpus.name}' matches --path {path!r}" if not matched else
                     f"nothing found in the {matched} file{'s' if matched > 1 else ''} matching --path {path!r}")
    return notes


def _lists(corpus: Corpus, query: str, plan: Ranking, cap: int) -> list[VectorQuery]:
    sparse = VectorQuery(SPARSE, bm25_query(query), cap)
    if plan.mode == "bm25" or not corpus.has_dense:
        return [sparse]  # a query of only stopwords simply finds nothing here
    embedder = corpus.embedder
    assert embedder is not None
    dense = VectorQuery(DENSE, embedder.embed_query(query), cap)
    if plan.mode == "dense":
        return [dense]
    return [sparse, dense]
