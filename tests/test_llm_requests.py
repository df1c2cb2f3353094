"""Requests a local model can follow (issue 10 item 2), asserted on what the fake server received:
``max_tokens`` on every call, streaming, ``tool_choice: "required"``, the fallbacks a server's
refusal triggers (once, remembered per endpoint), and the cached prompt tokens servers report."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from docmem.llm import openai as llm_openai
from docmem.llm.openai import OpenAIProcessor
from docmem.protocols import LLMError
from tests.agent_helpers import citing_server_policy
from tests.conftest import SAMPLE_DIR
from tests.fake_openai import FakeOpenAI

MESSAGES = [{"role": "system", "content": "You are docmem."}, {"role": "user", "content": "Why?"}]
TOOLS = [{"type": "function", "function": {"name": "answer", "description": "The answer.", "parameters": {
    "type": "object", "properties": {"text": {"type": "string", "description": "It."}}, "required": ["text"]}}}]


@pytest.fixture(autouse=True)
def no_remembered_quirks(monkeypatch):
    monkeypatch.setattr(llm_openai, "_QUIRKS", {})


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def make(server: FakeOpenAI, **options: Any) -> OpenAIProcessor:
    options.setdefault("max_retries", 0)
    return OpenAIProcessor(server.model, server.url, None, **options)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    shutil.copy(SAMPLE_DIR / "text" / "alice29.txt", root)
    assert CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none"]).exit_code == 0
    return root


@pytest.mark.parametrize("flags, max_tokens", [
    ([], 1024),  # the reply reserve of the default 8192-token window
    (["--context-window", "4096"], 384),  # minimal tools (auto below 6k): finding 3 of bench/real_model_findings.md
    (["--max-tokens", "300"], 300),
])
def test_every_ask_call_caps_the_reply_streams_and_requires_a_call(corpus, server, flags, max_tokens):
    server.policy = citing_server_policy
    result = CliRunner().invoke(cli, ["ask", "Who is the White Rabbit?", "--model", server.model,
                                      "--base-url", server.url, "--json", *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    requests = server.chat_requests
    assert len(requests) >= (1 if "4096" in flags else 2)  # minimal in 4k: docmem made the first search
    constrained = "4096" in flags  # the minimal set: each reply follows a schema (agent.constrain)
    for body in requests:
        assert body["max_tokens"] == max_tokens
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        if constrained:
            assert body["tool_choice"] == "auto" and body["response_format"]["type"] == "json_schema"
        else:
            assert body.get("tool_choice") == ("required" if body.get("tools") else None)
            assert "response_format" not in body


def test_max_tokens_from_config(corpus, server, docmem_home):
    (docmem_home / "config.toml").write_text("max_tokens = 256\ntool_choice = \"auto\"\n")
    server.policy = citing_server_policy
    result = CliRunner().invoke(cli, ["ask", "Who is the White Rabbit?", "--model", server.model,
                                      "--base-url", server.url])
    assert result.exit_code == 0, result.output
    assert {(b["max_tokens"], b["tool_choice"]) for b in server.chat_requests} == {(256, "auto")}


# -- fallbacks ------------------------------------------------------------------------------

REQUIRED_REFUSED = {"status": 400, "error": {"message": 'tool_choice = "required" is not supported!',
                                             "type": "BadRequestError", "code": 400}}


def test_a_server_refusing_required_gets_auto_once_and_for_good(server, tmp_path):
    quirks = tmp_path / "llm-endpoints.json"
    server.enqueue(REQUIRED_REFUSED, "first", "second", "third", "fourth")
    with make(server, quirks_path=quirks) as llm:
        assert llm.complete(MESSAGES, TOOLS).text == "first"
        assert llm.complete(MESSAGES, TOOLS).text == "second"
        assert llm.quirks == {"tool_choice": "auto"}
    with make(server, quirks_path=quirks) as other:  # another processor of this process (a batch job)
        assert other.complete(MESSAGES, TOOLS).text == "third"
    assert [b["tool_choice"] for b in server.chat_requests] == ["required", "auto", "auto", "auto"]
    assert stat.S_IMODE(quirks.stat().st_mode) == 0o600
    assert json.loads(quirks.read_text()) == {f"{server.url} {server.model}": {"tool_choice": "auto"}}

    llm_openai._QUIRKS.clear()  # a new process: it reads what the last one learned
    with make(server, quirks_path=quirks) as fresh:
        assert fresh.complete(MESSAGES, TOOLS).text == "fourth"
    assert server.chat_requests[-1]["tool_choice"] == "auto"


def test_the_fallback_is_per_endpoint_and_model(server):
    server.enqueue(REQUIRED_REFUSED, "ok", "other model")
    with make(server) as llm:
        llm.complete(MESSAGES, TOOLS)
    with OpenAIProcessor("another-model", server.url, None, max_retries=0) as other:
        other.complete(MESSAGES, TOOLS)
    assert server.chat_requests[-1]["tool_choice"] == "required"


def test_a_server_refusing_auto_too_is_told_to_need_tools(server):
    server.enqueue(REQUIRED_REFUSED, {"status": 400, "error": {"message": "tool_choice is not supported"}})
    with make(server) as llm, pytest.raises(LLMError, match=r"cannot call tools \(400\)"):
        llm.complete(MESSAGES, TOOLS)
    assert [b["tool_choice"] for b in server.chat_requests] == ["required", "auto"]  # no loop


def test_a_refusal_of_auto_is_not_a_reason_to_fall_back(server):
    server.enqueue({"status": 400, "error": {"message": '"auto" tool choice requires --enable-auto-tool-choice'}})
    with make(server) as llm, pytest.raises(LLMError, match="cannot call tools"):
        llm.complete(MESSAGES, TOOLS)
    assert len(server.chat_requests) == 1


def test_max_completion_tokens_where_max_tokens_is_refused(server):
    server.enqueue({"status": 400, "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                   "'max_completion_tokens' instead.", "type": "invalid_request_error", "param": "max_tokens",
        "code": "unsupported_parameter"}}, "ok")
    with make(server, max_tokens=700) as llm:
        assert llm.complete(MESSAGES, TOOLS).text == "ok"
    refused, sent = server.chat_requests
    assert refused["max_tokens"] == 700 and "max_completion_tokens" not in refused
    assert sent["max_completion_tokens"] == 700 and "max_tokens" not in sent


def test_stream_options_dropped_where_refused(server):
    server.enqueue({"status": 400, "error": {"message": "Unrecognized request argument supplied: stream_options"}},
                   "ok")
    with make(server) as llm:
        assert llm.complete(MESSAGES, TOOLS).text == "ok"
    assert "stream_options" in server.chat_requests[0] and "stream_options" not in server.chat_requests[1]
    assert server.chat_requests[1]["stream"] is True


# -- cached prompt tokens -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("reply, cached", [
    ({"usage": {"prompt_tokens": 900, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 768}}},
     768),  # OpenAI, vLLM, recent llama.cpp
    ({"timings": {"cache_n": 812, "prompt_n": 88}}, 812),  # llama.cpp
    ({"tokens_cached": 640}, 640),  # older llama.cpp
    ({}, 0),  # not reported
])
def test_cached_prompt_tokens_are_read(server, stream, reply, cached):
    server.enqueue({"content": "ok", **reply})
    with make(server, stream=stream) as llm:
        result = llm.complete(MESSAGES, TOOLS)
    assert result.tokens_cached == cached and result.text == "ok"


def test_the_trace_reports_cached_prompt_tokens_per_step(corpus, tmp_path):
    trace = tmp_path / "trace.jsonl"
    with FakeOpenAI(model="m", prompt_cache=True) as server:
        server.policy = citing_server_policy
        result = CliRunner().invoke(cli, ["ask", "Who is the White Rabbit?", "--model", "m", "--base-url",
                                          server.url, "--trace", str(trace)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    steps = [r for r in map(json.loads, trace.read_text().splitlines()) if r["type"] == "LLMStep"]
    assert len(steps) == 2 and steps[0]["tokens_cached"] == 0
    # The second call repeats the first one's prompt (system, tools, question) and adds to it.
    first = server.chat_requests[0]
    assert steps[1]["tokens_cached"] >= len(json.dumps([first["messages"][:1], first["tools"]])) // 4


def test_the_prompt_prefix_stays_stable_while_working_context_changes(corpus, tmp_path):
    """What a prompt-caching server sees: the system message and the tool schemas are the same
    bytes in every call, so a working-context edit never makes it re-read them."""
    def policy(body: dict[str, Any]) -> dict[str, Any]:
        done = sum(m["role"] == "tool" for m in body["messages"])
        if done == 0:
            return {"tool_calls": [{"name": "working_context_append", "arguments": {
                "text": "Task: who the White Rabbit is.", "request_heartbeat": True}}]}
        if done == 1:
            return {"tool_calls": [{"name": "archival_search", "arguments": {
                "query": "White Rabbit", "request_heartbeat": True}}]}
        return citing_server_policy(body)

    trace = tmp_path / "trace.jsonl"
    with FakeOpenAI(model="m", prompt_cache=True) as server:
        server.policy = policy
        result = CliRunner().invoke(cli, ["ask", "Who is the White Rabbit?", "--model", "m", "--base-url",
                                          server.url, "--trace", str(trace)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    calls = [b for b in server.chat_requests if b.get("tools")]
    assert len(calls) == 3
    assert all(b["messages"][0] == calls[0]["messages"][0] and b["tools"] == calls[0]["tools"] for b in calls)
    assert "Task: who the White Rabbit is." not in json.dumps(calls[2]["messages"][0])  # it is after the prefix
    assert "Task: who the White Rabbit is." in json.dumps(calls[2]["messages"])
    prefix = len(json.dumps([calls[0]["messages"][:1], calls[0]["tools"]])) // 4
    cached = [r["tokens_cached"] for r in map(json.loads, trace.read_text().splitlines()) if r["type"] == "LLMStep"]
    assert cached[0] == 0 and all(c >= prefix for c in cached[1:])
