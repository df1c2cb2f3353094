"""DOCX, PPTX, HTML, EML and EPUB through unstructured, made safe to run offline.

unstructured is a large optional extra (`docmem[formats]`): it is imported only when such a
file is met, and `_prepare_unstructured` keeps it from reaching the network.
"""

from __future__ import annotations

import email
import email.policy
import functools
import importlib
import io
import logging
import os
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ingest.document import Block, Document, LoadError
from ingest.loaders.hidden import hidden_by_style_blocks

logger = logging.getLogger(__name__)

NEEDS_EXTRA = "needs the formats extra: pip install 'docmem[formats]'"

# Elements that repeat on every page or carry no text of the document's own.
_SKIPPED = {"PageBreak", "Header", "Footer", "PageNumber", "Image"}
# Titles of admonition boxes (DocBook, as in the PostgreSQL manual, puts "Tip" in an <h3>
# like a real subsection). They open no section: as headings they cut the enclosing
# section in two and filed the text after the box, and the next subsections, under "Tip".
_ADMONITIONS = {"note", "notes", "tip", "tips", "hint", "warning", "caution", "important", "danger",
                "attention", "see also", "example", "remark"}
# Characters that are not text: zero-width space (Javadoc writes one before each signature's
# parenthesis), word joiner and byte-order mark. Left in, they stay in cited text and split words.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff"))
_DAMAGED_FILE_ERRORS = {
    "PackageNotFoundError", "XMLSyntaxError", "InvalidXmlError", "UnprocessableEntityError"}


@functools.cache
def _prepare_unstructured() -> None:
    """Make unstructured work with no network, once per process, before its first import.

    Its import otherwise runs `nvidia-smi` and sends telemetry (10 s timeout offline), and its
    first partition of any format downloads the spaCy model `en_core_web_sm` from GitHub,
    which fails offline. unstructured 0.27 has no public setting for either the model or a
    local path to it, so this swaps its private loader `unstructured.nlp.tokenize._get_nlp`
    (looked up at call time by `_run_pipeline`) for a blank English pipeline with a rule-based
    sentencizer. That pipeline has no part-of-speech tagger, so unstructured's "contains a
    verb" test always fails and its text heuristics call short sentences titles: `_to_blocks`
    trusts only titles that come from the document's structure.
    """
    os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["SCARF_NO_ANALYTICS"] = "1"
    try:
        import spacy
        import unstructured.nlp.tokenize as tokenize
    except ImportError:
        raise LoadError(NEEDS_EXTRA) from None
    if not callable(getattr(tokenize, "_get_nlp", None)):
        raise LoadError(
            "unsupported unstructured version (docmem needs 0.27.x): no offline spaCy hook"
        )

    @functools.cache
    def blank_english() -> Any:
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp

    tokenize._get_nlp = blank_english


def _partitioner(module: str, name: str) -> Callable[..., list[Any]]:
    _prepare_unstructured()
    try:
        imported = importlib.import_module(f"unstructured.partition.{module}")
    except ImportError:
        raise LoadError(NEEDS_EXTRA) from None
    return getattr(imported, name)


def _partition(kind: str, module: str, name: str, **kwargs: Any) -> list[Any]:
    """Run one partitioner, turning the ways a damaged file fails into a one-line LoadError."""
    partition = _partitioner(module, name)
    try:
        return partition(**kwargs)
    except ImportError:  # some partitioners import their dependencies only when called
        raise LoadError(NEEDS_EXTRA) from None
    except zipfile.BadZipFile:
        raise LoadError(f"corrupt {kind}: not a zip package") from None
    except FileNotFoundError:
        if kind == "EPUB":  # unstructured's message when the pandoc executable is missing
            raise LoadError("EPUB needs pandoc: pip install pypandoc-binary") from None
        raise
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise LoadError(f"corrupt {kind}: {_short(exc)}") from None
    except Exception as exc:
        # python-docx, python-pptx, lxml and unstructured each have their own "bad file" error;
        # matched by name so that none of those packages is imported here.
        if type(exc).__name__ in _DAMAGED_FILE_ERRORS:
            raise LoadError(f"corrupt {kind}: {_short(exc)}") from None
        raise


