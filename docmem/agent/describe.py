"""One compact line per agent step, for people watching (CLI stderr, TUI activity pane)."""

from __future__ import annotations

import re

from docmem.agent.loop import CallStep, FinalStep, LLMStep, MemoryStep, MessageStep, Step

_HEADER = re.compile(r"Showing (?:results|messages) \d+-\d+ of (\S+) .*?\(page (\d+) of (\S+)\)")


def clip(text: str, width: int) -> str:
    """At most ``width`` characters, cut between words with an ellipsis, never inside a token
    (a chunk id cut in half reads as another id)."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[:width - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def describe(step: Step) -> str | None:
    if isinstance(step, LLMStep):
        u = step.usage
        return f"thinking (step {step.step}, context {u.total}/{u.budget} tokens)"
    if isinstance(step, MemoryStep):
        return f"memory: {step.detail}" + (f" ({step.hidden} messages now in recall only)" if step.hidden else "")
    if isinstance(step, MessageStep):
        return f"message: {step.text}"
    if isinstance(step, FinalStep):
        return None
    return _call(step)


def _call(step: CallStep) -> str:
    args = step.arguments or {}
    if not step.ok:
        return f"{step.name} failed: {clip(step.result.removeprefix('FAILED: '), 160)}"
    if step.name == "archival_search":
        match = _HEADER.search(step.result)
        where = f" in {args['path']}" if args.get("path") else ""
        if not match:
            return f'searching "{args.get("query")}"{where}: no results'
        new = step.result.count("\n[") - step.result.count("(seen)")
        return (f'searching "{args.get("query")}"{where} — page {match.group(2)} of {match.group(3)}, '
                f"{match.group(1)} results, {new} new")
    if step.name == "open_document":
        first_line = step.result.splitlines()[0] if step.result else ""
        return f"reading {first_line}"
    if step.name.startswith("working_context"):
        return "noted in working context"
    if step.name == "archival_insert":
        return "stored a note in archival storage"
    if step.name.startswith("conversation_search"):
        return f"searching recall: {step.result.splitlines()[0] if step.result else ''}"
    if step.name == "send_message":
        return f"message: {args.get('text', '')}"
    if step.name == "answer":
        return "answer accepted"
    return step.name
