"""What a real small model needs (bench/real_model_findings.md, findings 7-10): docmem makes
the first search itself, runs a reply that is several calls one per line, keeps quotes
short, and stops reading a stream once a whole call has arrived."""

from __future__ import annotations

import json
import re

from docmem.agent.loop import Agent, CallStep, Trace
from docmem.agent.recall import Recall
from docmem.llm.scripted import ScriptedProcessor, call, text
from docmem.store.corpus import open_corpus
from tests.agent_helpers import build_corpus

QUESTION = "When does the alpha valve open?"
FILES = {"valve.txt": "Valves\n\nThe alpha valve opens at 3 bar.", "pump.txt": "Pumps\n\nPrime the beta pump first."}


def _chunk_id(messages: list[dict]) -> str:
    return re.search(r"chunk (\S+) \| v\w*\.txt", json.dumps(messages)).group(1)  # type: ignore[union-attr]


def _cite(messages: list[dict], tools: list[dict]):  # type: ignore[no-untyped-def]
    return call("answer", text="At 3 bar [1].", citations=[{"chunk_id": _chunk_id(messages), "quote": "opens at 3 bar"}])


def test_the_first_search_is_made_for_a_small_model_and_recorded_like_its_own(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", FILES)
    corpus = open_corpus(settings)
    other = Agent(ScriptedProcessor(call("archival_insert", content="Alpha valve note of another session: 9 bar.")),
                  corpus, Recall(":memory:", "other"), window=8192, tools="full", first_search="off")
    list(other.run("Remember the valve.", chat=True))
    llm = ScriptedProcessor(_cite)
    recall = Recall(":memory:", "mine")
    agent = Agent(llm, corpus, recall, window=4096, tools="minimal")
    trace_path = tmp_path / "trace.jsonl"
    trace = Trace(trace_path)
    result = agent.ask(QUESTION, trace=trace)
    trace.close()
    assert result.status == "answered" and result.steps == 1 and len(llm.history) == 1
    sent = llm.history[0][0]
    user, made, found = sent[-3:]
    assert user == {"role": "user", "content": QUESTION}
    assert made["role"] == "assistant" and made["tool_calls"][0]["function"] == {
        "name": "archival_search", "arguments": json.dumps({"query": QUESTION})}
    assert found["role"] == "tool" and found["tool_call_id"] == made["tool_calls"][0]["id"]
    assert found["content"].startswith("[docmem made this first search for you")
    assert "opens at 3 bar" in found["content"] and "9 bar" not in found["content"]  # notes stay in their scope
    assert result.searches[0]["query"] == QUESTION
    records = [json.loads(line) for line in trace_path.read_text().splitlines()]
    assert [r["type"] for r in records[:2]] == ["CallStep", "LLMStep"] and records[0]["name"] == "archival_search"
    assert any(e.role == "tool" and "opens at 3 bar" in e.content for e in recall.search("alpha valve", 1, 20)[0])
    corpus.close()


def test_the_first_search_is_bounded_to_the_page_room_and_an_echo_is_not_run_again(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {f"v{n}.txt": f"Valves {n}\n\n" + "The alpha valve opens at 3 bar. " * 80
                                                for n in range(6)})
    corpus = open_corpus(settings)
    llm = ScriptedProcessor(call("archival_search", query=QUESTION), _cite)
    agent = Agent(llm, corpus, Recall(":memory:", "t"), window=2048, tools="minimal")
    steps = list(agent.run(QUESTION))
    first, echo = [s for s in steps if isinstance(s, CallStep)][:2]
    assert first.ok and agent.counter.count(first.result) <= max(120, 2048 // 3)
    assert not echo.ok and echo.result.startswith("FAILED: you just made this exact call")
    assert steps[-1].result.status == "answered"
    corpus.close()


def test_first_search_setting_full_set_and_chat(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", FILES)
    corpus = open_corpus(settings)

    def searched_first(message: str = QUESTION, chat: bool = False, **kw) -> bool:  # type: ignore[no-untyped-def]
        agent = Agent(ScriptedProcessor(text("Hello.")), corpus, Recall(":memory:", "t"), window=8192, **kw)
        return isinstance(next(iter(agent.run(message, chat=chat))), CallStep)

    assert not searched_first(tools="full")  # a capable model writes its own first query
    assert searched_first(tools="full", first_search="on")
    assert searched_first(tools="minimal", chat=True)
    assert not searched_first(tools="minimal", first_search="off")
    assert not searched_first("   ", tools="minimal")
    corpus.close()
