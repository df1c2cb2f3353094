"""Repair the JSON arguments that weaker models write, where the repair is unambiguous.

The processor keeps the model's raw text; the agent calls ``repair_json_arguments`` and,
when it returns None, sends the parse error back to the model as a failed result.

Repairs, tried in order until one parses: markdown fences around the JSON; Python literals
(``True``/``False``/``None``) outside strings; single-quoted keys and strings (an inner
double quote is escaped, an inner apostrophe makes it ambiguous and fails); trailing commas
before ``}`` or ``]``; raw newlines inside strings; missing closing braces/brackets at the
very end (never when the text ends inside a string or after a comma); arguments
double-encoded as a JSON string.

``text_tool_calls`` reads a call a model wrote as text instead of as a tool call. It
accepts only a message that is *wholly* a call: one JSON call object (or a list of them),
bare, in one markdown fence, in ``<tool_call>`` tags or after a ``[TOOL_CALLS]`` /
``<|python_tag|>`` marker, with nothing else around it. JSON inside prose or quoted text
is never a call: a model quoting a passage that holds call-shaped JSON must not run it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["TextCall", "calls_in", "loads_lenient", "repair_json_arguments", "strip_fences", "strip_wrapping",
           "text_tool_calls"]

_FENCE = re.compile(r"^\s*```[\w-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*$", re.S)
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_CLOSERS = {"{": "}", "[": "]"}
_LEADING_MARKER = re.compile(r"^\s*(?:\[TOOL_CALLS\]|<\|python_tag\|>)\s*")
_TAG = re.compile(r"\s*<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id"}


@dataclass(frozen=True)
class TextCall:
    name: str
    arguments: str  # JSON text, as a real tool call carries it


def repair_json_arguments(raw: str) -> dict[str, Any] | None:
    """The arguments object, repaired if needed; None if ``raw`` is not one, even repaired.

    Empty text means no arguments (``{}``), as some servers send for parameterless calls.
    """
    if raw is None:
        return None
    if not raw.strip():
        return {}
    try:
        value = loads_lenient(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def loads_lenient(raw: str) -> Any:
    """``json.loads`` with the repairs above; raises ``ValueError`` when none makes it parse."""
    try:
        return _unwrap(json.loads(raw))
    except ValueError:
        pass
    text = strip_fences(raw.strip())
    fixed, stack, ends_open = _fix_tokens(text)
    candidates = [text, fixed]
    if stack and not ends_open and not fixed.rstrip().endswith((",", ":")):
        candidates.append(fixed + "".join(_CLOSERS[c] for c in reversed(stack)))
    for candidate in candidates:
        try:
            return _unwrap(json.loads(candidate, strict=False))
        except ValueError:
            continue
    raise ValueError("not JSON, even after repair")


def strip_fences(text: str) -> str:
    """The body of a markdown code fence (```json ... ```), or ``text`` unchanged."""
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def _unwrap(value: Any) -> Any:
    """Arguments double-encoded as a JSON string: decode the inner object or array."""
    for _ in range(2):
        if isinstance(value, str) and value.strip()[:1] in ("{", "["):
            try:
                value = loads_lenient(value)
            except ValueError:
                break
        else:
            break
    return value


def _fix_tokens(text: str) -> tuple[str, list[str], bool]:
    """One pass outside strings: Python literals, single quotes, trailing commas.

    Returns the fixed text, the brackets still open at the end, and whether the text
    ends inside an unterminated string (then nothing can be closed unambiguously).
    """
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return "".join(out) + text[i:], stack, True
            out.append(text[i:j + 1])
            i = j + 1
        elif c == "'":
            j, buf = i + 1, []
            while j < n and text[j] != "'":
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    buf.append("'" if text[j + 1] == "'" else text[j:j + 2])
                    j += 2
                    continue
                buf.append('\\"' if ch == '"' else ch)
                j += 1
            if j >= n:
                return "".join(out) + text[i:], stack, True
            out.append('"' + "".join(buf) + '"')
            i = j + 1
        elif c in "{[":
            stack.append(c)
            out.append(c)
            i += 1
        elif c in "}]":
            if stack:
                stack.pop()
            out.append(c)
            i += 1
        elif c == ",":
            k = i + 1
            while k < n and text[k].isspace():
                k += 1
            if not (k < n and text[k] in "}]"):
                out.append(c)
            i += 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(_PY_LITERALS.get(word, word))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out), stack, False


# -- calls written as text ------------------------------------------------------------------


def text_tool_calls(text: str | None) -> list[TextCall] | None:
    """The calls a message consists of, or None when it is not wholly calls.

    Names are not checked here: the agent runs known ones through the same validation as a
    real call and answers an unknown one (``search``) with the names it has.
    """
    body = _LEADING_MARKER.sub("", (text or "").strip(), count=1).strip()
    if not body:
        return None
    if body.startswith("<tool_call>"):
        pieces, end = [], 0
        for match in _TAG.finditer(body):
            if match.start() != end:
                return None
            pieces.append(match.group(1).strip())
            end = match.end()
        if body[end:].strip():
            return None
    else:
        fenced = strip_fences(body)
        if fenced is body and body.startswith("```"):  # no closing fence: a reply cut at max_tokens
            first_line, _, rest = body.partition("\n")
            if "```" in rest or not re.fullmatch(r"```[\w-]*\s*", first_line):
                return None  # text after the fence, or prose on its first line
            fenced = rest.strip()
        pieces = [fenced]
    calls: list[TextCall] = []
    for piece in pieces:
        if not piece.startswith(("{", "[")):
            return None
        try:
            value = loads_lenient(piece)
        except ValueError:
            return None
        found = calls_in(value)
        if not found:
            return None
        calls += found
    return calls


def strip_wrapping(text: str) -> str:
    """A text call without its marker, fence or tags: the JSON the model wrote."""
    body = _LEADING_MARKER.sub("", text.strip(), count=1).strip()
    body = re.sub(r"</?tool_call>", " ", body)
    return strip_fences(body).strip()


def calls_in(value: Any) -> list[TextCall]:
    """One call object, a list of them, or {"tool_calls": [...]}; [] if anything is not a call."""
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    calls = [_call_of(item) for item in items]
    if not calls or not all(calls):
        return []
    return calls  # type: ignore[return-value]


def _call_of(value: Any) -> TextCall | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict) and set(value) <= {"function", "type", "id"}:
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip() or set(value) - _CALL_KEYS:
        return None
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        return TextCall(name.strip(), args)
    if isinstance(args, dict):
        return TextCall(name.strip(), json.dumps(args, ensure_ascii=False))
    return None
