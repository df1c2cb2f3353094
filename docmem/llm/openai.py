"""The one real processor: the OpenAI Chat Completions API with tools.

It covers OpenAI, Azure, Ollama, vLLM, llama.cpp's server, LM Studio and LiteLLM. This is
the only module of the agent that imports ``openai``. The client is built with
``max_retries=0``: retries happen here, bounded, logged and testable (``sleep`` is injected).

What a local model needs (measured against llama.cpp's server with small models): a
``max_tokens`` on every call, ``tool_choice: "required"`` so that the reply is a call and
not prose about one, and streaming, so that ``timeout`` is the longest *silence* accepted:
a slow model that is producing tokens is never cut off. A call has a total ``deadline``
over its retries; a timeout is retried at most once, and never once tokens had arrived (a
deterministic generation would only be repeated). Parameters a server rejects
(``tool_choice: "required"``, ``max_tokens`` on OpenAI's reasoning models,
``stream_options``, a ``response_format`` schema) fall back once and are remembered per endpoint and model, in memory
and in ``quirks_path``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import openai

from docmem.llm.failures import Failure, classify, one_line, server_message
from docmem.llm.replies import Malformed, StreamReader, completion_from_body, not_a_completion
from docmem.llm.watchdog import Watchdog
from docmem.protocols import Completion, LLMError, LLMNotConfigured, Message

__all__ = ["OpenAIProcessor", "from_settings", "options_from"]

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "not-needed"
NO_MODEL = ("No LLM configured: pass --model (and --base-url http://localhost:11434/v1 for "
            "Ollama) or set DOCMEM_MODEL")
NO_ENDPOINT = ("No LLM configured: set OPENAI_API_KEY, or --base-url "
               "http://localhost:11434/v1 for Ollama")
TOOL_CHOICES = ("required", "auto")
CONNECT_TIMEOUT = 15.0  # a host that does not even accept the connection is not "slow"

# What servers rejected, per "base URL model": {"tool_choice": "auto", ...}; shared by every
# processor of this process (a batch runs several), and saved to ``quirks_path``.
_QUIRKS: dict[str, dict[str, str]] = {}
_QUIRKS_LOCK = threading.Lock()


class OpenAIProcessor:
    """``Processor`` over any OpenAI-compatible Chat Completions endpoint."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, *,
                 timeout: float = 120, deadline: float | None = None, max_retries: int = 4,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 temperature: float | None = 0.0, parallel_tool_calls: bool | None = None,
                 max_delay: float = 60.0, rng: random.Random | None = None,
                 max_tokens: int | None = None, tool_choice: str = "required", stream: bool = True,
                 quirks_path: Path | None = None) -> None:
        """``timeout``: seconds of silence accepted (connecting, before the first token, between
        tokens). ``deadline``: seconds for one call with all its retries (default 3 x timeout);
        a stream that is flowing is never cut by it. ``max_tokens``: the reply's cap, sent on
        every call (None sends none). ``stream``: stream every call, even with no ``on_text``."""
        if tool_choice not in TOOL_CHOICES:
            raise LLMNotConfigured(f"tool_choice must be one of {', '.join(TOOL_CHOICES)}, not {tool_choice!r}")
        if timeout <= 0:
            raise LLMNotConfigured(f"timeout must be a positive number of seconds, not {timeout:g}")
        self.model = model
        self.timeout = float(timeout)
        self.deadline = float(deadline) if deadline is not None else 3 * self.timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        self.temperature = temperature
        self.parallel_tool_calls = parallel_tool_calls
        self.max_tokens = max_tokens
        self.tool_choice = tool_choice
        self.stream = stream
        self.quirks_path = quirks_path
        self._rng = rng or random.Random()
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:  # never fall back silently to a cloud service
                raise LLMNotConfigured(NO_ENDPOINT)
            api_key = PLACEHOLDER_KEY  # local servers ignore it; the client insists on one
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=self.timeout,
                                    max_retries=0)
        self.where = str(self.client.base_url).rstrip("/")
        self._key = f"{self.where} {model}"
        _load_quirks(quirks_path)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> OpenAIProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def quirks(self) -> dict[str, str]:
        """What this endpoint rejected and docmem now sends instead."""
        with _QUIRKS_LOCK:
            return dict(_QUIRKS.get(self._key, {}))

    # -- the call, with retries ----------------------------------------------------------

    def complete(self, messages: list[Message], tools: list[dict[str, Any]],
                 on_text: Callable[[str], None] | None = None, *,
                 schema: dict[str, Any] | None = None) -> Completion:
        started = self.clock()
        attempt = timeouts = fallbacks = 0
        while True:
            attempt += 1
            request = self._request(messages, tools, stream=self.stream or on_text is not None, schema=schema)
            timeout = min(self.timeout, max(1.0, self.deadline - (self.clock() - started)))
            reader = StreamReader()
            try:
                completion = self._attempt(request, on_text, reader, timeout)
            except Malformed as exc:
                raise LLMError(f"the LLM server at {self.where} {exc}") from None
            except openai.APIError as exc:
                if fallbacks < 3 and self._fall_back(exc, request):
                    attempt, fallbacks = attempt - 1, fallbacks + 1
                    continue
                failure = classify(exc, where=self.where, model=self.model, timeout=timeout,
                                   attempt=attempt)
                timeouts += failure.timeout
                self._give_up_or_wait(failure, exc, reader, request, on_text, attempt, started,
                                      timeouts, timeout)
                continue
            return completion  # a call written as text is the agent's to judge (agent/textcalls)

    def _give_up_or_wait(self, failure: Failure, exc: openai.APIError, reader: StreamReader,
                         request: dict[str, Any], on_text: Callable[[str], None] | None,
                         attempt: int, started: float, timeouts: int, timeout: float) -> None:
        """Raise the failure's error, or sleep before the next attempt."""
        if failure.timeout and reader.tokens:
            raise LLMError(f"the LLM server at {self.where} stopped sending for {timeout:g} s in "
                           "the middle of a reply; not retried (the same prompt would be generated "
                           "again): raise --timeout if the server pauses that long") from None
        if reader.text and on_text is not None and failure.retryable:  # the user saw part of it
            raise LLMError(f"lost the connection to the LLM server at {self.where} in the middle "
                           f"of an answer: {one_line(failure.error)}") from None
        if failure.timeout and not request.get("stream") and self.temperature == 0:
            raise LLMError(f"the LLM server at {self.where} did not answer within {timeout:g} s; "
                           "not retried (a deterministic generation would take as long again): "
                           "raise --timeout, or let docmem stream (stream = true)") from None
        if not failure.retryable or attempt > self.max_retries or timeouts > 1:
            raise failure.error from exc
        delay = self._delay(attempt, failure.retry_after)
        if self.clock() - started + delay >= self.deadline:
            raise type(failure.error)(f"{failure.error} (the {self.deadline:g} s deadline for one call "
                                      "has passed)") from exc
        what = one_line(failure.error).split("; giving up")[0]  # not given up yet
        log.warning("LLM call failed (%s); retry %d of %d in %.1f s", what, attempt, self.max_retries, delay)
        self.sleep(delay)

    def _request(self, messages: list[Message], tools: list[dict[str, Any]],
                 stream: bool, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        quirks = self.quirks
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        constrained = schema is not None and quirks.get("response_format") != "off"
        if constrained:  # the reply is the call, as JSON text (agent.constrain)
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "docmem_call", "schema": schema}}
        if tools:  # servers reject tool_choice without tools (the summarizer sends none)
            request["tools"] = tools  # still sent: the chat template describes them
            # "auto" beside a schema: "required" would ask the server for a second grammar
            request["tool_choice"] = "auto" if constrained else quirks.get("tool_choice", self.tool_choice)
            if self.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = self.parallel_tool_calls
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if self.max_tokens is not None:
            request[quirks.get("max_tokens", "max_tokens")] = self.max_tokens
        if stream:
            request["stream"] = True
            if quirks.get("stream_options") != "off":
                request["stream_options"] = {"include_usage": True}
        return request

    def _fall_back(self, exc: openai.APIError, request: dict[str, Any]) -> bool:
        """Remember a parameter this endpoint rejects, and retry without it (True)."""
        if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
            return False
        detail = f"{server_message(exc)} {exc.body}".lower()
        if (request.get("tool_choice") == "required" and re.search(r"tool[_ ]choice", detail)
                and not re.search(r"\bauto\b", detail)):  # when "auto" is refused too, say so instead
            return self._remember("tool_choice", "auto", exc)
        if "max_tokens" in request and "max_completion_tokens" in detail:
            return self._remember("max_tokens", "max_completion_tokens", exc)
        if "stream_options" in request and "stream_options" in detail:
            return self._remember("stream_options", "off", exc)
        if "response_format" in request and re.search(r"response_format|json_schema|grammar|schema", detail):
            return self._remember("response_format", "off", exc)
        return False

    def _remember(self, name: str, value: str, exc: openai.APIError) -> bool:
        log.warning("the LLM server at %s rejected %s (%s); sending %s=%s to it from now on",
                    self.where, name, one_line(server_message(exc), 120), name, value)
        with _QUIRKS_LOCK:
            _QUIRKS.setdefault(self._key, {})[name] = value
            _save_quirks(self.quirks_path)
        return True

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        delay = self.backoff * 2 ** (attempt - 1)
        return min(delay, self.max_delay) + self._rng.uniform(0, 0.1 * self.backoff)

    # -- one attempt ---------------------------------------------------------------------

    def _read_stream(self, stream: Any, on_text: Callable[[str], None] | None, reader: StreamReader,
                     watchdog: Watchdog) -> None:
        with stream:
            chunks = iter(stream)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    reader.cut = reader.finish_reason is None  # the server ended it mid-reply
                    return
                except ValueError as exc:  # a data: line that is not JSON
                    raise Malformed(f"sent a stream chunk that is not JSON ({exc})") from None
                before = reader.progress
                text = reader.feed(chunk)
                if reader.progress != before:  # a token, the finish, the usage: not filler
                    watchdog.beat()
                if text and on_text is not None and on_text(text) is True:
                    return  # the caller has what it needs (a whole call): closing ends the generation
                if self.max_tokens and reader.tokens > 8 * self.max_tokens + 256:  # even char by char
                    raise Malformed(f"kept streaming far past max_tokens={self.max_tokens} (it "
                                    f"ignores the cap?); stopped after {reader.tokens} pieces")

    def _attempt(self, request: dict[str, Any], on_text: Callable[[str], None] | None,
                 reader: StreamReader, timeout: float) -> Completion:
        raw = self.client.chat.completions.with_raw_response.create(
            **request, timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)))
        content_type = raw.headers.get("content-type") or ""
        if request.get("stream") and "event-stream" in content_type:
            with Watchdog(raw.http_response, timeout) as watchdog:
                try:
                    self._read_stream(raw.parse(), on_text, reader, watchdog)
                except Exception:
                    if not watchdog.fired:
                        raise
            if watchdog.fired:  # whatever the cut socket raised, or a clean end after it
                raise Malformed(f"kept the stream open for {timeout:g} s without sending a token "
                                "(only keep-alives or empty events); giving up")
            return reader.completion()
        # Not a stream: a completion (some servers ignore "stream"), or not a completion at all.
        body = raw.http_response.read().decode("utf-8", "replace")
        if (reason := not_a_completion(content_type, body)) is not None:
            raise Malformed(reason)
        try:
            data = json.loads(body)
        except ValueError:
            raise Malformed(f"answered with something that is not JSON ({one_line(body, 80)!r}), "
                            "not a chat completion: is --base-url the API path (it usually ends "
                            "in /v1)?") from None
        completion = completion_from_body(data)
        if on_text is not None and completion.text:
            on_text(completion.text)
        return completion


