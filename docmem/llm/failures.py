"""What went wrong with one LLM call, in words a user can act on, and whether to retry.

The ``openai`` client raises one exception type per transport or HTTP outcome; real servers
add their own wording on top (llama.cpp, vLLM, Ollama, LM Studio, LiteLLM). This module
maps both to an ``LLMError`` (or ``ContextLengthExceeded``) with one line that says what
happened, and to a retry decision the processor applies.
"""

from __future__ import annotations

import email.utils
import errno
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import openai

from docmem.protocols import ContextLengthExceeded, LLMError

__all__ = ["Failure", "classify", "is_context_length", "one_line", "server_message"]

# How OpenAI, vLLM, llama.cpp (old and new), Ollama, LM Studio and LiteLLM say "the prompt
# is too long"; older llama.cpp servers send it as a 500.
_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|maximum context|context (?:size|window)|max(?:imum)? model length"
    r"|too many tokens|prompt (?:is )?too long|exceed_context_size|context_window_exceeded"
    r"|ContextWindowExceeded|tokens to keep from the initial prompt|\bn_ctx\b",
    re.I,
)
# How servers say a model or deployment cannot do tool calls (Ollama, vLLM, llama.cpp, LM Studio).
_NO_TOOLS = ("support tools", "tool choice", "tool_choice", "tool calling", "tool-call", "tools are not")
_RETRY_STATUSES = {408, 409, 429}


@dataclass(frozen=True)
class Failure:
    error: LLMError
    retryable: bool
    retry_after: float | None = None
    timeout: bool = False  # retried at most once, and never after tokens arrived


def classify(exc: openai.APIError, *, where: str, model: str, timeout: float, attempt: int) -> Failure:
    times = f"{attempt} time{'s' if attempt > 1 else ''}"
    if isinstance(exc, openai.APITimeoutError):
        return Failure(LLMError(f"the LLM server at {where} sent nothing for {timeout:g} s ({times}); giving up: "
                                "raise --timeout if it is only slow (a long prompt on a CPU)"), True, timeout=True)
    if isinstance(exc, openai.APIConnectionError):
        return _connection_failure(exc, where, times)
    detail = server_message(exc)
    if not isinstance(exc, openai.APIStatusError):  # an error event in the middle of a stream
        if is_context_length(exc):
            return Failure(ContextLengthExceeded(f"the prompt is too long for {model}: {detail}"), False)
        return Failure(LLMError(f"the LLM server at {where} failed mid-answer: {detail}"), False)
    status = exc.status_code
    if status in (401, 403):
        return Failure(LLMError(f"the LLM server rejected the API key ({status}): check OPENAI_API_KEY"), False)
    if status == 429:
        return Failure(LLMError(f"rate limited by the LLM server at {where} (429, {times}); giving up: {detail}"),
                       True, retry_after(exc.response))
    if status != 404 and is_context_length(exc):  # before the 5xx retries: old llama.cpp sends a 500
        return Failure(ContextLengthExceeded(f"the prompt is too long for {model} ({status}): {detail}"), False)
    if status >= 500 or status in _RETRY_STATUSES:
        return Failure(LLMError(f"LLM server at {where} answered {status} {_phrase(status)} {times}; "
                                f"giving up: {detail}"), True, retry_after(exc.response))
    if status == 404:
        return Failure(LLMError(f"the LLM server at {where} has no model '{model}' (404): check --model, and "
                                f"that --base-url ends in /v1: {detail}"), False)
    if any(phrase in detail.lower() for phrase in _NO_TOOLS):
        return Failure(LLMError(f"the model {model} at {where} cannot call tools ({status}): {detail}; docmem "
                                "needs a model with tool calling (for example llama3.1 or qwen2.5 on Ollama; "
                                "vLLM needs --enable-auto-tool-choice)"), False)
    return Failure(LLMError(f"the LLM server at {where} rejected the request ({status}): {detail}"), False)


def _connection_failure(exc: openai.APIConnectionError, where: str, times: str) -> Failure:
    """Refused (nothing listens) and reset (it listens, then drops us) need different advice."""
    causes = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 8:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    names = {type(c).__name__ for c in causes}
    codes = {getattr(c, "errno", None) for c in causes}
    text = " ".join(str(c) for c in causes).lower()
    if "ConnectionResetError" in names or errno.ECONNRESET in codes or "connection reset" in text:
        return Failure(LLMError(f"the LLM server at {where} reset the connection ({times}): it is running but "
                                "dropped the request (did it crash or restart? its log says why)"), True)
    if "RemoteProtocolError" in names or "disconnected without sending" in text:
        return Failure(LLMError(f"the LLM server at {where} closed the connection without answering ({times}): "
                                "it is running but dropped the request (its log says why)"), True)
    if any("SSL" in n or "Certificate" in n for n in names) or "certificate" in text:
        return Failure(LLMError(f"the TLS handshake with the LLM server at {where} failed: "
                                f"{one_line(causes[-1])} (an https URL for an http server, or a "
                                "certificate this machine does not trust?)"), False)
    if "gaierror" in names or "name or service not known" in text or "nodename nor servname" in text:
        return Failure(LLMError(f"cannot find the host of the LLM server at {where}: check --base-url"), False)
    if "ReadError" in names or "WriteError" in names:
        return Failure(LLMError(f"the connection to the LLM server at {where} broke ({times}): "
                                f"{one_line(causes[-1])}"), True)
    return Failure(LLMError(f"cannot connect to the LLM server at {where} ({times}): is it running? "
                            "check --base-url"), True)


def server_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return one_line(body["message"])
    if isinstance(body, str) and body.strip():
        return one_line(_untagged(body))
    return one_line(_untagged(exc.message))


_TAG = re.compile(r"<[^>]*>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def _untagged(text: str) -> str:
    """An HTML error page (a proxy's 502) as its title, or its text without the markup. Only
    its start is read: the message is cut to one line anyway, and both patterns scan on from
    every "<", so a long body of them would cost quadratic time."""
    if not text.lstrip().startswith("<"):
        return text
    text = text[:8000]
    title = _TITLE.search(text)
    return title.group(1) if title and title.group(1).strip() else _TAG.sub(" ", text)


def is_context_length(exc: openai.APIError) -> bool:
    body = exc.body if isinstance(exc.body, dict) else {}
    if body.get("code") == "context_length_exceeded":
        return True
    text = " ".join(str(x) for x in (body.get("code"), body.get("type"), server_message(exc), exc.message) if x)
    return bool(_CONTEXT_LENGTH.search(text))


def retry_after(response: Any) -> float | None:
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


def one_line(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
