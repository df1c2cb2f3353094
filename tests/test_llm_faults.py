"""What a misbehaving LLM server does to docmem (issue 9 items 12, 14, 15): the real ``openai``
client against the fake server on a real socket; each fault ends in one clear line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from docmem.llm import openai as llm_openai
from docmem.llm.openai import OpenAIProcessor
from docmem.protocols import ContextLengthExceeded, LLMError
from tests.agent_helpers import citing_server_policy
from tests.conftest import SAMPLE_DIR
from tests.fake_openai import FakeOpenAI

MESSAGES = [{"role": "system", "content": "You are docmem."}, {"role": "user", "content": "Why?"}]
TOOLS = [{"type": "function", "function": {"name": "answer", "description": "The answer.", "parameters": {
    "type": "object", "properties": {"text": {"type": "string", "description": "It."}}, "required": ["text"]}}}]
HTML = ("<!DOCTYPE html>\n<html><head><title>Open WebUI</title></head>"
        "<body><div id='app'>Loading…</div></body></html>")


@pytest.fixture(autouse=True)
def no_remembered_quirks(monkeypatch):
    monkeypatch.setattr(llm_openai, "_QUIRKS", {})


@pytest.fixture
def server():
    with FakeOpenAI(piece_chars=4) as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


def processor(server: FakeOpenAI, sleeps: list[float], **options: Any) -> OpenAIProcessor:
    options.setdefault("max_retries", 3)
    return OpenAIProcessor(server.model, server.url, None, sleep=sleeps.append, **options)


def one_line_error(server, sleeps, reply, **options) -> str:
    server.enqueue(reply)
    with processor(server, sleeps, **options) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert len(server.chat_requests) == 1 and sleeps == []  # a malformed reply is not retried
    return message


# -- 9.12: a 200 that is not a chat completion ----------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_an_html_page_says_to_check_the_base_url(server, sleeps, stream):
    message = one_line_error(server, sleeps, {"body": HTML}, stream=stream)
    assert message == (f"the LLM server at {server.url} answered with an HTML page ('Open WebUI'), not a chat "
                       "completion: is --base-url the API path (it usually ends in /v1)?")


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("body, says", [
    ({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]},
     "sent choices[0].message as null, not a message"),
    ({"choices": None}, "returned no choices"),
    ({"choices": []}, "returned no choices"),
    ({"choices": "ok"}, "sent 'choices' as a string ('ok'), not a list"),
    ({"choices": [{"message": {"content": {"text": 1}}}]}, "sent message content as an object"),
    ({"choices": [{"message": {"tool_calls": [{"function": None}]}}]}, "sent tool call 0 without a function name"),
    ([1, 2], "answered a list, not a chat completion object"),
    ("hello", "answered a string ('hello'), not a chat completion object"),
])
def test_a_malformed_completion_is_one_clear_line(server, sleeps, stream, body, says):
    """A JSON reply, also to a streamed request (some servers ignore ``stream``)."""
    message = one_line_error(server, sleeps, {"json": body}, stream=stream)
    assert message == f"the LLM server at {server.url} {says}"


def test_text_that_is_not_json_is_named(server, sleeps):
    message = one_line_error(server, sleeps, {"body": "upstream connect error", "content_type": "application/json"},
                             stream=False)
    assert message.endswith("answered with something that is not JSON ('upstream connect error'), not a chat "
                            "completion: is --base-url the API path (it usually ends in /v1)?")


@pytest.mark.parametrize("events, says", [
    (["data: {not json}\n\n"], "sent a stream chunk that is not JSON"),
    ([], "sent a stream with no chat completion chunks in it"),
    (['data: "hello"\n\n', "data: {\"choices\": null}\n\n"], "sent a stream with no chat completion chunks"),
    (['data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": '
      '{"arguments": "{}"}}]}}]}\n\n'], "streamed tool call 0 without a function name"),
])
def test_a_malformed_stream_is_one_clear_line(server, sleeps, events, says):
    message = one_line_error(server, sleeps, {"events": events})
    assert message.startswith(f"the LLM server at {server.url} {says}")


def test_json_labelled_html_is_still_read(server, sleeps):
    server.enqueue({"body": json.dumps({"choices": [{"message": {"content": "ok"}}]})})  # text/html
    with processor(server, sleeps, stream=False) as llm:
        assert llm.complete(MESSAGES, TOOLS).text == "ok"


def test_a_server_that_ignores_stream_still_answers(server, sleeps):
    server.enqueue({"json": {"choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "Forty-two."}}],
                             "usage": {"prompt_tokens": 30, "completion_tokens": 3}}})
    pieces: list[str] = []
    with processor(server, sleeps) as llm:
        result = llm.complete(MESSAGES, TOOLS, on_text=pieces.append)
    assert server.chat_requests[0]["stream"] is True
    assert (result.text, result.tokens_in, pieces) == ("Forty-two.", 30, ["Forty-two."])


def test_an_html_page_in_ask_leaves_the_session_intact(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "alice.txt").write_text((SAMPLE_DIR / "text" / "alice29.txt").read_text()[:20000])
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", str(root), "--embedder", "none"]).exit_code == 0
    with FakeOpenAI(model="m") as good, FakeOpenAI(model="m") as proxy:
        proxy.policy = lambda body: {"body": HTML}
        good.policy = citing_server_policy
        failed = runner.invoke(cli, ["ask", "Who is the White Rabbit?", "--model", "m", "--base-url", proxy.url,
                                     "--session", "s"])
        assert failed.exit_code == 1
        assert " ".join(failed.stderr.split()).endswith(  # one message (rich wraps it at 80 columns)
            f"Error: the LLM server at {proxy.url} answered with an HTML page ('Open WebUI'), not a chat "
            "completion: is --base-url the API path (it usually ends in /v1)?")
        again = runner.invoke(cli, ["ask", "What did Alice drink?", "--model", "m", "--base-url", good.url,
                                    "--session", "s", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["status"] == "answered"
    sent = good.chat_requests[0]["messages"]
    assert any(m["role"] == "user" and m["content"] == "Who is the White Rabbit?" for m in sent)  # kept


# -- 9.14: timeouts and the deadline -------------------------------------------------------


def test_a_slow_model_that_keeps_streaming_is_never_cut_off(server, sleeps):
    """Each piece comes 0.15 s after the last: 2.4 s in all, eight times the 0.3 s timeout."""
    answer = "Tariffs rose in 1930 because of the Smoot-Hawley Act, passed by Congress."
    server.enqueue({"content": answer, "chunk_delay": 0.15})
    started = time.monotonic()
    with processor(server, sleeps, timeout=0.3, deadline=0.6) as llm:
        result = llm.complete(MESSAGES, TOOLS)
    assert time.monotonic() - started > 2 * 0.6  # past the timeout and the deadline, not cut
    assert result.text == answer and len(server.chat_requests) == 1 and sleeps == []


def test_a_stream_that_stops_midway_is_not_replayed(server, sleeps):
    server.enqueue({"content": "Tariffs rose in 1930 because", "stall_after_chunks": 3})
    # 2 s, not 0.3: on a loaded machine the first chunks alone can take longer than 0.3 s to
    # arrive, which is a silent server (retried), not a stream that stopped midway.
    with processor(server, sleeps, timeout=2) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == (
        f"the LLM server at {server.url} stopped sending for 2 s in the middle of a reply; not retried (the same "
        "prompt would be generated again): raise --timeout if the server pauses that long")
    assert len(server.chat_requests) == 1 and sleeps == []


def test_a_deterministic_call_that_timed_out_unstreamed_is_not_retried(server, sleeps):
    server.enqueue({"hang": True})
    with processor(server, sleeps, timeout=0.3, stream=False) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert "did not answer within 0.3 s; not retried (a deterministic generation" in str(caught.value)
    assert len(server.chat_requests) == 1 and sleeps == []


def test_a_hung_server_is_retried_once_then_named(server, sleeps):
    server.policy = lambda body: {"hang": True}
    started = time.monotonic()
    with processor(server, sleeps, timeout=0.3, max_retries=4, deadline=60) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == (f"the LLM server at {server.url} sent nothing for 0.3 s (2 times); giving up: "
                                 "raise --timeout if it is only slow (a long prompt on a CPU)")
    assert len(server.chat_requests) == 2 and len(sleeps) == 1
    assert time.monotonic() - started < 2 * 0.3 + 1.5


def test_retries_end_at_the_deadline(server):
    """Retry-After 2 s each time, a 5 s deadline: three attempts, then the error says why."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    server.policy = lambda body: {"status": 503, "headers": {"retry-after": "2"}}
    llm = OpenAIProcessor(server.model, server.url, None, max_retries=10, deadline=5, sleep=sleep,
                          clock=lambda: now[0])
    with llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert len(server.chat_requests) == 3 and now[0] == 4.0
    assert str(caught.value).endswith("(the 5 s deadline for one call has passed)")
    assert "answered 503 Service Unavailable 3 times" in str(caught.value)


