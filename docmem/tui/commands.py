"""Slash commands (in the spirit of MemGPT's CLI) and the help text."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = {
    "/help": "this help",
    "/sources": "the citations of the selected answer (Enter opens one at its source)",
    "/memory": "the main context by tier, the working context and the summary",
    "/corpus [NAME]": "switch to corpus NAME, or pick one from a list",
    "/ingest PATH": "ingest a folder or file into the active corpus, with progress",
    "/save": "save the session now (it is also saved after every answer)",
    "/clear": "clear the screen (memory and recall keep everything)",
    "/exit": "save and quit",
}

KEYS = {
    "Enter": "send (while the agent works, the message is queued as the next event)",
    "Up / Down": "earlier messages, to edit and send again",
    "Esc / Ctrl+C": "interrupt the agent at the next step; it is told it was interrupted",
    "Ctrl+O": "open the first citation of the selected answer at its source",
    "Ctrl+B": "show or hide the side panel (activity, sources, memory)",
    "Ctrl+P": "command palette",
    "Tab": "move between the conversation, the panes and the prompt",
    "F1": "help",
    "Ctrl+Q": "quit",
}

VIEWER_KEYS = {
    "n / →": "next page (or section)",
    "p / ←": "previous page (or section)",
    "] / [": "next / previous citation of the answer",
    "1-9": "citation by number",
    "Esc": "back to the conversation",
}


def help_markdown() -> str:
    lines = ["# docmem chat", "",
             "Ask about the active corpus. The agent pages through it with function calls, "
             "and every quote in an answer is checked against the passage it cites.", "",
             "## Commands", "", "| command | what it does |", "|---|---|"]
    lines += [f"| `{c}` | {what} |" for c, what in COMMANDS.items()]
    lines += ["", "## Keys", "", "| key | what it does |", "|---|---|"]
    lines += [f"| {k} | {what} |" for k, what in KEYS.items()]
    lines += ["", "## In the source viewer", "", "| key | what it does |", "|---|---|"]
    lines += [f"| {k} | {what} |" for k, what in VIEWER_KEYS.items()]
    lines += ["", "Click an activity line (or Enter on it) to see the full call and result. "
              "Click a `[n]` marker in an answer to open that citation."]
    return "\n".join(lines)


@dataclass(frozen=True)
class Slash:
    name: str  # without the slash, lower case
    argument: str


def parse(text: str) -> Slash | None:
    """``/corpus papers`` -> Slash("corpus", "papers"); None when ``text`` is not a command."""
    text = text.strip()
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, argument = text[1:].partition(" ")
    return Slash(name.lower(), argument.strip())