# --- formats ------------------------------------------------------------------------------------


def load_docx(path: Path) -> Document:
    shown = _without_hidden_runs(path)
    source: dict[str, Any] = {"filename": str(path)} if shown is None else {"file": shown}
    elements = _partition("DOCX", "docx", "partition_docx", **source)
    blocks = _to_blocks(elements)
    return Document(_first_heading(blocks) or path.stem, blocks)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _without_hidden_runs(path: Path) -> io.BytesIO | None:
    """The DOCX without its hidden text (runs marked ``<w:vanish/>``, which Word does not show
    or print): a reader could not check a citation of it, and a hostile document hides
    instructions for the model there. None when the body has none (nearly always: then the
    file is read as it is)."""
    try:
        with zipfile.ZipFile(path) as package:
            body = package.read("word/document.xml")
            if b"vanish" not in body:
                return None
            import lxml.etree

            root = lxml.etree.fromstring(body, lxml.etree.XMLParser(resolve_entities=False, huge_tree=False))
            for run in list(root.iter(f"{_W}r")):
                vanish = run.find(f"{_W}rPr/{_W}vanish")
                if vanish is not None and vanish.get(f"{_W}val", "true").lower() in ("true", "1", "on"):
                    run.getparent().remove(run)
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
                for item in package.infolist():
                    data = lxml.etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True) \
                        if item.filename == "word/document.xml" else package.read(item)
                    copy.writestr(item, data)
    except (KeyError, OSError, ValueError, SyntaxError, zipfile.BadZipFile, ImportError) as exc:  # lxml's: SyntaxError
        logger.debug("hidden text of %s kept: %s", path, exc)
        return None  # partition_docx reports a damaged file in its own words
    out.seek(0)
    return out


def load_pptx(path: Path) -> Document:
    """A slide's title is the heading of everything on the slide; speaker notes, which
    unstructured puts first, are moved after the slide's own text."""
    elements = _partition(
        "PPTX", "pptx", "partition_pptx", filename=str(path), include_slide_notes=True
    )
    slides = max((e.metadata.page_number or 0 for e in elements), default=0)
    notes: dict[int, str] = {}
    try:
        import pptx

        deck = pptx.Presentation(str(path))
        slides = len(deck.slides)
        for number, slide in enumerate(deck.slides, start=1):
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes[number] = slide.notes_slide.notes_text_frame.text.strip()
    except Exception as exc:  # noqa: BLE001 - without them, the elements' order and count stand
        logger.debug("cannot read slides of %s: %s", path, exc)

    def is_notes(element: Any) -> bool:
        page = element.metadata.page_number
        return bool(notes.get(page)) and (element.text or "").strip() == notes[page]

    # A stable sort by (page, is notes) keeps everything else in unstructured's order.
    elements = sorted(elements, key=lambda e: (e.metadata.page_number or 0, is_notes(e)))
    blocks = _to_blocks(elements, is_structural=_is_slide_title, per_page=True)
    title = next((b.text for b in blocks if b.is_heading), path.stem)
    return Document(title, blocks, pages=slides)


def load_html(text: str, path: Path) -> Document:
    """`text` is the decoded page (the caller handles encodings, as for every text format)."""
    elements = _partition("HTML", "html", "partition_html", text=_without_chrome(text))
    blocks = _to_blocks(elements)
    return Document(_html_title(text) or _first_heading(blocks) or path.stem, blocks)


