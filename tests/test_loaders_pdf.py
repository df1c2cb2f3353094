"""PDF loading on real PDFs made at test time (reportlab), encrypted and broken ones (pypdf)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from ingest.document import Block, LoadError
from ingest.loaders import load
from ingest.loaders.pdf import split_paragraphs

PAGE_LINES = {
    1: ["Chapter One", "", "The lighthouse keeper climbed the tower every evening at dusk and",
        "lit the great lamp that warned ships away from the rocks.",
        "Fog rolled in from the sea on most autumn nights."],
    2: ["The keeper kept a log of every ship that passed the headland in the",
        "night, with its name, its course and the state of the weather.",
        "1.1 Storms",
        "In the great storm of 1901 the lamp burned for three days without",
        "rest while the keeper fed it oil by hand."],
    3: ["Chapter Two", "", "Years later the lamp was replaced by an electric beacon that",
        "needed no keeper at all."],
}


def make_pdf(path: Path, pages: dict[int, list[str]], *, title: str | None = None,
             outline: list[tuple[str, int, int]] = ()) -> Path:
    """A PDF with one text line per entry; outline entries are (title, page, level)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    if title:
        pdf.setTitle(title)
    for number in sorted(pages):
        pdf.bookmarkPage(f"p{number}")
        y = 800
        for line in pages[number]:
            if line:
                pdf.drawString(72, y, line)
            y -= 16
        for entry_title, page, level in outline:
            if page == number:
                pdf.addOutlineEntry(entry_title, f"p{number}", level=level)
        if not pages[number]:
            pdf.rect(100, 100, 200, 200, fill=1)  # a drawing, no text: a "scanned" page
        pdf.showPage()
    pdf.save()
    return path


@pytest.fixture
def book_pdf(tmp_path: Path) -> Path:
    return make_pdf(
        tmp_path / "book.pdf", PAGE_LINES, title="The Lighthouse Log",
        outline=[("Chapter One", 1, 0), ("Storms", 2, 1), ("Chapter Two", 3, 0)],
    )


