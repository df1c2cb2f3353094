"""PDF through pypdf, page by page, so every block keeps the page a citation points to."""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError
from pypdf.generic import Destination

from ingest.document import Block, Document, LoadError

logger = logging.getLogger(__name__)

ENCRYPTED = "encrypted PDF (needs a password)"

# Titles that PDF producers write when the author wrote none.
_PLACEHOLDER_TITLES = {
    "untitled", "untitled document", "title", "document", "no title", "anonymous"}
_FILE_NAME_TITLE = re.compile(
    r"^microsoft (word|powerpoint|excel) - "
    r"|\.(docx?|pptx?|xlsx?|pdf|tex|dvi|ps|rtf|odt|indd|txt)$",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"""[.!?:;]["'\u2019\u201d)\]]*$""")
_SECTION_NUMBER = re.compile(r"^(?:\d+(?:\.\d+)*|[A-Z](?:\.\d+)+)\.?\s+")
# Dot leaders of tables of contents and indexes (". . . . . 26"): tokens that say nothing
# and fill a reader's context; they become one ellipsis. The pattern starts at a dot: one that
# started with the spaces around it ("(?:[ \t]*\.){5,}") backtracked through every run of spaces
# at every position, quadratic in a line of spaces (40,000 of them took 0.9 s).
_LEADER = re.compile(r"\.(?:[ \t]*\.){4,}")
_PARAGRAPH_START = re.compile(r"""^["'\u2018\u201c(\[]*[A-Z0-9\u2022\u2013\u2014*-]""")


def _without_leaders(line: str) -> str:
    """The line stripped, each dot leader and the spaces around it one " … "."""
    return " … ".join(piece.strip(" \t") for piece in _LEADER.split(line)).strip()


@dataclass(frozen=True)
class _OutlineEntry:
    page: int  # 0-based
    path: tuple[str, ...]