def load_eml(path: Path) -> Document:
    """Title is the Subject; a first block carries the envelope (From, To, Date), which people
    search by. Attachments are not indexed (they would need every other format's loader)."""
    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.default)
    # unstructured prefers the HTML body; a plain-text body has no structure, only guesses.
    body = message.get_body(preferencelist=("html", "plain"))
    html_body = body is not None and body.get_content_type() == "text/html"
    page = _html_content(body) if html_body else None
    if page is not None:  # read as a page is: what a mail client does not show is dropped
        elements = _partition("e-mail", "html", "partition_html", text=_without_chrome(page))
    else:
        elements = _partition("e-mail", "email", "partition_email", filename=str(path),
                              process_attachments=False)
    blocks = _to_blocks(elements, is_structural=lambda e: html_body)
    envelope = "\n".join(
        f"{name}: {_header(message, name)}"
        for name in ("From", "To", "Cc", "Date", "Subject")
        if _header(message, name)
    )
    if envelope and blocks:
        blocks.insert(0, Block(envelope))
    warnings = []
    attachments = sum(1 for _ in message.iter_attachments()) if message.is_multipart() else 0
    if attachments:
        warnings.append(f"{attachments} attachment(s) not indexed")
    return Document(_header(message, "Subject") or path.stem, blocks, warnings=warnings)


def _html_content(body: Any) -> str | None:
    """An HTML body decoded, for the page's own loader: hidden text (``display: none``, the
    commonest trick of HTML mail, for a "preheader" or for instructions to the model) is then
    dropped as in any page. None if its charset is unknown (unstructured reads it as before)."""
    try:
        content = body.get_content()
    except (LookupError, ValueError, AttributeError):
        return None
    return content if isinstance(content, str) else None


def load_epub(path: Path) -> Document:
    """EPUB goes through pandoc (bundled by pypandoc-binary) to HTML, then as HTML."""
    elements = _partition("EPUB", "epub", "partition_epub", filename=str(path))
    blocks = _to_blocks(elements)
    return Document(_epub_title(path) or _first_heading(blocks) or path.stem, blocks)


# --- elements to blocks -------------------------------------------------------------------------


def _to_blocks(
    elements: Iterable[Any],
    is_structural: Callable[[Any], bool] = lambda element: True,
    per_page: bool = False,
) -> list[Block]:
    """Titles become headings (depth from `category_depth`), everything else text, in order.

    Consecutive list items are kept together as one block. `per_page` starts the heading path
    afresh on each page (slides do not continue each other's sections).
    """
    stack: list[tuple[int, str]] = []
    blocks: list[Block] = []
    page: int | None = None
    list_open = False
    for element in elements:
        category = getattr(element, "category", type(element).__name__)
        text = (element.text or "").translate(_INVISIBLE).strip()
        if category == "Table" and text:
            text = _table_text(getattr(element.metadata, "text_as_html", None), text) or text
        if category in _SKIPPED or not text:
            continue
        element_page = getattr(element.metadata, "page_number", None)
        if per_page and element_page != page:
            stack = []
        page = element_page
        path = tuple(title for _, title in stack)
        if category == "Title" and is_structural(element) and text.rstrip(":").lower() not in _ADMONITIONS:
            depth = getattr(element.metadata, "category_depth", None) or 0
            while stack and stack[-1][0] >= depth:
                stack.pop()
            stack.append((depth, text))
            blocks.append(Block(text, page, tuple(t for _, t in stack), is_heading=True))
            list_open = False
        elif category == "ListItem" and list_open and blocks[-1].page == page:
            previous = blocks[-1]
            blocks[-1] = Block(f"{previous.text}\n{text}", page, previous.headings)
        else:
            blocks.append(Block(text, page, path))
            list_open = category == "ListItem"
    return blocks


