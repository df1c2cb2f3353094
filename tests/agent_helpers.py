"""Corpora and policies shared by the agent tests: policies read only what they were sent."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from docmem.agent.constrain import REMINDER  # the question again, constrained: not a new turn
from docmem.config import Settings
from docmem.eval.nested_kv import SHARED_FILE, nest, read_lines
from docmem.llm.scripted import call
from docmem.protocols import Completion, Message
from docmem.store.corpus import open_corpus
from ingest.pipeline import ingest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_PAIR = re.compile(r"chunk (\S+) \| [^\n]*\n[^\n]*key = ([0-9a-f-]{36}), value = ([0-9a-f-]{36})")


def build_corpus(settings: Settings, root: Path, files: dict[str, str], embedder: str = "none") -> None:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content, encoding="utf-8")
    with open_corpus(settings, create=True, embedder=embedder) as corpus:
        ingest(corpus, [root], workers=1)


def nested_kv(level: int, seed: int) -> tuple[list[tuple[str, str]], str, str]:
    """The paper's recipe (docmem.eval.nested_kv) on line ``seed`` of shared/data: (pairs, first key, gold)."""
    pairs = list(read_lines(DATA / SHARED_FILE)[seed])
    nested, key, gold, _chain = nest(pairs, level, random.Random(seed * 31 + level))
    return nested, key, gold


def last_tool_result(messages: list[Message]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "tool"), "")


def kv_policy(messages: list[Message], tools: list[dict[str, Any]]) -> Completion:
    """Follow keys through archival search until a value is not itself a key, then cite it."""
    question = next(m["content"] for m in messages if m["role"] == "user")
    key = re.search(r"[0-9a-f-]{36}", question).group()  # type: ignore[union-attr]
    found: dict[str, tuple[str, str]] = {}
    for m in messages:
        if m["role"] == "tool":
            for chunk_id, k, v in _PAIR.findall(m["content"]):
                found[k] = (v, chunk_id)
    while key in found and found[key][0] in found:
        key = found[key][0]
    if key in found:
        value, chunk_id = found[key]
        searched_value = any(value in (m.get("content") or "") and m["role"] == "tool" and
                             f'for "{value}"' in m["content"] for m in messages)
        if searched_value:  # the value is not a key anywhere: it is the answer
            return call("answer", text=f"The value is {value} [1].",
                        citations=[{"chunk_id": chunk_id, "quote": f"key = {key}, value = {value}"}])
        return call("archival_search", query=value, request_heartbeat=True)
    return call("archival_search", query=key, request_heartbeat=True)


_HIT = re.compile(r"\[\d+\] chunk (\S+) \| ([^\n]*)\n([^\n]+)")
# What the agent loop itself sends as "user" messages (docmem.tui.runtime._LOOP_PREFIXES).
_LOOP_PREFIXES = ("[system]", "[system alert]", "[heartbeat]", "[memory]")
MIN_QUOTE = 8  # docmem.agent.citations refuses shorter quotes


def current_turn(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The person's latest question and the messages sent after it: a policy that read tool
    results from earlier questions would answer every later question from the first one."""
    for n in range(len(messages) - 1, -1, -1):
        m = messages[n]
        content = str(m.get("content") or "")
        if m["role"] == "user" and not content.startswith(_LOOP_PREFIXES) and not content.endswith(REMINDER):
            return m["content"], messages[n + 1:]
    return "", messages


def quotable(passage: str) -> str:
    """A verbatim quote from a result line: its first sentence of at least MIN_QUOTE
    characters (a heading like "1." alone is refused), at most 120 characters."""
    text = passage.replace(" …[cut]", "").strip()
    sentences = re.split(r"(?<=[.!?])\s", text)
    sentence = next((s for s in sentences if len(s.strip()) >= MIN_QUOTE), text)
    return sentence.strip()[:120].strip()


def citing_server_policy(body: dict[str, Any], reads: int = 0) -> dict[str, Any]:
    """For the fake OpenAI server: search the current question once, open the top ``reads``
    hits one by one (a multi-step chain, to watch and interrupt), then answer citing the top
    hit's first sentence, read from the tool results the server was sent for this question."""
    messages = body["messages"]
    if not body.get("tools"):
        return {"content": "Summary of the session so far."}
    question, turn = current_turn(messages)
    results = [m["content"] for m in turn if m["role"] == "tool"]
    if not results:
        return {"tool_calls": [{"name": "archival_search",
                                "arguments": {"query": question, "request_heartbeat": True}}]}
    hits = _HIT.findall(results[0])
    if not hits:
        return {"tool_calls": [{"name": "answer", "arguments": {"text": "Not in the corpus.", "not_found": True}}]}
    opened = len(results) - 1
    if opened < min(reads, len(hits)):
        return {"tool_calls": [{"name": "open_document", "arguments": {
            "chunk_id": hits[opened][0], "request_heartbeat": True}}]}
    chunk_id, where, passage = hits[0]
    sentence = quotable(passage)
    return {"tool_calls": [{"name": "answer", "arguments": {
        "text": f"According to {where.split(' | ')[0]}: {sentence} [1]",
        "citations": [{"chunk_id": chunk_id, "quote": sentence}]}}]}
