"""OpenAIProcessor: the real ``openai`` client against a fake server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import struct
import urllib.request
from typing import Any

import openai
import pytest

from docmem.llm.jsonfix import repair_json_arguments
from docmem.llm.openai import (
    NO_ENDPOINT, NO_MODEL, OpenAIProcessor, from_settings,
)
from docmem.protocols import ContextLengthExceeded, LLMError, LLMNotConfigured, ToolCall
from fake_openai import FakeOpenAI, context_length_error, estimate_tokens, fake_llm  # noqa: F401

SEARCH_TOOL = {"type": "function", "function": {
    "name": "archival_search",
    "description": "Search the corpus.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for."},
        "page": {"type": "integer", "description": "Result page, from 1."}},
        "required": ["query"]}}}
ANSWER_TOOL = {"type": "function", "function": {
    "name": "answer",
    "description": "Give the final answer.",
    "parameters": {"type": "object", "properties": {
        "text": {"type": "string", "description": "The answer."}}, "required": ["text"]}}}
TOOLS = [SEARCH_TOOL, ANSWER_TOOL]
MESSAGES = [{"role": "system", "content": "You are docmem."},
            {"role": "user", "content": "Why did tariffs rise in 1930?"}]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(fake_llm: FakeOpenAI, sleeps: list[float]):
    """Build a processor on the fake server; sleeping only records the delay."""
    made: list[OpenAIProcessor] = []

    def build(**options: Any) -> OpenAIProcessor:
        options.setdefault("max_retries", 0)
        options.setdefault("sleep", sleeps.append)
        processor = OpenAIProcessor(fake_llm.model, fake_llm.url, options.pop("api_key", None),
                                    **options)
        made.append(processor)
        return processor

    yield build
    for processor in made:
        processor.close()


# -- the happy paths ---------------------------------------------------------------------


def test_tool_call_round_trip_sends_exactly_the_request(fake_llm, make):
    fake_llm.enqueue(
        {"tool_calls": [{"id": "call_abc", "name": "archival_search",
                         "arguments": {"query": "Smoot-Hawley", "page": 1}}]},
        {"content": "Tariffs rose because of the Smoot-Hawley Act [1]."},
    )
    processor = make()

    first = processor.complete(MESSAGES, TOOLS)

    assert fake_llm.chat_requests[0] == {"model": "fake-model", "messages": MESSAGES,
                                         "tools": TOOLS, "tool_choice": "required",
                                         "temperature": 0.0, "stream": True,
                                         "stream_options": {"include_usage": True}}
    assert fake_llm.requests[0].headers["authorization"] == "Bearer not-needed"
    assert first.text is None
    assert first.tool_calls == [ToolCall("call_abc", "archival_search",
                                         '{"query": "Smoot-Hawley", "page": 1}')]
    assert first.finish_reason == "tool_calls"
    assert first.tokens_in == estimate_tokens({"messages": MESSAGES, "tools": TOOLS})
    assert first.tokens_out > 0

    call = first.tool_calls[0]
    followup = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "[1] The Smoot-Hawley Act..."},
    ]
    second = processor.complete(followup, TOOLS)

    assert fake_llm.chat_requests[1]["messages"] == followup
    assert second.text == "Tariffs rose because of the Smoot-Hawley Act [1]."
    assert second.tool_calls == []
    assert second.finish_reason == "stop"


def test_options_shape_the_request(fake_llm, make):
    fake_llm.enqueue("summary", "ok")
    make(temperature=None, stream=False).complete(MESSAGES, [])
    make(parallel_tool_calls=False, tool_choice="auto", max_tokens=512).complete(MESSAGES, TOOLS)

    no_tools, parallel = fake_llm.chat_requests
    assert no_tools == {"model": "fake-model", "messages": MESSAGES}
    assert parallel["parallel_tool_calls"] is False
    assert parallel["tool_choice"] == "auto" and parallel["max_tokens"] == 512


def test_streamed_text_reaches_on_text_piece_by_piece(fake_llm, make):
    answer = "Tariffs rose in 1930 because Congress passed the Smoot-Hawley Act."
    fake_llm.enqueue({"content": answer})
    pieces: list[str] = []

    result = make().complete(MESSAGES, TOOLS, on_text=pieces.append)

    body = fake_llm.chat_requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert len(pieces) > 5 and "".join(pieces) == answer
    assert result.text == answer
    assert result.tool_calls == [] and result.finish_reason == "stop"
    assert result.tokens_in == estimate_tokens({"messages": MESSAGES, "tools": TOOLS})
    assert result.tokens_out == estimate_tokens(answer)


def test_streamed_tool_calls_are_assembled_by_index(make):
    with FakeOpenAI(piece_chars=4) as server:
        server.enqueue({"content": "Let me look.", "tool_calls": [
            {"id": "call_1", "name": "archival_search",
             "arguments": {"query": "tariff act of 1930", "page": 2}},
            {"id": "call_2", "name": "archival_search", "arguments": {"query": "Hoover veto"}},
        ]})
        pieces: list[str] = []
        with OpenAIProcessor(server.model, server.url, None, max_retries=0) as processor:
            result = processor.complete(MESSAGES, TOOLS, on_text=pieces.append)

    assert "".join(pieces) == "Let me look." and result.text == "Let me look."
    assert result.tool_calls == [
        ToolCall("call_1", "archival_search", '{"query": "tariff act of 1930", "page": 2}'),
        ToolCall("call_2", "archival_search", '{"query": "Hoover veto"}'),
    ]
    assert result.finish_reason == "tool_calls"


def test_the_fake_streams_like_a_real_server(fake_llm):
    """The fake must split arguments across deltas that carry ``index``, as OpenAI does."""
    fake_llm.enqueue({"tool_calls": [{"id": "call_x", "name": "answer",
                                      "arguments": {"text": "forty-two"}}]})
    request = urllib.request.Request(
        f"{fake_llm.url}/chat/completions", method="POST",
        data=json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read().decode()

    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"].startswith("chatcmpl-")
               for c in chunks)
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
    assert all(d["index"] == 0 for d in deltas)
    assert deltas[0]["id"] == "call_x" and deltas[0]["function"]["name"] == "answer"
    argument_pieces = [d["function"]["arguments"] for d in deltas[1:]]
    assert len(argument_pieces) >= 2
    assert "".join(argument_pieces) == '{"text": "forty-two"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_parallel_tool_calls_keep_their_order(fake_llm, make):
    queries = ["tariffs", "Hoover", "retaliation", "Canada"]
    fake_llm.enqueue({"tool_calls": [{"name": "archival_search", "arguments": {"query": q}}
                                     for q in queries]})

    result = make().complete(MESSAGES, TOOLS)

    assert [json.loads(c.arguments)["query"] for c in result.tool_calls] == queries
    assert len({c.id for c in result.tool_calls}) == 4
    assert all(c.id.startswith("call_") for c in result.tool_calls)


@pytest.mark.parametrize("stream", [False, True])
def test_missing_tool_call_ids_are_synthesized(fake_llm, make, stream):
    fake_llm.enqueue({"tool_calls": [
        {"id": None, "name": "archival_search", "arguments": {"query": "a"}},
        {"id": None, "name": "answer", "arguments": {"text": "b"}},
    ]})
    on_text = [].append if stream else None

    result = make().complete(MESSAGES, TOOLS, on_text=on_text)

    assert result.tool_calls == [ToolCall("call_0", "archival_search", '{"query": "a"}'),
                                 ToolCall("call_1", "answer", '{"text": "b"}')]


def test_a_tool_call_written_as_text_is_left_to_the_agent(fake_llm, make):
    """The processor reports what the server said; the agent decides whether text is a call
    (tests/test_text_calls.py)."""
    content = 'Here it is:\n```json\n{"name": "answer", "arguments": {"text": "The 1930 tariff act."}}\n```'
    fake_llm.enqueue({"content": content})

    result = make().complete(MESSAGES, TOOLS)

    assert result.tool_calls == [] and result.text == content


# -- retries and errors ------------------------------------------------------------------


def test_rate_limit_is_retried_after_the_backoff(fake_llm, make, sleeps):
    fake_llm.enqueue({"status": 429}, {"content": "ok"})

    result = make(max_retries=3, backoff=0.5).complete(MESSAGES, TOOLS)

    assert result.text == "ok"
    assert len(fake_llm.chat_requests) == 2
    assert fake_llm.chat_requests[0] == fake_llm.chat_requests[1]
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 0.55


@pytest.mark.parametrize("headers, delay", [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "3600"}, 60.0),  # capped
])
def test_retry_after_is_honoured_and_capped(fake_llm, make, sleeps, headers, delay):
    fake_llm.enqueue({"status": 429, "headers": headers}, {"content": "ok"})

    assert make(max_retries=1).complete(MESSAGES, TOOLS).text == "ok"
    assert sleeps == [delay]


def test_server_errors_give_up_after_max_retries(fake_llm, make, sleeps):
    fake_llm.enqueue(*[{"status": 500}] * 3, {"content": "never reached"})

    with pytest.raises(LLMError) as caught:
        make(max_retries=2, backoff=0.5).complete(MESSAGES, TOOLS)

    message = str(caught.value)
    assert message.startswith(f"LLM server at {fake_llm.url} answered 500 Internal Server "
                              "Error 3 times; giving up")
    assert "\n" not in message
    assert len(fake_llm.chat_requests) == 3 and fake_llm.remaining == 1
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 0.55 and 1.0 <= sleeps[1] <= 1.05


def test_rate_limit_that_never_ends_says_so(fake_llm, make):
    fake_llm.enqueue(*[{"status": 429}] * 2)

    with pytest.raises(LLMError, match=r"^rate limited by the LLM server at .* 2 times"):
        make(max_retries=1).complete(MESSAGES, TOOLS)


def test_a_dropped_connection_is_retried(fake_llm, make, sleeps):
    fake_llm.enqueue({"disconnect": True}, {"content": "ok"})

    assert make(max_retries=1).complete(MESSAGES, TOOLS).text == "ok"
    assert len(fake_llm.chat_requests) == 2 and len(sleeps) == 1


def test_a_stream_cut_mid_answer_is_not_replayed(fake_llm, make, sleeps):
    fake_llm.enqueue({"content": "Tariffs rose because of the act.", "drop_after_chunks": 3},
                     {"content": "a second answer the user must not see glued on"})
    pieces: list[str] = []

    with pytest.raises(LLMError, match="^lost the connection to the LLM server at .* in the "
                                       "middle of an answer"):
        make(max_retries=3).complete(MESSAGES, TOOLS, on_text=pieces.append)
    assert "".join(pieces) == "Tariffs rose"  # two 6-character pieces, then the cut
    assert len(fake_llm.chat_requests) == 1 and sleeps == []


def test_a_rejected_key_is_not_retried(make, sleeps):
    with FakeOpenAI(api_key="sk-right") as server:
        processor = OpenAIProcessor(server.model, server.url, "sk-wrong", max_retries=4,
                                    sleep=sleeps.append)
        with pytest.raises(LLMError) as caught:
            processor.complete(MESSAGES, TOOLS)
        processor.close()

    assert str(caught.value) == "the LLM server rejected the API key (401): check OPENAI_API_KEY"
    assert len(server.requests) == 1
    assert server.requests[0].headers["authorization"] == "Bearer sk-wrong"
    assert sleeps == []


def test_an_unknown_model_is_named(fake_llm, make, sleeps):
    fake_llm.enqueue({"status": 404})

    with pytest.raises(LLMError, match=r"has no model 'fake-model' \(404\): check --model"):
        make(max_retries=3).complete(MESSAGES, TOOLS)
    assert sleeps == []


def test_context_length_is_its_own_error(fake_llm, make, sleeps):
    fake_llm.enqueue(context_length_error(limit=8192, got=9000))

    with pytest.raises(ContextLengthExceeded, match="maximum context length is 8192"):
        make(max_retries=3).complete(MESSAGES, TOOLS)
    assert len(fake_llm.chat_requests) == 1 and sleeps == []


@pytest.mark.parametrize("error", [
    # vLLM
    {"message": "This model's maximum context length is 4096 tokens. However, you requested "
                "5000 tokens in the messages.", "type": "BadRequestError", "code": 400},
    # llama.cpp server
    {"message": "the request exceeds the available context size, try increasing it",
     "type": "exceed_context_size_error", "code": 400},
    # Ollama
    {"message": "prompt too long; exceeded max context length by 310 tokens", "type": "api_error"},
    # LiteLLM proxy in front of another provider
    {"message": "litellm.ContextWindowExceededError: prompt is too long: 210000 tokens > "
                "200000 maximum", "type": None},
])
def test_context_length_as_other_servers_phrase_it(fake_llm, make, error):
    fake_llm.enqueue({"status": 400, "error": error})

    with pytest.raises(ContextLengthExceeded):
        make().complete(MESSAGES, TOOLS)


def test_other_bad_requests_are_plain_llm_errors(fake_llm, make):
    fake_llm.enqueue({"status": 400, "error": {"message": "Invalid schema for function 'x'."}})

    with pytest.raises(LLMError, match=r"rejected the request \(400\): Invalid schema") as caught:
        make(max_retries=3).complete(MESSAGES, TOOLS)
    assert not isinstance(caught.value, ContextLengthExceeded)


@pytest.mark.parametrize("message", [
    "registry.ollama.ai/library/gemma:2b does not support tools",  # Ollama
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',  # vLLM
])
def test_a_model_without_tool_calling_is_named(fake_llm, make, message):
    fake_llm.enqueue({"status": 400, "error": {"message": message}})
    with pytest.raises(LLMError, match=r"cannot call tools \(400\).*docmem needs a model with tool calling"):
        make(max_retries=3).complete(MESSAGES, TOOLS)
    assert len(fake_llm.requests) == 1  # not retried


def test_connection_refused_says_cannot_connect(sleeps):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    processor = OpenAIProcessor("m", url, None, max_retries=2, backoff=0.01, sleep=sleeps.append)

    with pytest.raises(LLMError) as caught:
        processor.complete(MESSAGES, TOOLS)

    assert str(caught.value).startswith(f"cannot connect to the LLM server at {url} (3 times)")
    assert len(sleeps) == 2


def test_a_silent_server_times_out(sleeps):
    with FakeOpenAI(latency=5) as server:
        server.policy = lambda body: {"content": "too late"}
        processor = OpenAIProcessor(server.model, server.url, None, timeout=0.2, max_retries=4,
                                    deadline=30, sleep=sleeps.append)
        with pytest.raises(LLMError, match=r"sent nothing for 0.2 s \(2 times\); giving up: raise --timeout"):
            processor.complete(MESSAGES, TOOLS)
        processor.close()
        assert len(server.chat_requests) == 2 and len(sleeps) == 1


# -- configuration -----------------------------------------------------------------------


def test_nothing_configured_says_what_to_set(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(LLMNotConfigured) as no_model:
        from_settings(None, None, None)
    with pytest.raises(LLMNotConfigured) as no_endpoint:
        from_settings("gpt-4o-mini", None, None)
    with pytest.raises(LLMNotConfigured):
        OpenAIProcessor("gpt-4o-mini", None, None)

    assert str(no_model.value) == NO_MODEL == (
        "No LLM configured: pass --model (and --base-url http://localhost:11434/v1 for Ollama) "
        "or set DOCMEM_MODEL")
    assert str(no_endpoint.value) == NO_ENDPOINT == (
        "No LLM configured: set OPENAI_API_KEY, or --base-url http://localhost:11434/v1 for Ollama")


def test_configured_endpoints(monkeypatch, fake_llm):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    local = from_settings("llama3.1", "http://localhost:11434/v1", None)
    assert (local.where, local.client.api_key) == ("http://localhost:11434/v1", "not-needed")

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    cloud = from_settings("gpt-4o-mini", None, None)
    assert (cloud.where, cloud.client.api_key) == ("https://api.openai.com/v1", "sk-env")

    fake_llm.enqueue("hello")  # a base URL with a key from the environment sends that key
    with from_settings(fake_llm.model, fake_llm.url, None, max_retries=0) as processor:
        assert processor.complete(MESSAGES, []).text == "hello"
    assert fake_llm.requests[-1].headers["authorization"] == "Bearer sk-env"


def test_the_fake_serves_models_and_embeddings(fake_llm):
    client = openai.OpenAI(base_url=fake_llm.url, api_key="x", max_retries=0)
    try:
        assert [m.id for m in client.models.list()] == ["fake-model"]
        texts = ["tariff act of 1930", "1930: act of tariff", "monetary policy"]
        floats = client.embeddings.create(model="emb", input=texts, dimensions=32)
        packed = client.embeddings.create(model="emb", input=texts[0], encoding_format="base64")
    finally:
        client.close()

    vectors = [d.embedding for d in floats.data]
    assert [len(v) for v in vectors] == [32, 32, 32]
    same, other = (sum(a * b for a, b in zip(vectors[0], v)) for v in vectors[1:])
    assert same == pytest.approx(1.0) and other < 0.5
    decoded = struct.unpack("<64f", base64.b64decode(packed.data[0].embedding))
    assert sum(x * x for x in decoded) == pytest.approx(1.0, rel=1e-5)


# -- repairing arguments -----------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ('{"query": "tariffs", "page": 2}', {"query": "tariffs", "page": 2}),  # already strict
    ("", {}),  # no arguments at all
    ('```json\n{"query": "tariffs"}\n```', {"query": "tariffs"}),
    ('{"query": "tariffs", "page": 2,}', {"query": "tariffs", "page": 2}),
    ('{"ids": [1, 2, 3,], "q": "x"}', {"ids": [1, 2, 3], "q": "x"}),
    ("{'query': 'tariffs', 'page': 2}", {"query": "tariffs", "page": 2}),
    ("{'quote': 'he said \"no\"'}", {"quote": 'he said "no"'}),
    ('{"request_heartbeat": True, "page": None, "exact": False}',
     {"request_heartbeat": True, "page": None, "exact": False}),
    ('{"text": "True story, None of it false"}', {"text": "True story, None of it false"}),
    ('{"query": "tariffs", "page": 2', {"query": "tariffs", "page": 2}),
    ('{"filters": {"year": [1930, 1931', {"filters": {"year": [1930, 1931]}}),
    ('"{\\"query\\": \\"tariffs\\"}"', {"query": "tariffs"}),  # double-encoded
    ('{"text": "line one\nline two"}', {"text": "line one\nline two"}),
])
def test_repair_json_arguments(raw, expected):
    assert repair_json_arguments(raw) == expected


@pytest.mark.parametrize("raw", [
    "search for tariffs please",
    '{"query": "tariffs',  # cut off inside a string: nothing to close unambiguously
    "{'text': 'it's ambiguous'}",
    '["tariffs", 2]',  # JSON, but not an arguments object
    '{"query": "tariffs",',
])
def test_unrepairable_arguments_give_none(raw):
    assert repair_json_arguments(raw) is None