def load_pdf(path: Path) -> Document:
    """Read a PDF; raise LoadError with the reason a user can act on when it cannot be read."""
    # pypdf logs every recoverable oddity of real-world PDFs as a warning; they are noise here.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path)
        locked = reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
        page_count = 0 if locked else len(reader.pages)
    except FileNotDecryptedError:
        raise LoadError(ENCRYPTED) from None
    except DependencyError as exc:  # not a PyPdfError: AES without the cryptography package
        raise LoadError(f"encrypted PDF needs a dependency: {_short(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - pypdf fails on malformed files with many types
        raise LoadError(f"corrupt PDF: {_short(exc)}") from None
    if locked:
        raise LoadError(ENCRYPTED)
    if page_count == 0:
        raise LoadError("corrupt PDF: no pages")

    outline = _read_outline(reader)
    blocks: list[Block] = []
    empty_pages = 0
    failed_pages: list[int] = []
    carried: tuple[str, ...] = ()
    for index in range(page_count):
        try:
            text = reader.pages[index].extract_text() or ""
        except FileNotDecryptedError:
            raise LoadError(ENCRYPTED) from None
        except DependencyError as exc:
            raise LoadError(f"encrypted PDF needs a dependency: {_short(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - one malformed page must not lose the document
            logger.debug("page %d of %s: %s", index + 1, path, exc, exc_info=True)
            failed_pages.append(index + 1)
            text = ""
        entries = [entry for entry in outline if entry.page == index]
        paragraphs = split_paragraphs(text, headings=[entry.path[-1] for entry in entries])
        if not paragraphs:
            empty_pages += 1
        page_blocks, carried = _assign_headings(paragraphs, entries, carried, index + 1)
        blocks.extend(page_blocks)

    warnings = []
    if empty_pages and empty_pages < page_count:
        warnings.append(f"{empty_pages} of {page_count} pages have no text")
    if failed_pages:
        listed = ", ".join(map(str, failed_pages[:10])) + (", ..." if len(failed_pages) > 10 else "")
        warnings.append(f"text extraction failed on page(s) {listed}")
    return Document(_title(reader, path), blocks, pages=page_count, warnings=warnings)


def split_paragraphs(text: str, headings: Iterable[str] = ()) -> list[str]:
    """Rebuild paragraphs from pypdf's lines, which often come without blank lines between them.

    A blank line always ends a paragraph, and a line that is one of `headings` (the page's
    bookmark titles) is a paragraph of its own. Otherwise a line ends a paragraph when it is
    clearly shorter than the page's full lines (the last line of a paragraph, a heading), or
    when it ends a sentence short of the full width and the next line starts like a new
    paragraph. Over-splitting is harmless (the chunker joins blocks); joining two sections is not.
    Dot leaders collapse to one "…".
    """
    titles = {_heading_key(heading) for heading in headings}
    lines = [_without_leaders(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lengths = [len(line) for line in lines if line]
    if not lengths:
        return []
    full = _full_width(lengths)
    paragraphs: list[str] = []
    current: list[str] = []
    for i, line in enumerate(lines):
        if not line:
            if current:
                paragraphs.append(_join_lines(current))
                current = []
            continue
        if _heading_key(line) in titles:
            if current:
                paragraphs.append(_join_lines(current))
            paragraphs.append(line)
            current = []
            continue
        current.append(line)
        following = lines[i + 1] if i + 1 < len(lines) else ""
        short = len(line) < 0.6 * full
        sentence_break = (
            len(line) < 0.9 * full
            and _SENTENCE_END.search(line) is not None
            and _PARAGRAPH_START.match(following) is not None
        )
        if following and (short or sentence_break):
            paragraphs.append(_join_lines(current))
            current = []
    if current:
        paragraphs.append(_join_lines(current))
    return [p for p in paragraphs if p]


def _full_width(lengths: list[int]) -> float:
    """The length of a full line: a high quantile, robust to one overlong line."""
    if len(lengths) < 4:
        return float(max(lengths))
    return statistics.quantiles(lengths, n=10)[7]  # 80th percentile


def _join_lines(lines: list[str]) -> str:
    """Join wrapped lines with spaces, undoing end-of-line hyphenation ("exam-" + "ple")."""
    text = lines[0]
    for line in lines[1:]:
        if len(text) > 1 and text.endswith("-") and text[-2].isalpha() and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text


def _read_outline(reader: PdfReader) -> list[_OutlineEntry]:
    """Flatten the bookmarks into (page, heading path) in outline order; [] if unreadable."""
    entries: list[_OutlineEntry] = []

    def walk(items: list, parents: tuple[str, ...]) -> None:
        last: tuple[str, ...] | None = None
        for item in items:
            if isinstance(item, list):
                walk(item, last if last is not None else parents)
            elif isinstance(item, Destination):
                title = " ".join(str(item.title or "").split())
                last = (*parents, title) if title else parents
                page = reader.get_destination_page_number(item)
                if title and page is not None and page >= 0:
                    entries.append(_OutlineEntry(page, last))

    try:
        walk(reader.outline, ())
    except Exception as exc:  # noqa: BLE001 - a broken outline only costs the heading paths
        logger.debug("unreadable outline: %s", exc, exc_info=True)
        return []
    return entries


def _assign_headings(
    paragraphs: list[str],
    entries: list[_OutlineEntry],
    carried: tuple[str, ...],
    page: int,
) -> tuple[list[Block], tuple[str, ...]]:
    """Give each paragraph of a page the heading path in force, and return the path to carry on.

    Bookmarks say on which page a section starts, not where on the page. When a paragraph is
    a bookmark's title (section numbers aside), the section starts there and the paragraph is
    its heading. A first bookmark whose title is not found starts at the top of the page; a
    later one that is not found takes effect on the next page.
    """
    starts: dict[int, tuple[str, ...]] = {}
    found_at: set[int] = set()
    position = 0
    for number, entry in enumerate(entries):
        found = _find_title(paragraphs, entry.path[-1], position)
        if found is not None:
            starts[found] = entry.path
            found_at.add(found)
            position = found + 1
        elif number == 0:
            starts[0] = entry.path

    blocks = []
    path = carried
    for i, text in enumerate(paragraphs):
        path = starts.get(i, path)
        blocks.append(Block(text, page=page, headings=path, is_heading=i in found_at))
    return blocks, entries[-1].path if entries else carried


def _find_title(paragraphs: list[str], title: str, start: int) -> int | None:
    wanted = _heading_key(title)
    for i in range(start, len(paragraphs)):
        if _heading_key(paragraphs[i]) == wanted:
            return i
    return None


def _heading_key(text: str) -> str:
    """Compare a bookmark with a line: bookmarks often drop the number the page shows."""
    return _SECTION_NUMBER.sub("", " ".join(text.split())).casefold()


def _title(reader: PdfReader, path: Path) -> str:
    """The metadata title when an author wrote one, else the file name."""
    try:
        title = " ".join(str((reader.metadata or {}).get("/Title") or "").split())
    except Exception:  # noqa: BLE001 - a damaged info dictionary only costs the title
        return path.stem
    meaningless = (
        not any(c.isalpha() for c in title)
        or title.casefold().strip("()[] ") in _PLACEHOLDER_TITLES
        or _FILE_NAME_TITLE.search(title) is not None
    )
    return path.stem if meaningless else title


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message[:120]
