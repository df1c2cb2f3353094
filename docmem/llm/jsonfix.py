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
accepts only a message that is *wholly* calls: JSON call objects (or lists of them), bare
and one after another (one a line, as small models write them), in markdown fences, in
``<tool_call>`` tags or after a ``[TOOL_CALLS]`` / ``<|python_tag|>`` marker, with nothing
but whitespace around them. JSON inside prose or quoted text
is never a call: a model quoting a passage that holds call-shaped JSON must not run it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["TextCall", "calls_in", "calls_so_far", "loads_lenient", "repair_json_arguments", "strip_fences", "strip_wrapping",
           "text_tool_calls"]

# Fences and <tool_call> tags are taken apart by scanning, not by one pattern:
# "^\s*```[\w-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*$" backtracked through every split of a run of
# spaces (a reply of ``` and 20,000 spaces did not finish in 100 s), and a <tool_call> pattern
# tried every position of trailing whitespace (quadratic). Small models do loop on whitespace.
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_CLOSERS = {"{": "}", "[": "]"}
_LEADING_MARKER = re.compile(r"^\s*(?:\[TOOL_CALLS\]|<\|python_tag\|>)\s*")
_OPEN_TAG, _CLOSE_TAG = "<tool_call>", "</tool_call>"
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
    fenced = text.strip()
    if len(fenced) < 6 or not fenced.startswith("```") or not fenced.endswith("```"):
        return text
    opening = _FENCE_OPEN.match(fenced)  # ``` and its language tag: backticks end it before the closing fence
    assert opening is not None
    return fenced[opening.end():-3].strip()


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
    if body.startswith(_OPEN_TAG):
        pieces = _tagged(body)
        if pieces is None:
            return None
    else:
        pieces = _fenced_blocks(body) if body.startswith("```") else [body]
        if pieces is None:
            return None
    calls: list[TextCall] = []
    for n, piece in enumerate(pieces):
        found = _calls_of_piece(piece, last=n == len(pieces) - 1, after=bool(calls))
        if not found:
            return None
        calls += found
    return calls


def _tagged(body: str) -> list[str] | None:
    """The bodies of <tool_call>...</tool_call> one after another, whitespace between them (the
    last may be unclosed: cut off by max_tokens); None if anything else stands between them."""
    pieces, rest = [], body
    while rest:
        if not rest.startswith(_OPEN_TAG):
            return None
        rest = rest[len(_OPEN_TAG):]
        close = rest.find(_CLOSE_TAG)
        if close < 0:
            pieces.append(rest.strip())
            break
        pieces.append(rest[:close].strip())
        rest = rest[close + len(_CLOSE_TAG):].lstrip()
    return pieces


def _calls_of_piece(piece: str, *, last: bool, after: bool) -> list[TextCall]:
    """The calls of one fence (or bare body): one value, or several one after another (JSON
    lines); [] if anything else is there. The last value of the last piece may be cut off
    (max_tokens): repaired if it can be, else, after complete calls, kept as a call whose
    arguments are the cut text, so that it fails like a real call cut off there."""
    split = _split_values(piece)
    if split is None:
        return []
    values, tail = split
    calls: list[TextCall] = []
    for value in values:
        try:
            found = calls_in(loads_lenient(value))
        except ValueError:
            return []
        if not found:
            return []
        calls += found
    if tail is None:
        return calls
    if not last:
        return []
    try:
        found = calls_in(loads_lenient(tail))
    except ValueError:
        found = []
    if found:
        return calls + found
    cut = _CUT_CALL.match(tail)
    if not (after or calls) or cut is None:
        return []
    return calls + [TextCall(cut.group(1), tail[cut.end():])]


_CUT_CALL = re.compile(r"""\{\s*["']name["']\s*:\s*["']([\w.-]+)["']\s*,\s*["'](?:arguments|parameters)["']\s*:\s*""")
_FENCE_OPEN = re.compile(r"```[\w-]*[ \t]*\n?")


def _fenced_blocks(body: str) -> list[str] | None:
    """The bodies of one or more fences with only whitespace between them; the last one may be
    unclosed (cut at max_tokens). None if anything but a fence is there."""
    blocks: list[str] = []
    i = 0
    while True:
        while i < len(body) and body[i].isspace():
            i += 1
        if i == len(body):
            return blocks
        opening = _FENCE_OPEN.match(body, i)
        if opening is None:
            return None  # text after a fence
        close = body.find("```", opening.end())
        if close < 0:
            blocks.append(body[opening.end():].strip())
            return blocks
        blocks.append(body[opening.end():close].strip())
        i = close + 3


def _split_values(text: str) -> tuple[list[str], str | None] | None:
    """Top-level ``{...}`` / ``[...]`` values one after another, with only whitespace between
    them, and the unterminated rest (a value cut off), if any; None if anything else is there."""
    values: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            return values, None
        if text[i] not in "{[":
            return None
        end = _value_end(text, i)
        if end is None:
            return values, text[i:]
        values.append(text[i:end])
        i = end


def _value_end(text: str, i: int) -> int | None:
    """The index just after the bracketed value opening at ``i``; None if it is unterminated.
    Brackets inside strings (double- or single-quoted) are not counted."""
    depth, j, n = 0, i, len(text)
    while j < n:
        c = text[j]
        if c in "\"'":
            j += 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return None


def calls_so_far(text: str) -> tuple[list[TextCall], int]:
    """The whole calls a reply still being streamed opens with, and where they end in ``text``:
    closed ``<tool_call>`` tags, or balanced JSON values (bare or in one fence, closed or not).
    The agent stops reading once one is there (a small model rambles on to max_tokens), and
    keeps the text up to that end. ([], 0) while the text does not open with a whole call."""
    stripped = _LEADING_MARKER.sub("", text.lstrip(), count=1).lstrip()
    offset = len(text) - len(stripped)
    spans: list[tuple[str, int]] = []
    if stripped.startswith("<tool_call>"):
        at = 0
        for match in re.finditer(r"\s*<tool_call>(.*?)</tool_call>", stripped, re.S):
            if match.start() != at:
                break
            spans.append((match.group(1).strip(), match.end()))
            at = match.end()
    else:
        body, start = stripped, 0
        if stripped.startswith("```"):
            opening = _FENCE_OPEN.match(stripped)
            start = opening.end() if opening else len(stripped)
            body = stripped[start:].split("```", 1)[0]
        spans = [(value, start + end) for value, end in _leading_values(body)]
    calls: list[TextCall] = []
    end = 0
    for value, value_end in spans:
        try:
            found = calls_in(loads_lenient(value))
        except ValueError:
            break
        if not found:
            break
        calls += found
        end = value_end
    return calls, (offset + end if calls else 0)


def _leading_values(text: str) -> list[tuple[str, int]]:
    """The whole ``{...}`` / ``[...]`` values ``text`` opens with (whitespace between), each with
    its end; what follows them (a value still arriving, or prose) is not looked at."""
    out: list[tuple[str, int]] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        end = _value_end(text, i) if text[i:i + 1] in ("{", "[") else None
        if end is None:
            return out
        out.append((text[i:end], end))
        i = end


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
