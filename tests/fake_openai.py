"""A fake OpenAI-compatible server on 127.0.0.1, for tests of the real ``openai`` client.

    with FakeOpenAI() as server:                       # or the ``fake_llm`` fixture
        server.enqueue({"tool_calls": [{"name": "answer", "arguments": {"text": "42"}}]},
                       {"content": "done"},
                       {"status": 429, "headers": {"retry-after": "1"}},
                       lambda body: {"content": f"you sent {len(body['messages'])} messages"})
        processor = OpenAIProcessor(server.model, server.url, None)
        ...
        server.requests[0].body["messages"]             # what the model was sent

Replies (a dict, a string meaning ``{"content": s}``, or a callable ``policy(body) -> reply``):

- ``{"content": "...", "tool_calls": [{"name", "arguments": dict | raw str, "id"?}]}``;
  ``"id": None`` omits the id (as some local servers do); optional ``finish_reason``;
  ``usage`` (a dict to send, or None to send no usage).
- ``{"status": 429, "error": {...}, "headers": {...}}``: an HTTP error with an
  OpenAI-shaped body ``{"error": {"message", "type", "param", "code"}}``; ``"body"`` (str)
  sends a raw non-JSON body instead (a proxy's HTML page).
- ``{"disconnect": True}``: close the connection without answering;
  ``"drop_after_chunks": n`` (streams) drops it after ``n`` chunks.
- Faults of real servers: ``{"reset": True}`` (a TCP RST, as a crashing server gives);
  ``{"hang": True}`` (read the request, never answer); ``"chunk_delay": s`` (a slow model:
  ``s`` seconds before each streamed event); ``"stall_after_chunks": n`` (silence after ``n``
  events); ``{"body": str}`` / ``{"json": value}`` (a 200, or ``status``, with that body as
  given, e.g. a proxy's HTML page or ``"message": null``; ``content_type`` optional);
  ``"events": [raw SSE text]`` (a malformed stream).
- ``"timings"`` / ``"tokens_cached"``: llama.cpp's extra reply fields (cached prompt tokens),
  on the response or on the stream's last chunk. ``FakeOpenAI(prompt_cache=True)`` reports
  ``usage.prompt_tokens_details.cached_tokens``: the prefix shared with the previous prompt.

``server.policy`` answers when the queue is empty. Responses mimic real ones: ids
``chatcmpl-...``, ``finish_reason``, arguments as a JSON string, usage; streams are SSE over
chunked HTTP/1.1 with tool-call deltas that carry ``index``, arguments in several pieces,
a usage chunk when ``stream_options.include_usage`` is set, and ``data: [DONE]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

Reply = dict[str, Any] | str | Callable[[dict[str, Any]], Any]

ERROR_DEFAULTS: dict[int, dict[str, Any]] = {
    400: {"message": "Invalid request.", "type": "invalid_request_error", "code": None},
    401: {"message": "Incorrect API key provided: sk-wrong. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.",
          "type": "invalid_request_error", "code": "invalid_api_key"},
    403: {"message": "You are not allowed to sample from this model.",
          "type": "invalid_request_error", "code": None},
    404: {"message": "The model `{model}` does not exist or you do not have access to it.",
          "type": "invalid_request_error", "code": "model_not_found"},
    429: {"message": "Rate limit reached for requests per min (RPM): Limit 3, Used 3, "
                     "Requested 1. Please try again in 20s.",
          "type": "requests", "code": "rate_limit_exceeded"},
    500: {"message": "The server had an error while processing your request. Sorry about that!",
          "type": "server_error", "code": None},
    503: {"message": "The engine is currently overloaded, please try again later",
          "type": "server_error", "code": None},
}


def context_length_error(limit: int = 8192, got: int = 9000) -> dict[str, Any]:
    """The 400 OpenAI sends when the prompt does not fit the model's window."""
    return {"status": 400, "error": {
        "message": f"This model's maximum context length is {limit} tokens. However, your "
                   f"messages resulted in {got} tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


def estimate_tokens(value: Any) -> int:
    """A crude count (JSON length / 4), as good as the fake needs."""
    text = value if isinstance(value, str) else json.dumps(value)
    return max(1, len(text) // 4) if text else 0


def fake_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector: hashed bag of words (texts sharing words are close)."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        h = int.from_bytes(digest, "little")
        vector[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeOpenAI:
    """The server; start it with ``with`` (or ``start()``/``stop()``)."""

    def __init__(self, *, model: str = "fake-model", latency: float = 0.0,
                 embedding_dim: int = 64, piece_chars: int = 6,
                 api_key: str | None = None, port: int = 0, prompt_cache: bool = False) -> None:
        self.model = model
        self.bind_port = port  # 0: any free port
        self.latency = latency  # seconds before each answer (waits on an Event, no spinning)
        self.embedding_dim = embedding_dim
        self.piece_chars = piece_chars  # size of streamed content and argument pieces
        self.api_key = api_key  # when set, other bearer tokens get a 401
        # Report cached prompt tokens as llama.cpp would: the prefix shared with the last
        # prompt, rendered as chat templates do (system message, tools, then the rest).
        self.prompt_cache = prompt_cache
        self._last_prompt = ""
        self.policy: Callable[[dict[str, Any]], Any] | None = None
        self.requests: list[Recorded] = []
        self.streamed: list[tuple[int, int]] = []  # per stream: (events sent, events it had)
        self._streamed_cv = threading.Condition()
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", self.bind_port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-openai")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "FakeOpenAI is not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The base URL to give the client (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting and inspection --------------------------------------------------------

    def enqueue(self, *replies: Reply) -> FakeOpenAI:
        with self._lock:
            self._queue.extend(replies)
        return self

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The bodies of every POST /v1/chat/completions, in order."""
        with self._lock:
            return [r.body for r in self.requests
                    if r.method == "POST" and r.path.endswith("/chat/completions")]

    def _streamed_one(self, sent: int, had: int) -> None:
        with self._streamed_cv:
            self.streamed.append((sent, had))
            self._streamed_cv.notify_all()

    def wait_streamed(self, count: int, timeout: float = 10.0) -> list[tuple[int, int]]:
        """``streamed`` once ``count`` streams have ended (sent whole, or closed by the client)."""
        with self._streamed_cv:
            self._streamed_cv.wait_for(lambda: len(self.streamed) >= count, timeout)
            return list(self.streamed)

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _next_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            reply: Reply | None = self._queue.popleft() if self._queue else None
        if reply is None:
            reply = self.policy
        if reply is None:
            n = len(self.chat_requests)
            return {"status": 400, "error": {
                "message": f"FakeOpenAI has no scripted reply for chat request #{n}",
                "type": "fake_script_exhausted", "code": None}}
        if callable(reply):
            reply = reply(body)
        if isinstance(reply, str):
            reply = {"content": reply}
        return reply

    def _cached_tokens(self, body: dict[str, Any]) -> int:
        messages = body.get("messages") or []
        prompt = json.dumps([messages[:1], body.get("tools"), messages[1:]])
        with self._lock:
            last, self._last_prompt = self._last_prompt, prompt
        shared = next((i for i, (a, b) in enumerate(zip(prompt, last)) if a != b), min(len(prompt), len(last)))
        return estimate_tokens(prompt[:shared]) if shared else 0

    def _wait_latency(self) -> bool:
        """Wait ``latency`` seconds; False when the server stopped meanwhile (do not answer)."""
        if self.latency > 0:
            self._stopping.wait(self.latency)
        return not self._stopping.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away (it timed out, or the test is over), as with real servers
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive replies would otherwise wait ~40 ms for the ACK
    fake: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # -- routing -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._record(None)
        if self._unauthorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            created = int(time.time())
            self._json(200, {"object": "list", "data": [
                {"id": self.fake.model, "object": "model", "created": created,
                 "owned_by": "fake-openai"}]})
        else:
            self._error(404, {"message": f"Invalid URL (GET {self.path})",
                              "type": "invalid_request_error"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(body)
        if self._unauthorized():
            return
        if body is None or not isinstance(body, dict):
            self._error(400, {"message": "We could not parse the JSON body of your request.",
                              "type": "invalid_request_error"})
        elif self.path.rstrip("/") == "/v1/chat/completions":
            self._chat(body)
        elif self.path.rstrip("/") == "/v1/embeddings":
            self._embeddings(body)
        else:
            self._error(404, {"message": f"Invalid URL (POST {self.path})",
                              "type": "invalid_request_error"})

    def _record(self, body: Any) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake._record(Recorded(self.command, self.path, headers, body))

    def _unauthorized(self) -> bool:
        if self.fake.api_key is None:
            return False
        if self.headers.get("authorization") == f"Bearer {self.fake.api_key}":
            return False
        self._error(401, dict(ERROR_DEFAULTS[401]))
        return True

    # -- chat completions ----------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        reply = self.fake._next_reply(body)
        if not self.fake._wait_latency() or reply.get("disconnect"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # the client sees a dropped connection
            return
        if reply.get("reset"):  # SO_LINGER 0: close() sends a TCP RST, as a crashing server does
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if reply.get("hang"):  # accept the request, then never answer (until the server stops)
            self.fake._stopping.wait()
            self.close_connection = True
            return
        if "body" in reply or "json" in reply:
            self._raw(reply)
            return
        if "status" in reply and reply["status"] != 200:
            self._scripted_error(reply, body)
            return
        model = body.get("model", self.fake.model)
        content = reply.get("content")
        calls = [self._tool_call(n, spec) for n, spec in enumerate(reply.get("tool_calls") or [])]
        finish = reply.get("finish_reason") or ("tool_calls" if calls else "stop")
        prompt_tokens = estimate_tokens({"messages": body.get("messages"),
                                         "tools": body.get("tools")})
        completion_tokens = estimate_tokens((content or "") + "".join(
            c["function"]["name"] + c["function"]["arguments"] for c in calls))
        usage: dict[str, Any] | None = reply.get("usage", {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens})
        if self.fake.prompt_cache and "usage" not in reply:
            usage = {**usage, "prompt_tokens_details": {"cached_tokens": self.fake._cached_tokens(body)}}
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        extras = {k: reply[k] for k in ("timings", "tokens_cached") if k in reply}  # llama.cpp's
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = self._chunks(ident, created, model, content, calls, finish,
                                  usage if include_usage else None, include_usage, extras)
            if "events" in reply:  # raw SSE data lines, for malformed streams
                chunks = iter(reply["events"])
            self._sse(chunks, reply.get("drop_after_chunks"), reply.get("chunk_delay", 0.0),
                      reply.get("stall_after_chunks"))
            return
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None,
                                   "annotations": []}
        if calls:
            message["tool_calls"] = calls
        response: dict[str, Any] = {
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "system_fingerprint": "fp_fake",
        }
        if usage is not None:
            response["usage"] = usage
        self._json(200, {**response, **extras})

    @staticmethod
    def _tool_call(n: int, spec: dict[str, Any]) -> dict[str, Any]:
        args = spec.get("arguments", {})
        call: dict[str, Any] = {
            "id": spec.get("id", f"call_{uuid.uuid4().hex[:24]}"),
            "type": "function",
            "function": {"name": spec["name"],
                         "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        if call["id"] is None:
            del call["id"]
        return call

    def _chunks(self, ident: str, created: int, model: str, content: str | None,
                calls: list[dict[str, Any]], finish: str, usage: dict[str, Any] | None,
                include_usage: bool, extras: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            out = {"id": ident, "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": "fp_fake",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish_reason}]}
            if include_usage:
                out["usage"] = None
            return out

        size = max(1, self.fake.piece_chars)
        yield chunk({"role": "assistant", "content": "" if not calls else None,
                     "refusal": None})
        for piece in _pieces(content or "", size):
            yield chunk({"content": piece})
        for index, call in enumerate(calls):
            first: dict[str, Any] = {"index": index, "type": "function",
                                     "function": {"name": call["function"]["name"],
                                                  "arguments": ""}}
            if "id" in call:
                first["id"] = call["id"]
            yield chunk({"tool_calls": [first]})
            for piece in _pieces(call["function"]["arguments"], size):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        if not include_usage:
            yield {**chunk({}, finish), **(extras or {})}  # llama.cpp's timings ride on the last chunk
            return
        yield chunk({}, finish)
        yield {"id": ident, "object": "chat.completion.chunk", "created": created,
               "model": model, "system_fingerprint": "fp_fake", "choices": [],
               "usage": usage, **(extras or {})}

    def _raw(self, reply: dict[str, Any]) -> None:
        """A body sent as given: ``"body"`` (text, default text/html) or ``"json"`` (any value,
        as application/json), with ``status`` (default 200) and ``content_type``."""
        status = int(reply.get("status", 200))
        headers = reply.get("headers") or {}
        if "json" in reply:
            data = json.dumps(reply["json"]).encode()
            kind = reply.get("content_type", "application/json")
        else:
            raw = reply["body"]
            data = raw.encode() if isinstance(raw, str) else raw
            kind = reply.get("content_type", "text/html; charset=utf-8")
        self._send(status, data, kind, headers)

    def _scripted_error(self, reply: dict[str, Any], body: dict[str, Any]) -> None:
        status = int(reply["status"])
        headers = reply.get("headers") or {}
        defaults = ERROR_DEFAULTS.get(status, ERROR_DEFAULTS[500 if status >= 500 else 400])
        error = {"message": None, "type": None, "param": None, "code": None,
                 **defaults, **(reply.get("error") or {})}
        if isinstance(error["message"], str):
            error["message"] = error["message"].replace("{model}", str(body.get("model")))
        self._error(status, error, headers)

    # -- embeddings ----------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> None:
        if not self.fake._wait_latency():
            self.close_connection = True
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not texts or not all(isinstance(t, str) for t in texts):
            self._error(400, {"message": "'input' must be a string or a list of strings",
                              "type": "invalid_request_error", "param": "input"})
            return
        dim = int(body.get("dimensions") or self.fake.embedding_dim)
        data = []
        for i, t in enumerate(texts):
            vector = fake_embedding(t, dim)
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{dim}f", *vector)
                embedding: Any = base64.b64encode(packed).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(estimate_tokens(t) for t in texts)
        self._json(200, {"object": "list", "data": data,
                         "model": body.get("model", self.fake.model),
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- wire ----------------------------------------------------------------------------

    def _error(self, status: int, error: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        full = {"message": None, "type": None, "param": None, "code": None, **error}
        self._json(status, {"error": full}, headers)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _sse(self, chunks: Iterator[Any], drop_after: int | None = None, delay: float = 0.0,
             stall_after: int | None = None) -> None:
        """Stream the chunks; ``delay`` seconds before each event after the first (a slow
        model), silence for good after ``stall_after`` events (a stuck one)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = [c if isinstance(c, str) else f"data: {json.dumps(c)}\n\n" for c in chunks]
        events.append("data: [DONE]\n\n")
        for n, event in enumerate(events):
            if drop_after is not None and n >= drop_after:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if stall_after is not None and n >= stall_after:
                self.fake._stopping.wait()
                self.close_connection = True
                return
            if delay and n and self.fake._stopping.wait(delay):
                return
            data = event.encode()
            try:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            except OSError:  # the client closed the stream (it stopped reading early)
                self.close_connection = True
                self.fake._streamed_one(n, len(events))
                return
        self.fake._streamed_one(len(events), len(events))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _pieces(text: str, size: int) -> list[str]:
    """``text`` in pieces of ``size`` characters, at least two when it has two characters."""
    if len(text) >= 2:
        size = min(size, math.ceil(len(text) / 2))
    return [text[i:i + size] for i in range(0, len(text), size)]


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    """A started ``FakeOpenAI``; stopped after the test."""
    with FakeOpenAI() as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    """Serve the tests' citing policy (search the question, answer quoting the top hit) so
    that ``docmem ask``, ``chat`` and ``--questions`` can be tried with no LLM at all:

        .venv/bin/python -m tests.fake_openai --port 8765 &
        docmem chat --corpus sample --model fake --base-url http://127.0.0.1:8765/v1

    ``--reads 3 --latency 2`` makes each answer a slow chain (search, read three hits, answer),
    long enough to watch it and to interrupt it with Esc.
    """
    import argparse
    import functools

    from tests.agent_helpers import citing_server_policy

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0] if main.__doc__ else None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds before each reply")
    parser.add_argument("--reads", type=int, default=0,
                        help="hits to open one by one before answering (a multi-step chain)")
    opts = parser.parse_args(argv)
    server = FakeOpenAI(model="fake", latency=opts.latency, port=opts.port)
    server.policy = functools.partial(citing_server_policy, reads=opts.reads)
    with server:
        print(f"fake OpenAI-compatible server (scripted citing policy) at {server.url}; Ctrl+C stops",
              flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