# -- 9.15: resets, and context length as a 500 ---------------------------------------------


def test_a_connection_reset_says_what_happened(server, sleeps):
    server.enqueue({"reset": True}, {"reset": True})
    with processor(server, sleeps, max_retries=1) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == (f"the LLM server at {server.url} reset the connection (2 times): it is running "
                                 "but dropped the request (did it crash or restart? its log says why)")
    assert "cannot connect" not in str(caught.value) and len(server.chat_requests) == 2


def test_a_reset_once_is_retried(server, sleeps):
    server.enqueue({"reset": True}, {"content": "ok"})
    with processor(server, sleeps) as llm:
        assert llm.complete(MESSAGES, TOOLS).text == "ok"
    assert len(server.chat_requests) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("message", [
    "the request exceeds the available context size, try increasing it",  # llama.cpp, as a 500 (older builds)
    "Context length exceeded: 9000 tokens > 8192",
    "input is too large: n_ctx = 4096, prompt has 5123 tokens",
])
def test_context_length_sent_as_a_500_is_recognised(server, sleeps, message):
    server.enqueue({"status": 500, "error": {"message": message, "type": "server_error"}})
    with processor(server, sleeps) as llm, pytest.raises(ContextLengthExceeded):
        llm.complete(MESSAGES, TOOLS)
    assert len(server.chat_requests) == 1 and sleeps == []


