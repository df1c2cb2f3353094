"""Reading a server's reply, whatever it sent: a chat completion, a stream of chunks, or not.

The ``openai`` client does not validate replies: a proxy's HTML page comes back as a ``str``,
``"message": null`` as ``None``. Everything here reads fields defensively (dicts or the
client's objects alike) and raises ``Malformed`` with what was wrong, which the processor
turns into one line naming the server. Cached prompt tokens are read from wherever servers
put them: ``usage.prompt_tokens_details.cached_tokens`` (OpenAI, vLLM, llama.cpp),
``timings.cache_n`` (llama.cpp) or ``tokens_cached`` (older llama.cpp).
"""

from __future__ import annotations

import json
import re
from typing import Any

from docmem.protocols import Completion, ToolCall

__all__ = ["Malformed", "StreamReader", "completion_from_body", "not_a_completion"]


class Malformed(Exception):
    """The reply is not a chat completion; the message says how."""


def get(value: Any, *path: str | int) -> Any:
    """``value.a.b[0]`` for dicts, lists and the client's objects; None where it is missing."""
    for key in path:
        if value is None:
            return None
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
        elif isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, (str, bytes, int, float, list)):
            return None
        else:
            value = getattr(value, key, None)
    return value


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def not_a_completion(content_type: str, text: str) -> str | None:
    """Why a body is no completion at all (an HTML page), or None. The body decides, not the
    content type: some proxies label JSON text/html."""
    head = text.lstrip()[:200].lower()
    if head.startswith("<") and ("html" in content_type.lower() or "<html" in head or "<!doctype" in head):
        title = _TITLE.search(text[:4000])
        named = f" ('{' '.join(title.group(1).split())[:60]}')" if title and title.group(1).strip() else ""
        return (f"answered with an HTML page{named}, not a chat completion: is --base-url the API path "
                "(it usually ends in /v1)?")
    return None


def completion_from_body(body: Any) -> Completion:
    """A ``Completion`` from the JSON of a non-streamed reply."""
    if not isinstance(body, dict):
        raise Malformed(f"answered {_kind(body)}, not a chat completion object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise Malformed("returned no choices" if choices in (None, []) else
                        f"sent 'choices' as {_kind(choices)}, not a list")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise Malformed(f"sent choices[0] as {_kind(choice)}")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise Malformed(f"sent choices[0].message as {_kind(message)}, not a message")
    calls = []
    raw_calls = message.get("tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        raise Malformed(f"sent tool_calls as {_kind(raw_calls)}, not a list")
    for n, call in enumerate(raw_calls or []):
        name = get(call, "function", "name")
        if not isinstance(name, str) or not name:
            raise Malformed(f"sent tool call {n} without a function name")
        calls.append((get(call, "id"), name, get(call, "function", "arguments")))
    tokens_in, tokens_out, cached = usage_of(body)
    return Completion(text=_text(message.get("content")), tool_calls=tool_calls(calls),
                      finish_reason=_str_or_none(choice.get("finish_reason")),
                      tokens_in=tokens_in, tokens_out=tokens_out, tokens_cached=cached)


class StreamReader:
    """Assembles streamed chunks (SSE ``data:`` objects) into one ``Completion``."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.chunks = 0  # chunks that looked like chat completion chunks
        self.tokens = 0  # deltas that carried anything (text or a call): the model is producing
        self.finish_reason: str | None = None
        self.usage = (0, 0, 0)
        self._slots: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        self._last = -1
        self.cut = False  # the stream ended with no finish_reason (not when docmem stopped reading)

    def feed(self, chunk: Any) -> str:
        """Take one chunk; returns its new text (for ``on_text``), possibly empty."""
        choices = get(chunk, "choices")
        if not isinstance(choices, list):
            if get(chunk, "usage") is None and get(chunk, "timings") is None:
                return ""  # a keep-alive or a vendor's extra event
            choices = []
        self.chunks += 1
        if get(chunk, "usage") is not None or get(chunk, "timings") is not None:
            self.usage = usage_of(chunk, self.usage)
        new = []
        for choice in choices:
            if get(choice, "index") not in (0, None):
                continue
            delta = get(choice, "delta")
            content = _text(get(delta, "content"))
            if content:
                new.append(content)
                self.tokens += 1
            for tc in get(delta, "tool_calls") or []:
                self.tokens += 1
                self._call_piece(tc)
            reason = get(choice, "finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
        self.text.extend(new)
        return "".join(new)

    @property
    def progress(self) -> tuple[Any, ...]:
        """Changes with every token, the finish reason and the usage; not with empty events."""
        return self.tokens, self.finish_reason, self.usage

    def _call_piece(self, tc: Any) -> None:
        index = get(tc, "index")
        call_id = get(tc, "id")
        if not isinstance(index, int):  # some servers omit it: a new id opens a new call
            fresh = call_id and all(s[0] != call_id for s in self._slots.values())
            index = len(self._slots) if fresh or not self._slots else self._last
        self._last = index
        slot = self._slots.setdefault(index, [None, "", []])
        if call_id and not slot[0]:
            slot[0] = call_id
        name, arguments = get(tc, "function", "name"), get(tc, "function", "arguments")
        if isinstance(name, str) and name and not slot[1]:
            slot[1] = name
        if arguments:
            slot[2].append(arguments if isinstance(arguments, str) else json.dumps(arguments))

    def completion(self) -> Completion:
        if not self.chunks:
            raise Malformed("sent a stream with no chat completion chunks in it")
        calls = [(s[0], s[1], "".join(s[2])) for _, s in sorted(self._slots.items())]
        for n, (_, name, _) in enumerate(calls):
            if not name:
                raise Malformed(f"streamed tool call {n} without a function name")
        if self.cut:  # a cut reply is no reply: "Hel" must not become the answer
            raise Malformed("ended the stream before the reply was finished (no finish_reason): "
                            "the server or a proxy cut it off")
        tokens_in, tokens_out, cached = self.usage
        return Completion(text="".join(self.text) or None, tool_calls=tool_calls(calls),
                          finish_reason=self.finish_reason, tokens_in=tokens_in, tokens_out=tokens_out,
                          tokens_cached=cached)


def usage_of(reply: Any, previous: tuple[int, int, int] = (0, 0, 0)) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt tokens) from a reply or a stream's usage chunk."""
    usage = get(reply, "usage")
    tokens_in = _count(get(usage, "prompt_tokens")) or previous[0]
    tokens_out = _count(get(usage, "completion_tokens")) or previous[1]
    cached = (_count(get(usage, "prompt_tokens_details", "cached_tokens"))
              or _count(get(reply, "timings", "cache_n")) or _count(get(reply, "tokens_cached"))
              or previous[2])
    return tokens_in, tokens_out, cached


def tool_calls(calls: list[tuple[Any, str, Any]]) -> list[ToolCall]:
    """ToolCalls with ids made up where the server sent none (or duplicates)."""
    out: list[ToolCall] = []
    seen: set[str] = set()
    for n, (call_id, name, arguments) in enumerate(calls):
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            call_id = f"call_{n}"
        seen.add(call_id)
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):  # some servers send an object, not JSON text
            arguments = json.dumps(arguments, ensure_ascii=False)
        out.append(ToolCall(id=call_id, name=name or "", arguments=arguments))
    return out


def _text(content: Any) -> str | None:
    """Content as text: a string, or the text parts of a list of parts (some servers)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [get(p, "text") for p in content]
        return "".join(p for p in parts if isinstance(p, str)) or None
    raise Malformed(f"sent message content as {_kind(content)}")


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({' '.join(value.split())[:60]!r})"
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), f"a {type(value).__name__}")