def encrypt(source: Path, target: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    with target.open("wb") as handle:
        writer.write(handle)
    return target


def test_pdf_pages_title_and_outline_headings(book_pdf):
    document = load(book_pdf)
    assert document.title == "The Lighthouse Log"
    assert document.pages == 3 and document.warnings == []
    got = [(b.page, b.headings, b.is_heading, b.text[:24]) for b in document.blocks]
    assert got == [
        (1, ("Chapter One",), True, "Chapter One"),
        (1, ("Chapter One",), False, "The lighthouse keeper cl"),
        (1, ("Chapter One",), False, "Fog rolled in from the s"),
        # Page 2 starts in chapter one; the bookmark's section starts where its title is
        # (bookmarks often leave out the section number).
        (2, ("Chapter One",), False, "The keeper kept a log of"),
        (2, ("Chapter One", "Storms"), True, "1.1 Storms"),
        (2, ("Chapter One", "Storms"), False, "In the great storm of 19"),
        (3, ("Chapter Two",), True, "Chapter Two"),
        (3, ("Chapter Two",), False, "Years later the lamp was"),
    ]
    # Wrapped lines are joined into one paragraph.
    assert document.blocks[1].text == (
        "The lighthouse keeper climbed the tower every evening at dusk and "
        "lit the great lamp that warned ships away from the rocks."
    )


def test_pdf_without_outline_or_title(tmp_path):
    path = make_pdf(tmp_path / "plain-notes.pdf", {1: ["Only page text here."]})
    document = load(path)
    assert document.title == "plain-notes"  # reportlab writes "untitled": not a title
    assert document.blocks == [Block("Only page text here.", page=1)]


def test_pdf_dot_leaders_collapse(tmp_path):
    # A table of contents and an index: the dots fill a chunk (and a reader's context) with
    # nothing. R-intro.pdf went from 493 to 386 chunks.
    path = make_pdf(tmp_path / "toc.pdf", {1: [
        "Contents",
        "1 Introduction . . . . . . . . . . . . . . . . . . . . . . . . . . . . 1",
        "2 Linear models ........................................................ 7",
        "Note: see section 2.1 ... and the index.",
    ]})
    text = " ".join(b.text for b in load(path).blocks)
    assert "1 Introduction … 1" in text and "2 Linear models … 7" in text
    assert "section 2.1 ... and" in text  # an ellipsis of three dots is text, kept


def test_pdf_pages_without_text_are_counted(tmp_path):
    pages = {1: ["Text on page one."], 2: [], 3: ["And page three."]}
    path = make_pdf(tmp_path / "mixed.pdf", pages)
    document = load(path)
    assert document.warnings == ["1 of 3 pages have no text"]
    assert [(b.page, b.text) for b in document.blocks] == [
        (1, "Text on page one."), (3, "And page three.")]


def test_image_only_pdf(tmp_path):
    path = make_pdf(tmp_path / "scan.pdf", {1: [], 2: []})
    with pytest.raises(LoadError, match=r"^no extractable text \(scanned or image-only PDF\?\)$"):
        load(path)


def test_user_password_pdf_is_refused(book_pdf, tmp_path):
    path = encrypt(book_pdf, tmp_path / "locked.pdf", user_password="secret")
    with pytest.raises(LoadError, match=r"^encrypted PDF \(needs a password\)$"):
        load(path)


def test_owner_password_only_pdf_loads(book_pdf, tmp_path):
    path = encrypt(book_pdf, tmp_path / "restricted.pdf", user_password="")
    assert PdfReader(path).is_encrypted
    document = load(path)
    assert document.pages == 3
    assert document.blocks[0] == Block("Chapter One", 1, ("Chapter One",), True)


def test_pdf_needing_a_missing_crypto_dependency(book_pdf, monkeypatch):
    from pypdf.errors import DependencyError

    import ingest.loaders.pdf as pdf_loader

    def reader(path):
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr(pdf_loader, "PdfReader", reader)
    with pytest.raises(LoadError, match="^encrypted PDF needs a dependency: cryptography"):
        load(book_pdf)


def test_a_page_that_fails_to_extract_does_not_lose_the_rest(book_pdf, monkeypatch):
    from pypdf import PageObject

    real = PageObject.extract_text

    def extract_text(page, *args, **kwargs):
        if "Chapter Two" in real(page):
            raise ValueError("broken content stream")
        return real(page, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", extract_text)
    document = load(book_pdf)
    assert document.warnings == [
        "1 of 3 pages have no text", "text extraction failed on page(s) 3"]
    assert {b.page for b in document.blocks} == {1, 2}


def test_truncated_pdf(book_pdf, tmp_path):
    data = book_pdf.read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError, match="^corrupt PDF: "):
        load(path)


def test_not_a_pdf_at_all(tmp_path):
    path = tmp_path / "page.pdf"
    path.write_text("<html>saved with the wrong name</html>")
    with pytest.raises(LoadError, match="^corrupt PDF: "):
        load(path)


def test_split_paragraphs_without_blank_lines():
    text = (
        "Results\n"
        "The first experiment measured the speed of sound in dry air at twenty\n"
        "degrees and found it close to the textbook value of the period.\n"
        "A second run used humid air and the speed rose by about half a percent.\n"
        "Humidity matters more than the older literature sugg-\n"
        "ested for long paths.\n"
    )
    assert split_paragraphs(text) == [
        "Results",
        "The first experiment measured the speed of sound in dry air at twenty "
        "degrees and found it close to the textbook value of the period.",
        "A second run used humid air and the speed rose by about half a percent. "
        "Humidity matters more than the older literature suggested for long paths.",
    ]
    assert split_paragraphs("one\n\n\ntwo\n") == ["one", "two"]
    assert split_paragraphs(" \n") == []


# --- text formats -------------------------------------------------------------------------------
