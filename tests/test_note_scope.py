"""Agent notes stay in their session on every path that reads them (issue 9.2), and are
bounded in size (issue 9.5). Two sessions over one real Qdrant Edge store."""

from __future__ import annotations

import json
import re

from docmem.agent.functions import CitationResult
from docmem.agent.loop import Agent, CallStep
from docmem.agent.recall import Recall
from docmem.llm.scripted import ScriptedProcessor, call, text
from docmem.store.corpus import open_corpus
from docmem.tui.passages import SourceReader
from tests.agent_helpers import build_corpus

SECRET = "Alice's private note: the vault code of site Bravo is 7319."


def _own_note(messages: list[dict]) -> str:
    """The id of the note this session stored (its only "Stored as chunk" result)."""
    return re.search(r"Stored as chunk (\S+)\.", json.dumps(messages)).group(1)  # type: ignore[union-attr]


def _calls(agent: Agent, question: str) -> list[CallStep]:
    return [s for s in agent.run(question, chat=True) if isinstance(s, CallStep)]


def test_session_b_cannot_search_open_page_or_cite_session_a_notes(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nThe alpha valve opens at 3 bar."})
    corpus = open_corpus(settings)
    alice = Agent(ScriptedProcessor(call("archival_insert", content=SECRET), text("ok")), corpus,
                  Recall(":memory:", "alice"), window=8192, tools="full")
    stored = _calls(alice, "Remember the code.")[0].result
    note_id = re.search(r"Stored as chunk (\S+)\.", stored).group(1)  # type: ignore[union-attr]

    bob_note = "Bob's note: the beta pump is rated 40 kW."
    bob = Agent(ScriptedProcessor(
        call("archival_insert", content=bob_note, request_heartbeat=True),
        call("archival_search", query="vault code of site Bravo", request_heartbeat=True),
        call("open_document", chunk_id=note_id, request_heartbeat=True),
        lambda m, t: call("open_document", chunk_id=_own_note(m), request_heartbeat=True),
        lambda m, t: call("open_document", chunk_id=_own_note(m), direction="next", request_heartbeat=True),
        call("answer", text="The code is 7319 [1].", citations=[{"chunk_id": note_id, "quote": SECRET}]),
        text("I could not find it.")), corpus, Recall(":memory:", "bob"), window=8192, tools="full")
    calls = _calls(bob, "What is the vault code of site Bravo?")
    insert, found, opened, own, paged, cited = calls[:6]
    assert insert.ok and found.ok and "7319" not in found.result and "Alice" not in found.result
    assert not opened.ok and f"no chunk {note_id}" in opened.result
    assert own.ok and bob_note in own.result and "Alice" not in own.result  # a note is read alone
    assert not paged.ok and "Alice" not in paged.result
    assert not cited.ok and f"no chunk {note_id}" in cited.result
    assert bob.state.final is None  # nothing of Alice's was accepted as evidence

    # The TUI's source viewer applies the same scope.
    citation = CitationResult(note_id, SECRET, True, 1.0)
    try:
        SourceReader(corpus, citation, notes_scope="bob")
    except LookupError as exc:
        assert note_id in str(exc)
    else:
        raise AssertionError("session bob opened alice's note in the source viewer")
    assert SECRET in SourceReader(corpus, citation, notes_scope="alice").open().text
    # Alice still sees her own.
    again = Agent(ScriptedProcessor(call("open_document", chunk_id=note_id), text("ok")), corpus,
                  Recall(":memory:", "alice"), window=8192, tools="full")
    assert SECRET in _calls(again, "Read my note.")[0].result
    corpus.close()


def test_archival_insert_is_bounded_in_tokens(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nText."})
    corpus = open_corpus(settings)
    huge = "The pump log says nothing new. " * 2000  # ~14k tokens (the issue saw a 5.4 MB note)
    agent = Agent(ScriptedProcessor(call("archival_insert", content=huge), call("archival_insert", content="x " * 60),
                                    text("ok")), corpus, Recall(":memory:", "s"), window=8192, tools="full",
                  note_tokens=50)
    default = Agent(ScriptedProcessor(call("archival_insert", content=huge), text("ok")), corpus,
                    Recall(":memory:", "t"), window=8192, tools="full")
    first, second = _calls(agent, "Store the log.")
    assert not first.ok and re.match(r"FAILED: the note has \d+ tokens; a note holds at most 50", first.result)
    assert not second.ok and "at most 50" in second.result
    [big] = _calls(default, "Store the log.")
    assert not big.ok and "at most 1000" in big.result
    assert [c for c in corpus.store.neighbours("(agent notes)", 0, 5)] == []  # nothing was stored
    corpus.close()
