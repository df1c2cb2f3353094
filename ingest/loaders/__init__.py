"""Turn a file into a Document, choosing the loader by extension.

Problems every format shares (empty files, binary data where text was expected, legacy
encodings, nothing to index) are handled here once, so each loader only knows its format.
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Callable
from pathlib import Path

from ingest.document import Document, LoadError
from ingest.loaders import pdf, rich, text

__all__ = ["SUPPORTED", "Document", "LoadError", "decode_text", "load", "unsupported_reason"]

SUPPORTED: dict[str, str] = {
    ".pdf": "PDF",
    ".md": "Markdown",
    ".markdown": "Markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "reStructuredText",
    ".html": "HTML",
    ".htm": "HTML",
    ".docx": "DOCX",
    ".pptx": "PPTX",
    ".eml": "e-mail",
    ".epub": "EPUB",
}

NO_TEXT_PDF = "no extractable text (scanned or image-only PDF?)"
NO_TEXT = "no text"

_TEXT_FORMATS = {"text", "Markdown", "reStructuredText", "HTML"}
_SNIFF_BYTES = 8192


def unsupported_reason(path: Path | str) -> str | None:
    """Why this file cannot be loaded by its name alone, or None if a loader exists."""
    suffix = Path(path).suffix.lower()
    if suffix in SUPPORTED:
        return None
    return f"unsupported format {suffix}" if suffix else "unsupported format (no extension)"


def load(path: Path | str, *, max_unpacked: int | None = None) -> Document:
    """Read one file into ordered blocks; raise LoadError with a one-line reason if it cannot be.

    An unreadable file (permissions, vanished) is a LoadError too: ingest reports it and goes
    on with the other files. ``max_unpacked``: the bytes a zip-based format (DOCX, PPTX, EPUB)
    may declare for its contents; a zip bomb is refused before anything is unpacked.
    """
    path = Path(path)
    if reason := unsupported_reason(path):
        raise LoadError(reason)
    suffix = path.suffix.lower()
    kind = SUPPORTED[suffix]
    try:
        if path.stat().st_size == 0:
            raise LoadError("empty file")
        if max_unpacked is not None and kind in _ZIP_FORMATS:
            _check_unpacked_size(path, max_unpacked)
        if kind in _TEXT_FORMATS:
            document = _load_text_format(path, suffix, kind)
        else:
            document = _BINARY_LOADERS[kind](path)
    except OSError as exc:
        raise LoadError(f"cannot read file: {exc.strerror or exc}") from None
    if not any(block.text.strip() for block in document.blocks):
        raise LoadError(NO_TEXT_PDF if kind == "PDF" else NO_TEXT)
    return document


_ZIP_FORMATS = {"DOCX", "PPTX", "EPUB"}


def _check_unpacked_size(path: Path, limit: int) -> None:
    """Sum what the zip's directory says its members unpack to (zipfile never inflates a member
    past its declared size, so the sum bounds the work). Not a zip: the loader says so."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError):
        return
    if unpacked > limit:
        raise LoadError(f"too large when unpacked ({unpacked >> 20} MB, over {limit >> 20} MB; "
                        "--file-memory to raise it)")


def _load_text_format(path: Path, suffix: str, kind: str) -> Document:
    data = path.read_bytes()
    content, encoding = decode_text(data, suffix)
    if kind == "HTML":
        document = rich.load_html(content, path)
    else:
        document = _TEXT_PARSERS[kind](content, path.stem)
    if encoding != "utf-8":
        document.warnings.insert(0, f"not UTF-8: decoded as {encoding}")
    return document


def decode_text(data: bytes, suffix: str = ".txt") -> tuple[str, str]:
    """Decode a text file, returning (text, encoding used).

    UTF-8 first (with or without a BOM), UTF-16 if it has a BOM, then cp1252 (what most
    legacy Western text is), then latin-1, which decodes any byte: a legacy file is read with
    a warning instead of being lost. NUL bytes in a file without a UTF-16 BOM mean binary data
    behind a text extension.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise LoadError(f"binary content in a {suffix} file")
    for codec, name in (("utf-8-sig", "utf-8"), ("cp1252", "cp1252"), ("latin-1", "latin-1")):
        try:
            return data.decode(codec), name  # utf-8-sig reads UTF-8 with or without a BOM
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


_BINARY_LOADERS: dict[str, Callable[[Path], Document]] = {
    "PDF": pdf.load_pdf,
    "DOCX": rich.load_docx,
    "PPTX": rich.load_pptx,
    "e-mail": rich.load_eml,
    "EPUB": rich.load_epub,
}
_TEXT_PARSERS: dict[str, Callable[[str, str], Document]] = {
    "text": text.parse_plain,
    "Markdown": text.parse_markdown,
    "reStructuredText": text.parse_rst,
}
