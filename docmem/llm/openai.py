"""The one real processor: the OpenAI Chat Completions API with tools.

It covers OpenAI, Azure, Ollama, vLLM, llama.cpp's server, LM Studio and LiteLLM. This is
the only module of the agent that imports ``openai``. The client is built with
``max_retries=0``: retries happen here, bounded, logged and testable (``sleep`` is injected).
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

import openai

from docmem.llm.jsonfix import loads_lenient
from docmem.protocols import (
    Completion, ContextLengthExceeded, LLMError, LLMNotConfigured, Message, ToolCall,
)

__all__ = ["OpenAIProcessor", "extract_inline_tool_calls", "from_settings"]

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "not-needed"
NO_MODEL = ("No LLM configured: pass --model (and --base-url http://localhost:11434/v1 for "
            "Ollama) or set DOCMEM_MODEL")
NO_ENDPOINT = ("No LLM configured: set OPENAI_API_KEY, or --base-url "
               "http://localhost:11434/v1 for Ollama")

# How OpenAI, vLLM, llama.cpp, Ollama, LM Studio and LiteLLM say "the prompt is too long".
_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|maximum context|context (?:size|window)|max(?:imum)? model length"
    r"|too many tokens|prompt (?:is )?too long|exceed_context_size|context_window_exceeded"
    r"|ContextWindowExceeded|tokens to keep from the initial prompt",
    re.I,
)
_RETRY_STATUSES = {408, 409, 429}


@dataclass(frozen=True)
class _Failure:
    error: LLMError
    retryable: bool
    retry_after: float | None = None


class OpenAIProcessor:
    """``Processor`` over any OpenAI-compatible Chat Completions endpoint."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, *,
                 timeout: float = 120, max_retries: int = 4, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 temperature: float | None = 0.0, parallel_tool_calls: bool | None = None,
                 max_delay: float = 60.0, rng: random.Random | None = None) -> None:
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_delay = max_delay
        self.sleep = sleep
        self.temperature = temperature
        self.parallel_tool_calls = parallel_tool_calls
        self._rng = rng or random.Random()
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:  # never fall back silently to a cloud service
                raise LLMNotConfigured(NO_ENDPOINT)
            api_key = PLACEHOLDER_KEY  # local servers ignore it; the client insists on one
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout,
                                    max_retries=0)
        self.where = str(self.client.base_url).rstrip("/")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> OpenAIProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the call, with retries ----------------------------------------------------------

    def complete(self, messages: list[Message], tools: list[dict[str, Any]],
                 on_text: Callable[[str], None] | None = None) -> Completion:
        request = self._request(messages, tools, stream=on_text is not None)
        attempt = 0
        while True:
            attempt += 1
            streamed: list[str] = []
            try:
                if on_text is None:
                    completion = self._complete_once(request)
                else:
                    completion = self._stream_once(request, on_text, streamed)
            except openai.APIError as exc:
                failure = self._failure(exc, attempt)
                if streamed and failure.retryable:  # the user saw part of an answer
                    raise LLMError(f"lost the connection to the LLM server at {self.where} "
                                   f"in the middle of an answer: {_one_line(exc)}") from None
                if not failure.retryable or attempt > self.max_retries:
                    raise failure.error from exc
                delay = self._delay(attempt, failure.retry_after)
                log.warning("LLM call failed (%s); retry %d of %d in %.1f s",
                            _one_line(exc), attempt, self.max_retries, delay)
                self.sleep(delay)
                continue
            return _recover_inline_calls(completion, tools)

    def _request(self, messages: list[Message], tools: list[dict[str, Any]],
                 stream: bool) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        if tools:  # servers reject tool_choice without tools (the summarizer sends none)
            request["tools"] = tools
            request["tool_choice"] = "auto"
            if self.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = self.parallel_tool_calls
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        return request

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        delay = self.backoff * 2 ** (attempt - 1)
        return min(delay, self.max_delay) + self._rng.uniform(0, 0.1 * self.backoff)

    # -- one attempt ---------------------------------------------------------------------

    def _complete_once(self, request: dict[str, Any]) -> Completion:
        response = self.client.chat.completions.create(**request)
        if not response.choices:
            raise LLMError(f"the LLM server at {self.where} returned no choices")
        choice = response.choices[0]
        message = choice.message
        calls = [(getattr(tc, "id", None), tc.function.name, tc.function.arguments)
                 for tc in (message.tool_calls or [])]
        tokens_in, tokens_out = _usage(response.usage)
        return Completion(text=message.content, tool_calls=_tool_calls(calls),
                          finish_reason=choice.finish_reason,
                          tokens_in=tokens_in, tokens_out=tokens_out)

    def _stream_once(self, request: dict[str, Any], on_text: Callable[[str], None],
                     streamed: list[str]) -> Completion:
        finish_reason = None
        tokens_in = tokens_out = 0
        slots: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        last_index = -1
        with self.client.chat.completions.create(**request) as stream:
            for chunk in stream:
                if getattr(chunk, "usage", None):
                    tokens_in, tokens_out = _usage(chunk.usage)
                for choice in chunk.choices or []:
                    if choice.index not in (0, None):
                        continue
                    delta = choice.delta
                    if delta is not None and delta.content:
                        streamed.append(delta.content)
                        on_text(delta.content)
                    for tc in (delta.tool_calls if delta is not None else None) or []:
                        index = tc.index
                        if index is None:  # some servers omit it: a new id opens a new call
                            fresh = tc.id and all(s[0] != tc.id for s in slots.values())
                            index = len(slots) if fresh or not slots else last_index
                        last_index = index
                        slot = slots.setdefault(index, [None, "", []])
                        if tc.id and not slot[0]:
                            slot[0] = tc.id
                        function = tc.function
                        if function is not None:
                            if function.name and not slot[1]:
                                slot[1] = function.name
                            if function.arguments:
                                slot[2].append(function.arguments
                                               if isinstance(function.arguments, str)
                                               else json.dumps(function.arguments))
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        calls = [(s[0], s[1], "".join(s[2])) for _, s in sorted(slots.items())]
        return Completion(text="".join(streamed) or None, tool_calls=_tool_calls(calls),
                          finish_reason=finish_reason, tokens_in=tokens_in, tokens_out=tokens_out)

    # -- errors --------------------------------------------------------------------------

    def _failure(self, exc: openai.APIError, attempt: int) -> _Failure:
        where, times = self.where, f"{attempt} time{'s' if attempt > 1 else ''}"
        if isinstance(exc, openai.APITimeoutError):
            return _Failure(LLMError(f"the LLM server at {where} did not answer within "
                                     f"{self.timeout:g} s ({times}); giving up"), True)
        if isinstance(exc, openai.APIConnectionError):
            return _Failure(LLMError(f"cannot connect to the LLM server at {where} ({times}): "
                                     "is it running? check --base-url"), True)
        detail = _server_message(exc)
        if not isinstance(exc, openai.APIStatusError):  # an error event in the middle of a stream
            if _is_context_length(exc):
                return _Failure(ContextLengthExceeded(f"the prompt is too long for {self.model}: "
                                                      f"{detail}"), False)
            return _Failure(LLMError(f"the LLM server at {where} failed mid-answer: {detail}"),
                            False)
        status = exc.status_code
        if status in (401, 403):
            return _Failure(LLMError(f"the LLM server rejected the API key ({status}): "
                                     "check OPENAI_API_KEY"), False)
        if status == 429:
            return _Failure(LLMError(f"rate limited by the LLM server at {where} (429, {times}); "
                                     f"giving up: {detail}"), True, _retry_after(exc.response))
        if status >= 500 or status in _RETRY_STATUSES:
            phrase = _phrase(status)
            return _Failure(LLMError(f"LLM server at {where} answered {status} {phrase} "
                                     f"{times}; giving up: {detail}"), True,
                            _retry_after(exc.response))
        if status == 404:
            return _Failure(LLMError(f"the LLM server at {where} has no model '{self.model}' "
                                     f"(404): check --model, and that --base-url ends in /v1: "
                                     f"{detail}"), False)
        if _is_context_length(exc):
            return _Failure(ContextLengthExceeded(f"the prompt is too long for {self.model} "
                                                  f"({status}): {detail}"), False)
        if any(phrase in detail.lower() for phrase in _NO_TOOLS):
            return _Failure(LLMError(f"the model {self.model} at {where} cannot call tools ({status}): "
                                     f"{detail}; docmem needs a model with tool calling (for example "
                                     "llama3.1 or qwen2.5 on Ollama; vLLM needs --enable-auto-tool-choice)"),
                            False)
        return _Failure(LLMError(f"the LLM server at {where} rejected the request ({status}): "
                                 f"{detail}"), False)


