"""Constrained replies: the next message as a JSON schema the server's sampler must follow.

A small model given the minimal tool set still loses most questions to the *form* of its
reply (bench/real_model_findings.md): prose before a call, made-up function names, schema
words copied in as values, a chunk id it never saw, a "quote" that is the question or the
last error message. ``tool_choice: "required"`` does not prevent any of it in llama.cpp (its
grammar lets free text come first). A ``response_format`` JSON schema does: llama.cpp,
vLLM, Ollama and LM Studio turn it into a grammar for the whole reply, from its first
token. The schema is made for each step from what the model has seen in this question:
``open_document`` takes only a chunk id it was shown, and an ``answer`` cites such a chunk
with a sentence of that chunk, so every citation it can write is verifiable. What it says
in ``text``, which chunk it picks and whether it abstains stay its own.

The schema only constrains sampling; the reply is still read, validated and verified like
any call written as text (``textcalls``), so a server that ignores it changes nothing.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from docmem.agent.tools import Tool

MODES = ("auto", "on", "off")
MAX_CHUNKS = 8  # the chunks seen most recently that an answer may cite
MAX_SENTENCES = 12  # quotable sentences per chunk
QUOTE_WORDS = 16  # a longer sentence is offered as its first words (still verbatim)
MIN_QUOTE_CHARS = 12
MAX_CITATIONS = 3

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n|\n(?=\s*[-*•\d])")


def active(mode: str, tool_set: str) -> bool:
    """``auto``: with the minimal tool set, the one small models get."""
    return mode == "on" or (mode == "auto" and tool_set == "minimal")


def quotes(text: str) -> list[str]:
    """Sentences of a chunk an answer may quote: whole sentences, or the first words of long
    ones, whitespace collapsed (verification normalises whitespace the same way)."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        words = piece.split()
        if len(words) < 3:
            continue
        quote = " ".join(words[:QUOTE_WORDS])
        if len(quote) >= MIN_QUOTE_CHARS and quote not in out:
            out.append(quote)
        if len(out) >= MAX_SENTENCES:
            break
    return out


def reply_schema(tools: Mapping[str, Tool], seen: Mapping[str, str], last: str | None = None,
                 searched_anew: bool = True) -> dict[str, Any]:
    """One JSON object ``{"name": ..., "arguments": {...}}`` calling one of ``tools``.

    ``seen``: chunk id -> text, in the order shown during this question. ``last``: the
    function of the call just made, which is not offered again (a 0.5B model, constrained,
    repeated docmem's first search word for word until the loop stopped it); a search is,
    when the last one showed nothing new (``searched_anew`` False)."""
    recent = list(seen.items())[-MAX_CHUNKS:]
    options = []
    for name, tool in tools.items():
        if name == last and name != "answer" and (name != "archival_search" or searched_anew):
            continue
        parameters = tool.schema()["function"]["parameters"]
        arguments = _strict(parameters)
        if name == "open_document":
            if not recent:
                continue  # nothing to open yet: search first
            # The chunk itself and what follows it (the default direction): a constrained 0.5B
            # wrote "next" every time, skipping the hit it meant to read. The chunks shown
            # become ids it can open, so it can still read on.
            arguments["properties"] = {"chunk_id": {"enum": [cid for cid, _ in recent]}}
        elif name == "answer":
            arguments = _answer(recent)
        options.append({"type": "object", "properties": {"name": {"const": name}, "arguments": arguments},
                        "required": ["name", "arguments"], "additionalProperties": False})
    return {"anyOf": options}


def _answer(recent: list[tuple[str, str]]) -> dict[str, Any]:
    """Citations before the text, so the model picks its evidence and then says what it says."""
    cited = [{"type": "object", "properties": {"chunk_id": {"const": cid}, "quote": {"enum": sentences}},
              "required": ["chunk_id", "quote"], "additionalProperties": False}
             for cid, text in recent if (sentences := quotes(text))]
    citations: dict[str, Any] = {"type": "array", "maxItems": MAX_CITATIONS if cited else 0}
    if cited:
        citations["items"] = {"anyOf": cited}
    return {"type": "object",
            "properties": {"citations": citations, "text": {"type": "string", "minLength": 1},
                           "not_found": {"type": "boolean"}},
            "required": ["citations", "text", "not_found"], "additionalProperties": False}


def _strict(parameters: dict[str, Any]) -> dict[str, Any]:
    """The tool's own parameters with no extra keys allowed (the sampler then cannot write
    ``"type": "object"`` into the arguments, as small models do)."""
    properties = {k: dict(v) for k, v in parameters.get("properties", {}).items()}
    for spec in properties.values():
        spec.pop("description", None)  # the model read them in the tool list; not sampled
        spec.pop("default", None)
    return {"type": "object", "properties": properties, "required": list(parameters.get("required", [])),
            "additionalProperties": False}