def _load_quirks(path: Path | None) -> None:
    if path is None or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("ignoring %s: not readable JSON", path)
        return
    with _QUIRKS_LOCK:
        for key, quirks in saved.items() if isinstance(saved, dict) else ():
            if isinstance(quirks, dict):
                _QUIRKS.setdefault(key, {}).update({k: str(v) for k, v in quirks.items()})


def _save_quirks(path: Path | None) -> None:
    """Write every endpoint's quirks (caller holds the lock); 0600, atomically."""
    if path is None or not path.parent.is_dir():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_QUIRKS, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot save %s: %s", path, exc)


def options_from(settings: Any) -> dict[str, Any]:
    """``OpenAIProcessor`` options from ``docmem.config.Settings``."""
    return {"timeout": settings.timeout, "deadline": settings.deadline,
            "max_tokens": settings.reply_tokens, "tool_choice": settings.tool_choice,
            "stream": settings.stream, "quirks_path": settings.home / "llm-endpoints.json"}


def from_settings(model: str | None, base_url: str | None, api_key: str | None,
                  **options: Any) -> OpenAIProcessor:
    """An ``OpenAIProcessor``, or ``LLMNotConfigured`` saying what to set.

    ``base_url`` and ``api_key`` fall back to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``, as
    the ``openai`` client does. Without a key or a base URL nothing is called: docmem never
    defaults silently to a cloud service.
    """
    if not model:
        raise LLMNotConfigured(NO_MODEL)
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if not base_url and not api_key:
        raise LLMNotConfigured(NO_ENDPOINT)
    return OpenAIProcessor(model, base_url, api_key, **options)