# How servers say a model or deployment cannot do tool calls (Ollama, vLLM, llama.cpp, LM Studio).
_NO_TOOLS = ("support tools", "tool choice", "tool_choice", "tool calling", "tool-call", "tools are not")


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


# -- inline tool calls (weak tool support in llama.cpp / Ollama models) -------------------

_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_FENCED = re.compile(r"```[\w-]*[ \t]*\n?(.*?)```", re.S)
_MARKERS = re.compile(r"\[TOOL_CALLS\]|<\|python_tag\|>|</?tool_call>")


def extract_inline_tool_calls(text: str | None, tool_names: list[str] | set[str]
                              ) -> list[ToolCall]:
    """Tool calls a model wrote as JSON in its text, when the JSON names a known tool.

    Recognized: ``{"name": ..., "arguments"|"parameters": {...}}`` (or a list of them, or
    ``{"function": {...}}``), bare, in ```json fences, or in ``<tool_call>`` tags. Ids are
    ``call_0``, ``call_1``, ...; arguments are kept as JSON text.
    """
    return _find_inline_calls(text or "", set(tool_names))[0]


def _find_inline_calls(text: str, names: set[str]) -> tuple[list[ToolCall], str]:
    found: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    for pattern in (_TAGGED, _FENCED):
        for match in pattern.finditer(text):
            try:
                value = loads_lenient(match.group(1).strip())
            except ValueError:
                continue
            calls = _as_calls(value, names)
            if calls:
                found += calls
                spans.append(match.span())
        if found:
            break
    if not found:  # bare JSON in prose: strict JSON only, outermost objects only
        decoder, i = json.JSONDecoder(), 0
        while (i := _next_open(text, i)) >= 0:
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            calls = _as_calls(value, names)
            if calls:
                found += calls
                spans.append((i, end))
            i = end
    if not found:
        return [], text
    rest, last = [], 0
    for start, end in spans:
        rest.append(text[last:start])
        last = end
    rest.append(text[last:])
    remainder = _MARKERS.sub("", "".join(rest)).strip()
    calls = [ToolCall(id=f"call_{n}", name=name, arguments=args)
             for n, (name, args) in enumerate(found)]
    return calls, remainder


