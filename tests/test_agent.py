"""The paging agent with a scripted processor: what the model is sent, and what it gets back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from docmem import prompts
from docmem.agent.functions import TOOLS
from docmem.agent.loop import Agent, CallStep, FinalStep, LLMStep, MemoryStep
from docmem.agent.recall import Recall
from docmem.config import load_settings
from docmem.llm.scripted import ScriptedProcessor, call, calls, text
from docmem.protocols import ContextLengthExceeded, LLMError
from docmem.store.corpus import open_corpus
from tests.agent_helpers import build_corpus, kv_policy, last_tool_result, nested_kv


def _agent(settings, llm, recall=None, **kw):  # type: ignore[no-untyped-def]
    corpus = open_corpus(settings)
    return Agent(llm, corpus, recall or Recall(":memory:", "t"), window=kw.pop("window", 8192), **kw)


def test_archival_search_schema_is_derived_exactly():
    schema = next(t.schema() for t in TOOLS if t.name == "archival_search")
    assert schema == {"type": "function", "function": {
        "name": "archival_search",
        "description": ("Search archival storage (the document corpus and stored notes); "
                        "returns one page of results."),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for: keywords, a phrase or a question."},
                "page": {"type": "integer", "description": "Page of results, from 1.", "minimum": 1, "default": 1},
                "path": {"type": "string",
                         "description": "Only files whose path matches this glob, e.g. '*.pdf'."},
                "request_heartbeat": {"type": "boolean", "default": False, "description": (
                    "true: continue right after the result; false: yield to the user")},
            },
            "required": ["query"],
        },
    }}
    answer = next(t for t in TOOLS if t.name == "answer")
    assert "request_heartbeat" not in answer.schema()["function"]["parameters"]["properties"]


# 1. the answer is only on page 3 ---------------------------------------------------------

def test_agent_pages_to_page_three(settings, tmp_path):
    files = {f"pump{i:02d}.txt": f"Pump {i}\n\nMaintenance schedule: the maintenance schedule of pump {i} "
             f"is weekly maintenance." for i in range(14)}
    files["turbine.txt"] = ("Turbine notes\n\nThe turbine has a maintenance schedule too. During the yearly "
                            "service, torque the flange bolts to 85 Nm and replace both gaskets, then run the "
                            "turbine for an hour and log vibration, temperature and noise levels.")
    build_corpus(settings, tmp_path / "docs", files)

    def policy(messages, tools):  # type: ignore[no-untyped-def]
        result = last_tool_result(messages)
        if "torque" in result:
            chunk_id = re.search(r"chunk (\S+) \| turbine\.txt", result).group(1)  # type: ignore[union-attr]
            return call("answer", text="Torque the flange bolts to 85 Nm [1].",
                        citations=[{"chunk_id": chunk_id, "quote": "torque the flange bolts to 85 Nm"}])
        pages = re.findall(r"\(page (\d+) of", result)
        page = int(pages[0]) + 1 if pages else 1
        return call("archival_search", query="maintenance schedule", page=page, request_heartbeat=True)

    llm = ScriptedProcessor(policy=policy)
    agent = _agent(settings, llm)
    result = agent.ask("What torque do the turbine flange bolts need?")
    assert result.status == "answered" and result.citations[0].verified
    assert result.citations[0].path == "turbine.txt"
    assert [s["page"] for s in result.searches] == [1, 2, 3]
    sent = last_tool_result(llm.history[-1][0])
    assert sent.startswith('Showing results 11-15 of 15 (page 3 of 3) for "maintenance schedule"')
    assert "torque the flange bolts" in sent
    # Every request carried the tool list, and the very same system message (a cacheable prefix).
    assert all(len(tools) == len(TOOLS) for _, tools in llm.history)
    assert {msgs[0]["content"] for msgs, _ in llm.history} == {prompts.load("system")}
    agent.corpus.close()


# 2. nested key-value lookup, 0-4 levels --------------------------------------------------

@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_nested_kv_over_archival_storage(tmp_path, level):
    settings = load_settings(corpus=f"kv{level}")
    pairs, key, gold = nested_kv(level, seed=level)
    build_corpus(settings, tmp_path / "kv", {f"pair{i:03d}.txt": f"Key-value pair: key = {k}, value = {v}"
                                             for i, (k, v) in enumerate(pairs)})
    llm = ScriptedProcessor(policy=kv_policy)
    agent = _agent(settings, llm)
    result = agent.ask(f"Find the value of key {key}. If the value is itself a key, look that up too, "
                       "until you reach a value that is not a key.")
    assert result.status == "answered", result.error
    assert gold in result.answer and result.citations[0].verified
    assert len(result.searches) == level + 2  # each hop, plus the check that the last value is no key
    agent.corpus.close()


# 3. a small window: warning, flush with a recursive summary, recall finds the old fact ------

def test_small_window_warns_flushes_and_recall_finds_old_fact(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {f"log{i}.txt": f"Log {i}\n\n" + ("Routine entry. " * 60)
                                               for i in range(6)})
    summaries: list[list] = []

    def policy(messages, tools):  # type: ignore[no-untyped-def]
        if not tools:  # the summarizer's request
            summaries.append(messages)
            return text("Summary: the user asked about logs; searches were routine.")
        if messages[-1]["role"] == "tool" and "conversation_search" not in json.dumps(messages[-2]):
            return text("Noted.")
        if messages[-1]["role"] == "tool":
            code = re.search(r"vault code is (\d+)", messages[-1]["content"])
            return text(f"The vault code was {code.group(1) if code else 'lost'}.")
        # The user's last message (a memory alert may have come after it).
        last = next(m["content"] for m in reversed(messages) if m["role"] == "user" and not m["content"].startswith("["))
        if "vault code" in last and "Remember" not in last:
            return call("conversation_search", query="vault code", request_heartbeat=True)
        if last.startswith("Remember"):
            return text("I will remember.")
        return call("archival_search", query="routine entry log", request_heartbeat=True)

    llm = ScriptedProcessor(policy=policy)
    agent = _agent(settings, llm, window=3500, tools="full")  # the whole hierarchy, in a small window
    steps = list(agent.run("Remember this: the vault code is 7319.", chat=True))
    for n in range(8):
        steps += list(agent.run(f"Search the logs again, round {n}.", chat=True))
    kinds = [s.kind for s in steps if isinstance(s, MemoryStep)]
    assert "warning" in kinds and "flush" in kinds
    assert kinds.index("warning") < kinds.index("flush")
    # The memory message changes only when a flush makes a new summary: a prefix servers can cache.
    memories = [m[1]["content"] for m, t in llm.history if t and m[1]["content"].startswith("[memory]")]
    assert len(memories) > len(set(memories)) and len(set(memories)) <= kinds.count("flush")
    # The fact left the queue, but the summary says how many messages are hidden.
    assert not any("7319" in (m.get("content") or "") for m in agent.ctx.queue)
    head = agent.ctx.messages(agent.counter)[1]["content"]
    assert re.match(r"\[memory\]\n## Working context .*\n\n## Summary: \d+ earlier messages are hidden",
                    head, re.S)
    # Every request, summarizer's included, fitted the window less the reply reserve.
    for messages, tools in llm.history:
        calls_text = [c["function"]["name"] + c["function"]["arguments"] for m in messages
                      for c in m.get("tool_calls") or []]
        used = sum(agent.counter.count(m.get("content") or "") for m in messages)
        used += sum(agent.counter.count(t) for t in calls_text)
        used += agent.counter.count(json.dumps(tools, separators=(",", ":"))) if tools else 0
        assert used <= 3500 - agent.reserve
    assert summaries, "the summarizer was never called"

    final = list(agent.run("What was the vault code?", chat=True))
    assert any(isinstance(s, CallStep) and s.name == "conversation_search" and "7319" in s.result for s in final)
    assert final[-1].result.answer == "The vault code was 7319."
    agent.corpus.close()


# 4. errors the model causes go back to it; errors of the network end clearly ---------------

def test_model_errors_are_returned_as_failed_calls(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nThe alpha valve opens at 3 bar."})
    llm = ScriptedProcessor(
        calls([("archival_search", '{"query": "alpha valve", "page": 1,}')]),  # trailing comma: repaired
        calls([("archival_search", '{"query": ')]),  # not repairable
        call("no_such_function", x=1),
        call("archival_search", query="alpha", page=0),  # violates minimum
        call("archival_search", query="alpha", page=9, request_heartbeat=True),  # past the last page
        call("answer", text="It opens at 3 bar."),  # no citation
    )

    def final(messages, tools):  # type: ignore[no-untyped-def]
        chunk_id = re.search(r"chunk (\S+) \|", json.dumps(messages)).group(1)  # type: ignore[union-attr]
        return call("answer", text="3 bar [1]", citations=[{"chunk_id": chunk_id, "quote": "opens at 3 bar"}])

    llm.policy = final
    agent = _agent(settings, llm)
    steps = [s for s in agent.run("When does the alpha valve open?") if isinstance(s, CallStep)]
    assert [(s.name, s.ok) for s in steps] == [
        ("archival_search", True), ("archival_search", False), ("no_such_function", False),
        ("archival_search", False), ("archival_search", False), ("answer", False), ("answer", True)]
    assert "not valid JSON" in steps[1].result
    assert "does not exist" in steps[2].result and "archival_search" in steps[2].result
    assert "page: Input should be greater than or equal to 1" in steps[3].result
    assert "past the last page" in steps[4].result
    assert "needs at least one citation" in steps[5].result
    # What the model was sent after each failure is the failure itself.
    sent = [last_tool_result(m) for m, _ in llm.history[2:7]]
    assert all(s.startswith("FAILED:") for s in sent)
    agent.corpus.close()


def test_repeated_identical_call_ends_the_chain(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nSome text."})
    llm = ScriptedProcessor(policy=lambda m, t: call("archival_search", query="alpha", request_heartbeat=True))
    agent = _agent(settings, llm)
    result = agent.ask("Loop forever?")
    assert result.status == "error" and "repeated the same call archival_search" in result.error
    assert result.steps == 3
    agent.corpus.close()


def test_step_budget_and_plain_text_answers(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nSome text."})
    pages = iter(range(1, 100))
    llm = ScriptedProcessor(policy=lambda m, t: call("archival_search", query=f"alpha {next(pages)}",
                                                     request_heartbeat=True))
    agent = _agent(settings, llm, max_steps=5)
    result = agent.ask("Search forever?")
    assert result.status == "error" and result.error.startswith("stopped after 5 steps")

    llm2 = ScriptedProcessor(policy=lambda m, t: text("It is probably 42."))
    agent2 = Agent(llm2, agent.corpus, Recall(":memory:", "u"), window=8192)
    result = agent2.ask("What is it?")
    assert result.status == "unverified" and result.answer == "It is probably 42."
    assert "no citation was verified" in result.error
    assert "call answer" in llm2.history[1][0][-1]["content"]  # it was nudged first
    agent.corpus.close()


def test_tokens_are_counted_here_when_the_server_reports_none(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nSome text."})
    search = call("archival_search", query="alpha", request_heartbeat=True)
    silent = _agent(settings, ScriptedProcessor(search, call("answer", text="Not here.", not_found=True)))
    everything = list(silent.run("Is it there?"))
    steps = [s for s in everything if isinstance(s, LLMStep)]
    result = everything[-1].result
    # What docmem counted as sent: the whole main context and the tool schemas, each call.
    assert [s.tokens_in for s in steps] == [s.usage.total for s in steps] and steps[0].tokens_in > 1000
    assert result.tokens_in == sum(s.usage.total for s in steps) and result.tokens_out > 0
    # A server that reports usage is believed.
    told = Agent(ScriptedProcessor(calls([("answer", {"text": "No.", "not_found": True})], tokens_in=1234,
                                         tokens_out=5)), silent.corpus, Recall(":memory:", "u"), window=8192)
    assert (told.ask("Is it there?").tokens_in, told.tokens_out) == (1234, 5)
    silent.corpus.close()


def test_context_length_error_flushes_and_retries_once(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nThe alpha valve opens at 3 bar."})
    llm = ScriptedProcessor(call("archival_search", query="alpha valve", request_heartbeat=True),
                            ContextLengthExceeded("prompt too long"))
    llm.policy = lambda m, t: text("summary of earlier work") if not t else call(
        "answer", text="not here", not_found=True)
    agent = _agent(settings, llm)
    result = agent.ask("When does the alpha valve open?")
    assert result.status == "abstained"
    assert agent.ctx.hidden > 0 and agent.ctx.summary == "summary of earlier work"

    llm.enqueue(ContextLengthExceeded("still too long"), text("summary two"), ContextLengthExceeded("still too long"))
    result = agent.ask("Again?")
    assert result.status == "error" and "still too long" in result.error

    llm.enqueue(LLMError("the LLM server answered 500 three times; giving up"))
    result = agent.ask("And now?")
    assert result.status == "error" and "500" in result.error
    # The session survived all of it: the questions are in recall.
    assert agent.recall.search("Again", 1, 5)[1] == 1
    agent.corpus.close()


# 5. an unverifiable quote is rejected, a corrected one accepted -------------------------

def test_unverifiable_quote_rejected_then_corrected(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nThe alpha valve opens at 3 bar of pressure."})

    def cite(quote):  # type: ignore[no-untyped-def]
        def reply(messages, tools):  # type: ignore[no-untyped-def]
            chunk_id = re.search(r"chunk (\S+) \|", json.dumps(messages)).group(1)  # type: ignore[union-attr]
            return call("answer", text="3 bar [1]", citations=[{"chunk_id": chunk_id, "quote": quote}])
        return reply

    llm = ScriptedProcessor(call("archival_search", query="alpha valve", request_heartbeat=True),
                            cite("the valve opens at five bar"), cite("opens at 3 bar of pressure"))
    agent = _agent(settings, llm)
    steps = list(agent.run("When does the alpha valve open?"))
    answers = [s for s in steps if isinstance(s, CallStep) and s.name == "answer"]
    assert [a.ok for a in answers] == [False, True]
    assert "quote not found in the chunk" in answers[0].result
    result = steps[-1].result
    assert isinstance(steps[-1], FinalStep) and result.citations[0].quote == "opens at 3 bar of pressure"
    assert last_tool_result(llm.history[2][0]).startswith("FAILED: citations not verified")
    agent.corpus.close()


# 6. a resumed session sees its earlier working context -------------------------------------

def test_window_too_small_is_a_clear_error(settings, tmp_path):
    from docmem.errors import DocmemError

    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha"})
    with pytest.raises(DocmemError, match=r"context window 2000 is too small: .* use at least \d+"):
        _agent(settings, ScriptedProcessor(), window=2000, tools="full")
    small = _agent(settings, ScriptedProcessor(), window=2000)  # auto: the compact tool set fits
    assert small.tool_set == "minimal"
    small.corpus.close()


def test_resumed_session_sees_working_context(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nText."})
    db = tmp_path / "sessions.sqlite"
    llm = ScriptedProcessor(call("working_context_append", text="User prefers metric units.", request_heartbeat=True),
                            text("Noted."))
    agent = _agent(settings, llm, recall=Recall(db, "alice"))
    list(agent.run("I prefer metric units.", chat=True))
    agent.recall.close()
    agent.corpus.close()

    llm2 = ScriptedProcessor(text("Hello again."))
    agent2 = _agent(settings, llm2, recall=Recall(db, "alice"))
    list(agent2.run("Do you remember me?", chat=True))
    sent = llm2.history[0][0]
    assert sent[0]["content"] == prompts.load("system")  # unchanged: the working context follows it
    assert sent[1]["content"].startswith("[memory]\n## Working context (")
    assert "User prefers metric units." in sent[1]["content"]
    assert any(m["content"] == "I prefer metric units." for m in llm2.history[0][0] if m["role"] == "user")
    agent2.corpus.close()
    other = _agent(settings, ScriptedProcessor(text("Hi.")), recall=Recall(db, "bob"))
    assert other.ctx.working == ""
    other.corpus.close()


def test_archival_notes_are_scoped_to_their_session(settings, tmp_path):
    build_corpus(settings, tmp_path / "docs", {"a.txt": "Alpha\n\nThe alpha valve opens at 3 bar."})
    llm = ScriptedProcessor(call("archival_insert", content="Bravo pump rated 40 kW (from the site visit).",
                                 request_heartbeat=True),
                            call("archival_search", query="bravo pump rating", request_heartbeat=True),
                            text("done"))
    agent = _agent(settings, llm, recall=Recall(":memory:", "alice"))
    steps = [s for s in agent.run("Remember the pump rating.", chat=True) if isinstance(s, CallStep)]
    assert steps[0].result.startswith("Stored as chunk ")
    assert "Bravo pump rated 40 kW" in steps[1].result and "(agent notes)" in steps[1].result
    agent.corpus.close()

    other = _agent(settings, ScriptedProcessor(call("archival_search", query="bravo pump rating"), text("x")),
                   recall=Recall(":memory:", "bob"))
    result = [s for s in other.run("Pump?", chat=True) if isinstance(s, CallStep)][0].result
    assert "Bravo" not in result
    other.corpus.store.delete_scope("alice")
    other.state.notes_scope = "alice"
    from docmem.search import search

    assert search(other.corpus, "bravo pump", notes_scope="alice").total == 0
    other.corpus.close()
