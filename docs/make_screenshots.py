"""Regenerate the screenshots of ``docmem chat`` in docs/ (SVG, as Textual exports them).

    .venv/bin/python docs/make_screenshots.py

Real documents from sample_corpora/ (ingested BM25-only into a throwaway data home), and a
scripted LLM that reads what it was sent, as the tests do: no network, no API key.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SAMPLE = ROOT / "sample_corpora"
QUESTION = "How do I fit a linear model in R, and how do I see its coefficients?"
_HIT = re.compile(r"\[\d+\] chunk (\S+) \| ([^\n]*)\n([^\n]+)")


def _quote(passage: str, word: str) -> str:
    """A verbatim stretch of a hit's text around ``word`` (what a model would copy)."""
    passage = passage.replace(" …[cut]", "")
    at = max(0, passage.find(word))
    start = passage.rfind(". ", 0, at)
    start = 0 if start == -1 else start + 2
    words = passage[start:].split()
    return " ".join(words[:14])


def demo_policy(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
    from docmem.llm.scripted import call, calls, text

    if not tools:
        return text("Summary: the user asks about linear models in R; lm() fits them, summary() and "
                    "coef() show the coefficients (R-intro.pdf, chapter 11).")
    results = [m["content"] for m in messages if m["role"] == "tool"]
    hits = [h for r in results for h in _HIT.findall(r)]
    if len(results) == 0:
        return call("archival_search", query="fit linear model lm formula", request_heartbeat=True)
    if len(results) == 1:
        return call("archival_search", query="fit linear model lm formula", page=2, request_heartbeat=True)
    if len(results) == 2:
        first = next(h for h in hits if "R-intro.pdf" in h[1])
        return call("open_document", chunk_id=first[0], request_heartbeat=True)
    if len(results) == 3:
        return call("working_context_append", text="User: R linear models. lm(formula, data) fits; "
                    "summary(fit), coef(fit) inspect. Sources: R-intro.pdf ch.11.", request_heartbeat=True)
    fits = [h for h in hits if "R-intro.pdf" in h[1] and "lm(" in h[2]]
    coefs = [h for h in hits if "R-intro.pdf" in h[1] and "coef" in h[2] and h not in fits[:1]]
    cited = [fits[0]] + (coefs[:1] if coefs else fits[1:2])
    citations = [{"chunk_id": c[0], "quote": _quote(c[2], "lm(" if n == 0 else "coef")}
                 for n, c in enumerate(cited)]
    return calls([("answer", {
        "text": ("Fit it with **`lm()`**, giving a model formula and a data frame, e.g. "
                 "`fm <- lm(y ~ x1 + x2, data = production)` [1]. The fitted object is a list "
                 "of class `lm`; extract the coefficients with **`coef(fm)`**, or print a full "
                 "summary with `summary(fm)` [2]."),
        "citations": citations})])


def flush_policy(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
    from docmem.llm.scripted import call, text

    if not tools:
        return text("Summary: the user wants every mention of the White Rabbit in alice29.txt; pages 1-4 "
                    "of the search were read: the Rabbit checks a watch, runs down a hole, and is the "
                    "King's herald at the trial.")
    results = [m for m in messages if m["role"] == "tool"]
    if any("[memory]" in (m.get("content") or "") for m in messages if m["role"] == "user") and len(results) >= 2:
        return text("I have read five pages of results; the summary above keeps what they said. "
                    "Shall I go on?")
    pages = re.findall(r"\(page (\d+) of", results[-1]["content"]) if results else []
    page = int(pages[0]) + 1 if pages else 1
    return call("archival_search", query="White Rabbit watch", page=page, request_heartbeat=True)


async def shoot(app: Any, size: tuple[int, int], steps: list[tuple[str, Any]]) -> None:
    async with app.run_test(size=size) as pilot:
        for kind, value in steps:
            await app.workers.wait_for_complete()
            await pilot.pause()
            while app.busy or app.pending:
                await app.workers.wait_for_complete()
                await pilot.pause()
            if kind == "send":
                app.query_one("#prompt").value = value
                await pilot.press("enter")
            elif kind == "press":
                await pilot.press(*value)
            elif kind == "shot":
                await pilot.pause()
                app.save_screenshot(filename=value, path=str(DOCS))
                print("wrote", DOCS / value)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="docmem-shots-"))
    os.environ["DOCMEM_HOME"] = str(home)
    sys.path.insert(0, str(ROOT))
    from docmem.config import load_settings
    from docmem.llm.scripted import ScriptedProcessor
    from docmem.store.corpus import open_corpus
    from docmem.tui import make_app
    from ingest.pipeline import ingest

    settings = load_settings(model="gpt-4o-mini")
    with open_corpus(settings, "sample", create=True, embedder="none") as corpus:
        ingest(corpus, [SAMPLE / "pdf" / "R-intro.pdf", SAMPLE / "text", SAMPLE / "markdown"], workers=2)

    def app(llm: Any, session: str, **kw: Any) -> Any:
        return make_app(settings, processor=llm, session=session, corpus="sample", pick_session=False, **kw)

    a = app(ScriptedProcessor(policy=demo_policy), "r-models", theme="textual-dark")
    asyncio.run(shoot(a, (120, 40), [("send", QUESTION), ("shot", "chat-120x40.svg"),
                                     ("press", ["ctrl+o"]), ("shot", "source-120x40.svg")]))
    a.close_workspace()
    b = app(ScriptedProcessor(policy=demo_policy), "r-models-narrow", theme="textual-dark")
    asyncio.run(shoot(b, (80, 24), [("send", QUESTION), ("shot", "chat-80x24.svg")]))
    b.close_workspace()
    small = load_settings(model="gpt-4o-mini", context_window=3500)
    c = make_app(small, processor=ScriptedProcessor(policy=flush_policy), session="rabbit", corpus="sample",
                 pick_session=False, theme="textual-dark")
    asyncio.run(shoot(c, (120, 40), [("send", "Find every mention of the White Rabbit in Alice."),
                                     ("send", "/memory"), ("shot", "memory-flush-120x40.svg")]))
    c.close_workspace()


if __name__ == "__main__":
    main()