def test_a_plain_500_is_still_retried(server, sleeps):
    server.enqueue({"status": 500}, {"content": "ok"})
    with processor(server, sleeps) as llm:
        assert llm.complete(MESSAGES, TOOLS).text == "ok"
    assert len(server.chat_requests) == 2


def test_timeout_flag_and_config_reach_the_processor(tmp_path, docmem_home: Path):
    from docmem.agent.session import make_processor
    from docmem.cli.common import settings_from

    (docmem_home / "config.toml").write_text('timeout = 12.5\nmax_tokens = 300\nstream = false\n')
    seen: dict[str, Any] = {}

    @cli.command("probe-settings", hidden=True)
    @llm_openai_options
    def probe(**flags: Any) -> None:
        import click

        settings = settings_from(click.get_current_context(), model="m", base_url="http://127.0.0.1:9/v1")
        llm = make_processor(settings)
        seen.update(timeout=llm.timeout, deadline=llm.deadline, max_tokens=llm.max_tokens, stream=llm.stream,
                    tool_choice=llm.tool_choice)

    try:
        result = CliRunner().invoke(cli, ["probe-settings", "--timeout", "7", "--tool-choice", "auto"],
                                    catch_exceptions=False)
    finally:
        cli.commands.pop("probe-settings")
    assert result.exit_code == 0, result.output
    assert seen == {"timeout": 7.0, "deadline": 21.0, "max_tokens": 300, "stream": False, "tool_choice": "auto"}


def llm_openai_options(fn):  # type: ignore[no-untyped-def]
    from docmem.cli.ask_cmd import llm_options

    return llm_options(fn)


def test_a_proxy_error_page_is_named_by_its_title(server, sleeps):
    page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502</h1></center></body></html>"
    message = one_line_error(server, sleeps, {"status": 502, "body": page}, max_retries=0)
    assert message == f"LLM server at {server.url} answered 502 Bad Gateway 1 time; giving up: 502 Bad Gateway"


def test_tls_to_a_plain_http_server_is_named(server, sleeps):
    url = server.url.replace("http://", "https://")
    with OpenAIProcessor(server.model, url, None, max_retries=3, sleep=sleeps.append) as llm:
        with pytest.raises(LLMError) as caught:
            llm.complete(MESSAGES, TOOLS)
    assert str(caught.value).startswith(f"the TLS handshake with the LLM server at {url} failed: ")
    assert sleeps == []


def test_an_unknown_host_is_named(sleeps):
    url = "http://no-such-host.invalid:8080/v1"
    with OpenAIProcessor("m", url, None, max_retries=3, sleep=sleeps.append) as llm:
        with pytest.raises(LLMError) as caught:
            llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == f"cannot find the host of the LLM server at {url}: check --base-url"
    assert sleeps == []


def test_a_stream_that_ignores_max_tokens_is_stopped(sleeps):
    """A flowing stream is never cut by the timeout, but one far past the cap is a broken server."""
    with FakeOpenAI(piece_chars=1) as server:
        server.enqueue({"content": "la " * 400})  # 1,200 pieces for a cap of 10 tokens
        url = server.url
        with processor(server, sleeps, max_tokens=10) as llm, pytest.raises(LLMError) as caught:
            llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == (f"the LLM server at {url} kept streaming far past max_tokens=10 (it "
                                 "ignores the cap?); stopped after 337 pieces")
    assert len(server.chat_requests) == 1 and sleeps == []


@pytest.mark.parametrize("filler", [": keep-alive\n\n", 'data: {"choices": [{"index": 0, "delta": {}}]}\n\n'])
def test_a_stream_of_keep_alives_without_tokens_ends(server, sleeps, filler):
    """The socket never goes silent, so the read timeout alone would wait forever."""
    server.enqueue({"events": [filler] * 400, "chunk_delay": 0.05})  # 20 s of filler
    started = time.monotonic()
    with processor(server, sleeps, timeout=0.5) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == (f"the LLM server at {server.url} kept the stream open for 0.5 s without sending "
                                 "a token (only keep-alives or empty events); giving up")
    assert time.monotonic() - started < 3 and len(server.chat_requests) == 1


def test_a_stream_ended_before_its_finish_reason_is_not_an_answer(server, sleeps):
    """Seen: a server that sent "Hel" and closed had "Hel" taken as the whole reply."""
    cut = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": server.model,
           "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]}
    server.enqueue({"events": [f"data: {json.dumps(cut)}\n\n"]})
    with processor(server, sleeps) as llm, pytest.raises(LLMError) as caught:
        llm.complete(MESSAGES, TOOLS)
    assert str(caught.value) == (f"the LLM server at {server.url} ended the stream before the reply was "
                                 "finished (no finish_reason): the server or a proxy cut it off")
