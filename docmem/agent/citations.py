"""Checking that a quote really is in the chunk it cites.

Whitespace and case are normalized (PDF extraction breaks lines anywhere; models re-case
headings). Beyond that, a small fuzzy tolerance absorbs what models commonly alter when
copying: curly vs straight quotes, a dropped hyphen at a line break, one changed word.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher

MIN_QUOTE_CHARS = 8
FUZZY_THRESHOLD = 0.9
SHOWN_QUOTE_WORDS = 30  # a longer verified quote (small models copy the whole chunk) is shown cut

_TRANSLATE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                            "\u2013": "-", "\u2014": "-", "\u00ad": None, "\u00a0": " "})


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE).lower()
    text = re.sub(r"-\s*\n\s*", "", text)  # words hyphenated across a line break
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .…\"'")


@dataclass(frozen=True)
class Verification:
    ok: bool
    score: float  # 1.0 exact (after normalization), else best fuzzy ratio
    reason: str | None = None


def verify_quote(quote: str, chunk_text: str) -> Verification:
    q, text = normalize(quote), normalize(chunk_text)
    if len(q) < MIN_QUOTE_CHARS:
        return Verification(False, 0.0, f"quote too short (at least {MIN_QUOTE_CHARS} characters)")
    if q in text:
        return Verification(True, 1.0)
    best = _best_window(q, text)
    if best >= FUZZY_THRESHOLD:
        return Verification(True, best)
    return Verification(False, best, f"quote not found in the chunk (best match {best:.0%})")


def shown_quote(quote: str, words: int = SHOWN_QUOTE_WORDS) -> str:
    """A verified quote as answers show it: a verbatim copy of a whole chunk is accepted (it is
    in the chunk) but cut to its first ``words`` words, which are in the chunk too."""
    parts = quote.split()
    return quote if len(parts) <= words else " ".join(parts[:words]) + " …"


def _best_window(q: str, text: str) -> float:
    """Best similarity of the quote to any same-length window starting at a word."""
    if len(text) < len(q) // 2:
        return 0.0
    matcher = SequenceMatcher(autojunk=False)
    matcher.set_seq2(q)
    best = 0.0
    starts = [0] + [m.end() for m in re.finditer(r" ", text)]
    width = len(q)
    for start in starts:
        for window in (text[start:start + width], text[start:start + width + 1], text[start:start + width - 1]):
            matcher.set_seq1(window)
            if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
                continue
            best = max(best, matcher.ratio())
        if best >= 0.999:
            break
    return best
