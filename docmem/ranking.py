"""Fusion of the BM25 and dense lists, ordering by section, and the relevance floor.

Qdrant fuses inside the engine, but then only the fused score comes back. Ranking by
section and counting what is relevant need each list's own scores and each point's
section, so the ``sections`` rankings fetch both lists in one batched call and fuse here,
with the formulas Qdrant documents for its own fusions (weighted RRF, DBSF). Everything
here is a pure function of the candidate lists, so both backends rank alike.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Sequence

from docmem.store.base import FusionSpec, Scored, Section

# "Of N" counts a candidate whose dense cosine reaches DENSE_FLOOR, and for an identifier
# query also one whose BM25 score is at least BM25_SHARE_FLOOR of the best (the exact match
# and near-equals). Set on the paraphrase set and NQ (bench/README.md, section 3b): at 0.2
# every gold hit of the top 10 passes, and off-topic questions count a median of 2-12.
DENSE_FLOOR = 0.2
BM25_SHARE_FLOOR = 0.7
# Only the head of a list is ordered by section (10 pages of 5): fetching a point's section
# costs ~5 us, and on 2 lists of 100 that was most of the ranking's time.
GROUP_WINDOW = 50
# A dense candidate's cosine is blended with the mean cosine of its section's candidates among
# the first GROUP_WINDOW: (cos + SECTION_SHARE x mean) / (1 + SECTION_SHARE). A passage alone
# in its section keeps its cosine; the best passage of a section whose other passages match
# only weakly is pulled down, so a long section that touches the question in one passage ranks
# below a section that is about it. Set on the paraphrase set (bench/README.md, section 3b):
# +0.04 hit@1 and +0.02 MRR there, the same or better at hit@5/10 there, on the unseen set and
# on NQ; 0.25 and 1.0 were within 0.01 of 0.5.
SECTION_SHARE = 0.5
# A chunk that starts at its section's heading (the heading and the text that introduces it:
# the section's own statement of what it is about) gets OPENING_BONUS on its cosine before the
# section evidence. Set on the paraphrase sets (bench/README.md, section 3d): in three builds, +3
# of 132 questions at hit@5 on the main set and +1 of 42 on the Python set (+4-5 at hit@1), -2 to
# +1 of 33 on Flask, -1 of 500 on NQ (its passages have no headings); 0.02 and 0.04 were within a
# question or two of it.
OPENING_BONUS = 0.03


def rrf(lists: Sequence[Sequence[Scored]], k: int, weights: Sequence[float] | None) -> dict[str, float]:
    """Qdrant's weighted RRF: a point at 0-based position p of a list of weight w scores
    ``1 / ((p + 1) / w + k - 1)``; scores of one point add up over the lists."""
    out: dict[str, float] = {}
    for i, points in enumerate(lists):
        w = weights[i] if weights else 1.0
        for p, c in enumerate(points if w > 0 else ()):
            out[c.point_id] = out.get(c.point_id, 0.0) + 1.0 / ((p + 1) / w + k - 1)
    return out


def dbsf(lists: Sequence[Sequence[Scored]], weights: Sequence[float] | None) -> dict[str, float]:
    """Qdrant's DBSF: each list's scores mapped to [0, 1] between mean -/+ 3 standard
    deviations (clipped), then summed, here with a weight per list."""
    out: dict[str, float] = {}
    for i, points in enumerate(lists):
        if not points:
            continue
        w = weights[i] if weights else 1.0
        scores = [c.score for c in points]
        mean = statistics.fmean(scores)
        spread = 6 * statistics.pstdev(scores) if len(scores) > 1 else 0.0
        low = mean - spread / 2
        for c in points:
            norm = 1.0 if spread == 0 else min(1.0, max(0.0, (c.score - low) / spread))
            out[c.point_id] = out.get(c.point_id, 0.0) + w * norm
    return out


def linear(lists: Sequence[Sequence[Scored]], weights: Sequence[float] | None) -> dict[str, float]:
    """Dense-led: ``w_dense * cosine + w_bm25 * bm25 / best_bm25``. A point only BM25 found
    gets the dense list's lowest cosine (its own is at most that); one only dense found
    gets no BM25 share."""
    sparse, dense = lists
    w_bm25, w_dense = weights or (0.1, 1.0)
    floor = dense[-1].score if dense else 0.0
    out = {c.point_id: w_dense * c.score for c in dense}
    best = sparse[0].score if sparse and sparse[0].score > 0 else 1.0
    for c in sparse:
        out[c.point_id] = out.get(c.point_id, w_dense * floor) + w_bm25 * c.score / best
    return out


def fuse(lists: Sequence[Sequence[Scored]], fusion: FusionSpec) -> dict[str, float]:
    if fusion.method == "dbsf":
        return dbsf(lists, fusion.weights)
    if fusion.method == "linear":
        return linear(lists, fusion.weights)
    return rrf(lists, fusion.k, fusion.weights)


def section_key(point_id: str, section: Section | None) -> Section:
    """A point's section: its file and heading path. A chunk with no heading is its own
    section: a plain-text book or a PDF without an outline is not one topic."""
    path, headings = section or ("", ())
    return path, headings if headings else ("\0" + point_id,)


def by_section(ranked: Sequence[Scored], sections: dict[str, Section]) -> list[Scored]:
    """Best first, but each section's second point only after every section's first, and so
    on: the first page shows as many different sections as it can, while every candidate
    stays in the one list (pages never repeat or skip a point)."""
    seen: Counter[Section] = Counter()
    keyed = []
    for position, s in enumerate(ranked):
        key = section_key(s.point_id, sections.get(s.point_id))
        keyed.append((seen[key], position, s))
        seen[key] += 1
    return [s for _, _, s in sorted(keyed, key=lambda t: (t[0], t[1]))]


def with_section_evidence(dense: Sequence[Scored], sections: dict[str, Section],
                          share: float | None = None, window: int = GROUP_WINDOW) -> list[Scored]:
    """The dense list, best first, each of its first ``window`` points scored
    ``(cos + share x mean) / (1 + share)`` with ``mean`` the mean cosine of the points of its
    section among them (itself included; see SECTION_SHARE). Past the window a point keeps its
    cosine, never above a blended one (every mean in the window is at least the window's last
    cosine), so the list stays on the cosine scale."""
    share = SECTION_SHARE if share is None else share
    head = dense[:window]
    keyed = [section_key(c.point_id, sections.get(c.point_id)) for c in head]
    members: defaultdict[Section, list[float]] = defaultdict(list)
    for key, c in zip(keyed, head):
        members[key].append(c.score)
    means = {key: sum(scores) / len(scores) for key, scores in members.items()}
    blended = [Scored(c.point_id, (c.score + share * means[key]) / (1 + share)) for key, c in zip(keyed, head)]
    return sorted(blended, key=lambda c: (-c.score, c.point_id)) + list(dense[window:])


def with_opening_bonus(dense: Sequence[Scored], openers: set[str], bonus: float | None = None) -> list[Scored]:
    """The dense list, best first, with ``bonus`` (OPENING_BONUS) added to the score of each
    point in ``openers`` (the chunks that open their section)."""
    bonus = OPENING_BONUS if bonus is None else bonus
    if not openers or not bonus:
        return list(dense)
    lifted = [Scored(c.point_id, c.score + bonus) if c.point_id in openers else c for c in dense]
    return sorted(lifted, key=lambda c: (-c.score, c.point_id))


def relevant_ids(sparse: Sequence[Scored], dense: Sequence[Scored], exact: bool) -> set[str]:
    """Points that pass the relevance floor: close in meaning or, when ``exact`` (an
    identifier query), a match nearly as strong as the best. A plain word match does not
    count: a question shares common words with most of a corpus."""
    out = {c.point_id for c in dense if c.score >= DENSE_FLOOR}
    if sparse and exact:
        best = sparse[0].score
        out |= {c.point_id for c in sparse if c.score >= BM25_SHARE_FLOOR * best}
    return out


def rank(lists: Sequence[Sequence[Scored]], fusion: FusionSpec) -> list[Scored]:
    """Fuse [BM25, dense] (either may be empty): best first, ties by point id."""
    scores = fuse(lists, fusion)
    return [Scored(p, s) for p, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]
