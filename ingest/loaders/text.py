"""Plain text, Markdown and reStructuredText, read directly.

These formats need only their headings and paragraphs found; a full parser (or unstructured,
which would load spaCy for them) would cost far more than the few rules below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ingest.document import Block, Document

_MAX_TITLE = 100


class _Headings:
    """The heading path in force: a new heading closes every heading at its level or deeper."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._stack)


def _paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Runs of non-blank lines, joined with newlines (line breaks can matter, e.g. in lists)."""
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            yield "\n".join(current)
            current = []
    if current:
        yield "\n".join(current)


# --- plain text ---------------------------------------------------------------------------------


def parse_plain(text: str, fallback_title: str) -> Document:
    """Paragraphs are runs of lines between blank lines; a short first line is the title."""
    blocks = [Block(p) for p in _paragraphs(text.splitlines())]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first if first and len(first) < _MAX_TITLE else fallback_title
    return Document(title, blocks)


# --- Markdown -----------------------------------------------------------------------------------

_FRONT_MATTER_END = re.compile(r"^(---|\.\.\.)[ \t]*$")
_FRONT_MATTER_TITLE = re.compile(r"""^title:[ \t]*["']?(.*?)["']?[ \t]*$""")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])([ \t]*\1){2,}[ \t]*$")


def parse_markdown(text: str, fallback_title: str) -> Document:
    """ATX and setext headings give the heading path; a fenced code block stays one block."""
    lines, front_title = _strip_front_matter(text.splitlines())
    headings = _Headings()
    blocks: list[Block] = []
    title: str | None = None
    paragraph: list[str] = []
    fence: list[str] = []
    fence_marker = ""
    in_comment = False

    def flush() -> None:
        if paragraph:
            blocks.append(Block("\n".join(paragraph), headings=headings.path))
            paragraph.clear()

    def heading(level: int, text: str) -> None:
        nonlocal title
        flush()
        if title is None and level == 1:
            title = text
        blocks.append(Block(text, headings=headings.enter(level, text), is_heading=True))

    for line in lines:
        if fence_marker:
            fence.append(line)
            stripped = line.strip()
            # A fence closes with the same character, at least as long, and nothing after it.
            if stripped.startswith(fence_marker) and stripped.strip(fence_marker[0]) == "":
                blocks.append(Block("\n".join(fence), headings=headings.path))
                fence, fence_marker = [], ""
            continue
        if in_comment or "<!--" in line:
            kept, in_comment = _uncommented(line, in_comment)
            if not kept.strip():  # the line was (inside) a comment: nothing a reader sees
                continue
            line = kept
        if opening := _FENCE.match(line):
            flush()
            fence, fence_marker = [line], opening.group(1)
            continue
        if not line.strip():
            flush()
            continue
        if paragraph and (setext := _SETEXT.match(line)):
            text = " ".join(part.strip() for part in paragraph)
            paragraph.clear()
            heading(1 if setext.group(1)[0] == "=" else 2, text)
            continue
        if _THEMATIC_BREAK.match(line):
            flush()
            continue
        if atx := _ATX.match(line):
            text = _ATX_CLOSING.sub("", atx.group(2) or "").strip()
            if text:
                heading(len(atx.group(1)), text)
            else:
                flush()
            continue
        paragraph.append(line.rstrip())
    flush()
    if fence:  # an unclosed fence runs to the end of the document, as in CommonMark
        blocks.append(Block("\n".join(fence), headings=headings.path))
    return Document(title or front_title or fallback_title, blocks)


def _uncommented(line: str, in_comment: bool) -> tuple[str, bool]:
    """The line without its HTML comments (``<!-- ... -->``, which may span lines: a rendered
    page does not show them; Node.js's docs put a YAML block of version history in one under
    every API heading, which was most of the words of a short section). Whether a comment is
    still open after it. A ``<!--`` inside an inline code span stays."""
    kept: list[str] = []
    at = ticks = 0  # ticks: backticks in the kept text, odd inside a code span
    while True:
        if in_comment:
            end = line.find("-->", at)
            if end < 0:
                return "".join(kept), True
            at, in_comment = end + 3, False
        start, scanned = line.find("<!--", at), at
        while start >= 0:
            ticks += line.count("`", scanned, start)
            scanned = start
            if ticks % 2 == 0:
                break
            start = line.find("<!--", start + 4)
        if start < 0:
            kept.append(line[at:])
            return "".join(kept), False
        kept.append(line[at:start])
        at, in_comment = start + 4, True


def _strip_front_matter(lines: list[str]) -> tuple[list[str], str | None]:
    """Drop a leading YAML block (--- ... --- or ...); return its `title:` if it has one."""
    if not lines or lines[0].strip() != "---":
        return lines, None
    for end in range(1, len(lines)):
        if _FRONT_MATTER_END.match(lines[end]):
            title = None
            for line in lines[1:end]:
                if match := _FRONT_MATTER_TITLE.match(line):
                    title = match.group(1).strip() or None
                    break
            return lines[end + 1 :], title
    return lines, None  # no closing line: a thematic break, not front matter


# --- reStructuredText ---------------------------------------------------------------------------

# Any non-alphanumeric printable ASCII character may adorn a section title.
_ADORNMENT = re.compile(r"""^([!-/:-@\[-`{-~])\1+[ \t]*$""")
_TRANSITION_MIN = 4


def parse_rst(text: str, fallback_title: str) -> Document:
    """Section titles are underlined (or over- and underlined) lines; levels follow the order in
    which each adornment style first appears, as docutils does."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []  # (character, overlined), in order of first appearance
    headings = _Headings()
    blocks: list[Block] = []
    title: str | None = None
    body: list[str] = []

    def flush() -> None:
        in_comment = False  # a comment's indented block goes with it, blank lines and all
        for paragraph in _paragraphs(body):
            if _is_rst_comment(paragraph):
                in_comment = paragraph.strip() != ".."  # a bare ".." (an empty comment) ends there
            elif not (in_comment and paragraph[:1].isspace()):
                in_comment = False
                _append_rst_paragraph(blocks, paragraph, headings.path)
        body.clear()

    i = 0
    while i < len(lines):
        found = _rst_title_at(lines, i)
        if found is None:
            if not _is_transition(lines, i):
                body.append(lines[i])
            i += 1
            continue
        text, style, consumed = found
        flush()
        if style not in styles:
            styles.append(style)
        if title is None:
            title = text
        level = styles.index(style) + 1
        blocks.append(Block(text, headings=headings.enter(level, text), is_heading=True))
        i += consumed
    flush()
    return Document(title or fallback_title, blocks)


def _is_rst_comment(paragraph: str) -> bool:
    """``.. text`` that is not a directive (``.. name::``), a target (``.. _x:``), a footnote or
    citation (``.. [x]``) or a substitution (``.. |x|``): docutils renders nothing of it."""
    first = paragraph.split("\n", 1)[0].rstrip()
    if first == "..":
        return True
    if not first.startswith(".. "):
        return False
    rest = first[3:].lstrip()
    if rest[:1] in ("_", "[", "|"):
        return False
    name, directive, _ = rest.partition("::")
    return not (directive and name and not any(c.isspace() for c in name))


def _rst_title_at(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
    """A section title starting at line i: (title, style, lines consumed), or None."""
    starts_block = i == 0 or not lines[i - 1].strip()
    line = lines[i]
    over = _ADORNMENT.match(line)
    if over and starts_block and i + 2 < len(lines):
        text, under = lines[i + 1].strip(), lines[i + 2].rstrip()
        if (
            text
            and not _ADORNMENT.match(lines[i + 1])
            and under == line.rstrip()
            and len(under) >= len(text)
        ):
            return text, (under[0], True), 3
    if (
        starts_block
        and i + 1 < len(lines)
        and line.strip()
        and not line[0].isspace()
        and not over
    ):
        under = _ADORNMENT.match(lines[i + 1])
        underline = lines[i + 1].rstrip()
        if under and len(underline) >= max(2, len(line.rstrip())):
            return line.strip(), (underline[0], False), 2
    return None


def _is_transition(lines: list[str], i: int) -> bool:
    """A lone adornment line between blank lines is a transition (a horizontal rule)."""
    line = lines[i]
    blank_before = i == 0 or not lines[i - 1].strip()
    blank_after = i + 1 >= len(lines) or not lines[i + 1].strip()
    long_enough = len(line.strip()) >= _TRANSITION_MIN
    return bool(_ADORNMENT.match(line) and long_enough and blank_before and blank_after)


def _append_rst_paragraph(blocks: list[Block], paragraph: str, path: tuple[str, ...]) -> None:
    """Keep a literal block or directive body (indented, after `::` or `.. x::`) with its lead-in,
    so code is not cut into pieces at its blank lines."""
    previous = blocks[-1] if blocks else None
    if previous is not None and paragraph[:1].isspace() and not previous.is_heading:
        lead = previous.text.split("\n\n", 1)[0]
        if lead.rstrip().endswith("::") or lead.startswith(".. "):
            blocks[-1] = Block(f"{previous.text}\n\n{paragraph}", headings=path)
            return
    blocks.append(Block(paragraph, headings=path))