def _table_text(html: str | None, text: str) -> str | None:
    """A table as text a reader can follow: a line per row, cells apart by " | ".
    unstructured's own text of a table is every cell in one run, so a parameter table's rows
    (option, default, meaning) could not be told apart in a passage or a citation. None (its
    text is then used as it is) if the table's HTML cannot be read, or if it lays out a single
    cell or lines of their own (code in a layout table, as SQLite's pages have: their line
    breaks are kept that way), or if its words are not those of ``text``, unstructured's run
    (a safety net: its HTML of a table can differ from the page)."""
    if not html:
        return None
    try:
        import lxml.html

        table = lxml.html.fragment_fromstring(html, create_parent="div")
        for br in table.iter("br"):  # unstructured writes a line break in a cell as <br/>
            br.tail = " " + (br.tail or "")
        cells = [[cell.text_content().translate(_INVISIBLE).strip() for cell in row.xpath("./th|./td")]
                 for row in table.iter("tr")]
        caption = " ".join(" ".join(c.text_content().translate(_INVISIBLE).split()) for c in table.iter("caption"))
    except (ValueError, TypeError, ImportError) as exc:  # lxml.etree.ParserError is a ValueError
        logger.debug("table text kept as one run: %s", exc)
        return None
    if sum(len(row) for row in cells) < 2 or any("\n" in cell for row in cells for cell in row):
        return None
    if caption.split() + [word for row in cells for cell in row for word in cell.split()] != text.split():
        return None
    width = max(len(row) for row in cells)
    used = [j for j in range(width) if any(j < len(row) and row[j] for row in cells)]  # no empty spacer columns
    rows = (" | ".join(" ".join(row[j].split()) for j in used if j < len(row)) for row in cells)
    return "\n".join(([caption] if caption else []) + [row for row in rows if row.strip(" |")]) or None


def _is_slide_title(element: Any) -> bool:
    """Only the first paragraph of a slide's title placeholder has depth 0; other "titles" are
    unstructured's guesses from short text, which are unreliable without a tagger."""
    return getattr(element.metadata, "category_depth", None) == 0


def _first_heading(blocks: list[Block]) -> str | None:
    return next((b.text for b in blocks if b.is_heading and len(b.headings) == 1), None)


def _header(message: email.message.Message, name: str) -> str:
    try:
        return " ".join(str(message.get(name, "") or "").split())
    except (ValueError, TypeError):  # a malformed header must not lose the message
        return ""


