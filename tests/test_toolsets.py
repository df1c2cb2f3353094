"""The compact tool set for small windows and small models, and a prompt prefix that stays
the same from step to step (issue 10.2, the agent's part)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from docmem import prompts
from docmem.agent.constrain import reminder
from docmem.agent.functions import TOOLS
from docmem.agent.toolsets import MINIMAL, select
from docmem.cli.main import cli
from docmem.errors import DocmemError
from docmem.tokens import TokenCounter
from tests.agent_helpers import build_corpus, citing_server_policy
from tests.fake_openai import FakeOpenAI


def _tokens(tools: list) -> int:  # type: ignore[type-arg]
    return TokenCounter("gpt-4o-mini").count(json.dumps([t.schema() for t in tools], separators=(",", ":")))


def test_minimal_is_search_read_answer_in_about_a_quarter_of_the_tokens():
    assert [t.name for t in MINIMAL] == ["archival_search", "open_document", "answer"]
    full, small = _tokens(TOOLS), _tokens(MINIMAL)
    assert small < full / 3, (full, small)  # bench/tool_schemas.py: 1,168 vs 305 (o200k)
    search = MINIMAL[0].schema()["function"]
    assert search["parameters"]["properties"].keys() == {"query", "page"}  # no heartbeat to explain
    assert MINIMAL[0].parse({"query": "q"}).request_heartbeat is True  # chaining needs no words
    assert MINIMAL[1].schema()["function"]["parameters"]["required"] == ["chunk_id"]
    assert select("auto", 4096)[0] == "minimal" and select("auto", 8192)[0] == "full"
    assert select("full", 2048)[0] == "full" and select("minimal", 32000)[0] == "minimal"
    with pytest.raises(DocmemError, match="unknown tool set 'tiny'"):
        select("tiny", 8192)


@pytest.fixture
def corpus_root(settings, tmp_path: Path) -> Path:
    build_corpus(settings, tmp_path / "docs", {"valve.txt": "Valves\n\nThe alpha valve opens at 3 bar."})
    return tmp_path / "docs"


def test_ask_and_batch_take_tools_minimal_and_the_prefix_never_changes(corpus_root, tmp_path):
    qfile = tmp_path / "q.txt"
    qfile.write_text("When does the alpha valve open?\n", encoding="utf-8")
    with FakeOpenAI() as server:
        server.policy = citing_server_policy
        base = ["--model", server.model, "--base-url", server.url]
        one = CliRunner().invoke(cli, ["ask", "When does the alpha valve open?", "--tools", "minimal",
                                       "--first-search", "off", *base], catch_exceptions=False)
        asked = len(server.chat_requests)
        batch = CliRunner().invoke(cli, ["ask", "--questions", str(qfile), "--tools", "minimal", *base],
                                   catch_exceptions=False)
        small = CliRunner().invoke(cli, ["ask", "When?", "--context-window", "4096", *base], catch_exceptions=False)
        requests = server.chat_requests
    assert one.exit_code == 0 and batch.exit_code == 0, (one.output, batch.output)
    chats = [r for r in requests if r.get("tools")]
    assert all([t["function"]["name"] for t in r["tools"]] == ["archival_search", "open_document", "answer"]
               for r in chats)  # ask, batch, and auto in a 4k window
    assert small.exit_code == 0, small.output
    # The prefix is the same in every call: system text first, unchanged, then what changes.
    assert {r["messages"][0]["content"] for r in chats} == {prompts.load("system_minimal")}
    first, second = requests[0]["messages"], requests[1]["messages"]
    # step 2 only appends to step 1's prompt, but for the question sent again after it (constrained)
    assert second[:len(first) - 1] == first[:-1] and first[-1] == second[-1] == reminder("When does the alpha valve open?")
    assert asked == 2
    assert len(requests) == 4  # batch and the 4k ask: docmem's first search, then the answer at step 1
    assert [m["role"] for m in requests[2]["messages"][-4:]] == ["user", "assistant", "tool", "user"]


def test_a_working_context_edit_keeps_the_system_and_tools_cached(corpus_root):
    """With a server that caches the longest common prompt prefix (the fake emulates
    llama.cpp's), an edit of the working context re-reads only what follows the tools."""
    from docmem.agent.loop import Agent, LLMStep
    from docmem.agent.recall import Recall
    from docmem.config import load_settings
    from docmem.llm.openai import OpenAIProcessor
    from docmem.store.corpus import open_corpus
    from tests.fake_openai import estimate_tokens

    with FakeOpenAI(prompt_cache=True) as server:
        server.enqueue({"tool_calls": [{"name": "working_context_append",
                                        "arguments": {"text": "Task: valve pressure", "request_heartbeat": True}}]},
                       {"tool_calls": [{"name": "archival_search",
                                        "arguments": {"query": "alpha valve", "request_heartbeat": True}}]},
                       {"tool_calls": [{"name": "answer", "arguments": {"text": "No.", "not_found": True}}]})
        corpus = open_corpus(load_settings())
        agent = Agent(OpenAIProcessor(server.model, server.url, None, max_retries=0), corpus,
                      Recall(":memory:", "c"), window=8192, tools="full")
        steps = [s for s in agent.run("When does the alpha valve open?") if isinstance(s, LLMStep)]
        corpus.close()
        first = server.chat_requests[0]
    fixed = estimate_tokens(json.dumps([first["messages"][:1], first["tools"]]))
    assert steps[0].tokens_cached == 0
    assert steps[1].tokens_cached >= fixed  # the edit did not invalidate system + tools
    assert steps[2].tokens_cached > steps[1].tokens_in * 0.9  # no edit: all but the new messages