def _next_open(text: str, start: int) -> int:
    hits = [p for p in (text.find("{", start), text.find("[", start)) if p >= 0]
    return min(hits) if hits else -1


def _as_calls(value: Any, names: set[str]) -> list[tuple[str, str]]:
    """[(name, arguments JSON)] if ``value`` is one call or a list of calls, else []."""
    if isinstance(value, list):
        calls = [_as_call(item, names) for item in value]
        return calls if calls and all(calls) else []  # type: ignore[return-value]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        return _as_calls(value["tool_calls"], names)
    call = _as_call(value, names)
    return [call] if call else []


def _as_call(value: Any, names: set[str]) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    args = value.get("arguments", value.get("parameters"))
    if args is None:
        if set(value) - {"name", "type", "id"}:
            return None
        args = {}
    if isinstance(args, str):
        return name, args
    if isinstance(args, dict):
        return name, json.dumps(args, ensure_ascii=False)
    return None


# -- helpers -------------------------------------------------------------------------------


def _tool_calls(calls: list[tuple[str | None, str, Any]]) -> list[ToolCall]:
    """ToolCalls with ids made up where the server sent none (or duplicates)."""
    out: list[ToolCall] = []
    seen: set[str] = set()
    for n, (call_id, name, arguments) in enumerate(calls):
        if not call_id or call_id in seen:
            call_id = f"call_{n}"
        seen.add(call_id)
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):  # some servers send an object, not JSON text
            arguments = json.dumps(arguments, ensure_ascii=False)
        out.append(ToolCall(id=call_id, name=name or "", arguments=arguments))
    return out


def _recover_inline_calls(completion: Completion, tools: list[dict[str, Any]]) -> Completion:
    if completion.tool_calls or not completion.text or not tools:
        return completion
    names = {t.get("function", {}).get("name") for t in tools} - {None}
    calls, remainder = _find_inline_calls(completion.text, names)
    if not calls:
        return completion
    log.info("recovered %d tool call(s) the model wrote as text", len(calls))
    return Completion(text=remainder or None, tool_calls=calls,
                      finish_reason=completion.finish_reason,
                      tokens_in=completion.tokens_in, tokens_out=completion.tokens_out)


def _usage(usage: Any) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    return (getattr(usage, "prompt_tokens", None) or 0,
            getattr(usage, "completion_tokens", None) or 0)


def _server_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return _one_line(body["message"])
    if isinstance(body, str) and body.strip():
        return _one_line(body)
    return _one_line(exc.message)


def _is_context_length(exc: openai.APIError) -> bool:
    body = exc.body if isinstance(exc.body, dict) else {}
    if body.get("code") == "context_length_exceeded":
        return True
    text = " ".join(str(x) for x in (body.get("code"), body.get("type"), _server_message(exc),
                                     exc.message) if x)
    return bool(_CONTEXT_LENGTH.search(text))


def _retry_after(response: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    headers = getattr(response, "headers", None) or {}
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return float(ms) / 1000
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _one_line(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