def _class(name: str) -> str:
    """XPath: the element's class attribute lists ``name``."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


# A page's chrome: site navigation, search boxes, footers, and the permalink after each heading
# (Sphinx's "¶"). Left in, Sphinx's sidebar headings ("Navigation", "Contents", "Quick
# search") became subsections of the page's last section, and its table of contents a chunk
# of it; every heading ended in "¶". DocBook (the PostgreSQL manual) and GNU Texinfo
# (makeinfo) put the same chrome in markup of their own: a "Prev Up Next" panel naming the
# neighbouring pages above and below each page (DocBook) or before each node (Texinfo: "Next: X,
# Previous: Y, Up: Z"). Left in, a page began with a headless chunk of it and its last section
# ended by naming its neighbours. The Apache httpd manual has a header and footer of site links
# ("Modules | Directives | FAQ | ..."), a breadcrumb, a language bar and a sidebar contents list
# on every page. Any link that is only a pilcrow or section sign is a permalink (Sphinx, Apache,
# Texinfo's index entries, MkDocs), as is a bare "#" in a heading. Text a browser does not show
# (the ``hidden`` attribute, an inline ``display: none`` or ``visibility: hidden``) is not text of
# the page either: a reader could not see what a citation of it quotes, and it is where a hostile
# page hides instructions for the model. A tab panel hidden until its tab is chosen stays.
# Generators met later (bench/README.md, section 3f): Bootstrap's navbar and the pop-ups a
# script opens (MkDocs' search and keyboard-help dialogs, whose titles had become headings of
# the page's last section), the version bar of the Read the Docs theme, a table of contents
# kept by id (Asciidoctor, org-mode, Haddock's package bar), Doxygen's title area, path,
# summary links, footer and "◆" permalinks, and any "headerlink" (the Read the Docs theme's is
# an icon font's private-use character, which had ended every heading path). Then: Furo's
# sidebar, contents drawer and "Back to top", the previous / next bar and contents box of the
# PyData and Book themes, Sphinx's "[source]" links, rustdoc's "source · [−]" and version
# marks, RDoc's "click to toggle source", pod2html's page index.
_STYLE = "translate(@style, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ ', 'abcdefghijklmnopqrstuvwxyz')"  # lower case, no spaces


def _zero_style(prop: str) -> str:
    """XPath: the inline style sets ``prop`` to zero (0, 0px, 0em, 0pt, 0%): text in a size of
    nothing, or fully transparent, is hidden text as ``display: none`` is."""
    zeros = " or ".join(f"contains(concat(';', {_STYLE}, ';'), ';{prop}:0{unit};')"
                        for unit in ("", "px", "em", "rem", "pt", "%", "!important"))
    return f"({zeros})"

_CHROME = " | ".join((
    f"//*[(@hidden or contains({_STYLE}, 'display:none') or contains({_STYLE}, 'visibility:hidden')"
    f" or {_zero_style('font-size')} or {_zero_style('opacity')}) and not(@role='tabpanel')]",
    "//nav", "//footer",
    "//*[@role='navigation' or @role='search' or @role='contentinfo' or @role='banner']",
    f"//div[{_class('navheader')} or {_class('navfooter')} or {_class('nav-panel')}]",  # DocBook, Texinfo 7
    f"//div[{_class('header')}][.//a[@accesskey='n' or @accesskey='p' or @accesskey='u']]",  # Texinfo 6
    f"//div[@id='page-header' or @id='path' or @id='quickview' or @id='footer' or {_class('toplang')}"
    f" or {_class('bottomlang')}]",  # Apache httpd
    f"//*[{_class('breadcrumb')} or {_class('breadcrumbs')}]",
    "//a[normalize-space(.)='\u00b6' or normalize-space(.)='\u00a7']",
    "//*[self::h1 or self::h2 or self::h3 or self::h4 or self::h5 or self::h6]//a[normalize-space(.)='#']",
    f"//*[{_class('navbar')} or {_class('bs-sidebar')} or {_class('rst-versions')} or {_class('modal')}]",
    "//*[@role='dialog' or @role='alertdialog']", "//dialog[not(@open)]",
    "//*[@id='toc' or @id='TOC' or @id='table-of-contents' or @id='package-header']",
    f"//div[@id='titlearea' or @id='nav-path' or {_class('navpath')}]",  # Doxygen
    f"//div[{_class('header')}]/div[{_class('summary')}]", f"//*[self::hr or self::address][{_class('footer')}]",
    f"//a[{_class('headerlink')}]", f"//span[{_class('permalink')}]",
    f"//aside[{_class('sidebar-drawer')} or {_class('toc-drawer')}]", f"//header[{_class('mobile-header')}]",
    f"//a[{_class('back-to-top')}]", f"//div[{_class('prev-next-area')} or {_class('tocsection')}]",  # Sphinx themes
    f"//a[.//span[{_class('viewcode-link')}]]",  # Sphinx's "[source]"
    f"//span[{_class('out-of-band')}] | //summary[{_class('hideme')}]"
    f" | //span[{_class('rightside')}][.//a[{_class('srclink')}]]",  # rustdoc
    f"//span[{_class('method-click-advice')}]", "/html/body/ul[@id='index']",  # RDoc, pod2html
))
# Doxygen titles a page in a div, and puts each member's title (h2.memtitle) at the level of
# the group it belongs to ("Member Function Documentation"): as headings they are the page's
# h1 and its groups' subsections.
_RETAGGED = ((f"//div[{_class('headertitle')}]/div[{_class('title')}]", "h1"),
             (f"//h2[{_class('memtitle')}]", "h3"),
             # unstructured drops a <details> or <figure> with all it holds ("likely boilerplate"):
             # a FAQ's collapsed answers, all of rustdoc's documentation, every figure caption.
             # As plain blocks they are read like the rest of the page.
             ("//details | //summary | //figure | //figcaption", "div"))
# numpydoc's parameter lists (NumPy, pandas, SciPy) write "name : type" with the colon drawn by
# the stylesheet: read as text, the name ran into its type ("subsetcolumn label or sequence").
_CLASSIFIER = f"//dt/span[{_class('classifier')}]"


_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


def _without_chrome(text: str) -> str:
    """The page without its chrome (``_CHROME``), and with the elements of ``_RETAGGED`` given
    the tag unstructured should read them by, and no deeper than unstructured reads
    (``_flattened``); the page as it is if it needs none of it or lxml cannot parse it
    (unstructured then gets the same text it always did)."""
    try:
        import lxml.html

        # An XHTML page (DocBook's) opens with an XML declaration naming its encoding, which lxml
        # refuses in text already decoded: without this its chrome was always kept.
        root = lxml.html.document_fromstring(_XML_DECLARATION.sub("", text, count=1),
                                             parser=lxml.html.HTMLParser(huge_tree=True))
        deep = _flattened(root)
        found = (root.xpath(_CHROME) + [a for a in root.iter("a") if _is_icon(a.text_content())]
                 + hidden_by_style_blocks(root))
        retagged = [(element, tag) for path, tag in _RETAGGED for element in root.xpath(path)]
        classifiers = root.xpath(_CLASSIFIER)
        if not found and not retagged and not classifiers and not deep:
            return text
        for element in found:
            if element.getparent() is not None:
                element.drop_tree()
        for element, tag in retagged:
            element.tag = tag
        for element in classifiers:
            element.text = " : " + (element.text or "")
        return lxml.html.tostring(root, encoding="unicode")
    except (ValueError, TypeError, ImportError) as exc:  # lxml.etree.ParserError is a ValueError
        logger.debug("page chrome kept: %s", exc)
        return text


# unstructured's parser (libxml2's defaults) stops reading a page at 256 nested elements, and
# everything after that point was lost without a word (seen with a page of 300 nested divs).
_DEPTH = 200


def _flattened(root: Any) -> int:
    """Each element ``_DEPTH`` deep replaced by its text (lxml reads up to 2,048 levels with
    ``huge_tree``): the page then reads to its end. How many were flattened."""
    import lxml.etree

    depth, cut = 0, []
    for event, element in lxml.etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if event == "start" and depth == _DEPTH:
            cut.append(element)
    for element in cut:
        content = element.text_content()
        for child in list(element):
            element.remove(child)
        element.text = content
    return len(cut)


def _is_icon(text: str) -> bool:
    """A link that is one private-use character: an icon font's glyph (a permalink), no text."""
    text = text.strip()
    return len(text) == 1 and unicodedata.category(text) == "Co"


class _TitleParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.done = False
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title" and not self.done:
            self.inside = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.inside:
            self.inside, self.done = False, True

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.parts.append(data)


def _html_title(text: str) -> str | None:
    parser = _TitleParser()
    head_end = text.lower().find("</head>")
    parser.feed(text if head_end < 0 else text[: head_end + 7])
    title = " ".join("".join(parser.parts).split())
    return title or None


def _epub_title(path: Path) -> str | None:
    """dc:title from the package document named by META-INF/container.xml."""
    from xml.etree import ElementTree

    try:
        with zipfile.ZipFile(path) as book:
            container = ElementTree.fromstring(book.read("META-INF/container.xml"))
            rootfile = next(e for e in container.iter() if e.tag.endswith("rootfile"))
            package = ElementTree.fromstring(book.read(rootfile.attrib["full-path"]))
    except (OSError, KeyError, StopIteration, zipfile.BadZipFile, ElementTree.ParseError):
        return None
    title = next((e.text for e in package.iter() if e.tag.endswith("}title") and e.text), None)
    return " ".join(title.split()) if title else None


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message[:120]
