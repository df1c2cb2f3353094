"""Text from documents, paths and models made safe to show, for every front end.

A document can hold terminal escape sequences (ESC ... ) or bidi overrides that make one name
display as another; the CLI, the TUI and the MCP server show such text to a person or to an
agent's client, so each front end passes it through ``printable`` first.
"""

from __future__ import annotations

import re

# C0/C1 controls (ESC starts terminal escape sequences) and the bidi overrides that make a
# name display as another one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, lines: bool = False) -> str:
    """A user-controlled string made safe for one terminal line: control characters become ``?``.
    With ``lines``, newlines and tabs stay (an answer, a passage)."""
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub("?", text)
