"""The corpora an evaluation pages through, kept under ``<data home>/eval/``.

They are ordinary docmem corpora, built by the ordinary ingest pipeline from text files.
A corpus is named by a hash of what defines it (its texts' identity, the embedder and the
chunking), so a second run over the same data reuses it instead of ingesting again. Files
are content-addressed (``pair-007-1a2b3c4d.txt``): changing a text is removing one file
and adding another, which the incremental ingest applies exactly, whatever the clock says.

``docmem`` never imports ``ingest`` outside the CLI, so the CLI hands the ingest function in.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from docmem.config import Settings
from docmem.errors import DocmemError
from docmem.store.corpus import Corpus, corpus_dir, delete_corpus, open_corpus

IngestFn = Callable[[Corpus, list[Path]], Any]


def doc_hash(text: str) -> str:
    """The content hash ingest records for a file holding exactly ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def eval_settings(settings: Settings) -> Settings:
    return replace(settings, home=settings.home / "eval")


def corpus_name(prefix: str, identity: Iterable[str], settings: Settings, embedder: str) -> str:
    digest = hashlib.sha256()
    for part in (*identity, embedder, str(settings.chunk_tokens), str(settings.chunk_overlap)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return f"{prefix}-{digest.hexdigest()[:12]}"


class EvalCorpus:
    """One corpus and its source folder; ``sync(files)`` makes the corpus hold exactly ``files``."""

    def __init__(self, settings: Settings, name: str, embedder: str, ingest: IngestFn, *,
                 fresh: bool = False) -> None:
        self.settings = replace(eval_settings(settings), corpus=name)
        self.name = name
        self.embedder = embedder
        self.ingest = ingest
        self.sources = self.settings.home / "sources" / name
        if fresh:
            if (corpus_dir(self.settings, name) / "manifest.sqlite").exists():
                delete_corpus(self.settings, name)
            shutil.rmtree(self.sources, ignore_errors=True)
        self.sources.mkdir(parents=True, exist_ok=True)
        self.corpus = open_corpus(self.settings, name, create=True, embedder=embedder)

    @staticmethod
    def file_name(stem: str, text: str, suffix: str) -> str:
        return f"{stem}-{doc_hash(text)[:8]}{suffix}"

    def sync(self, files: dict[str, str]) -> int:
        """Write what is missing, delete what is not wanted, ingest; returns files written."""
        wanted = set(files)
        written = 0
        for existing in self.sources.iterdir():
            if existing.name not in wanted:
                existing.unlink()
        for name, text in files.items():
            path = self.sources / name
            if not path.exists():
                path.write_bytes(text.encode("utf-8"))
                written += 1
        summary = self.ingest(self.corpus, [self.sources])
        failed = getattr(summary, "failed", [])
        if failed:
            reasons = "; ".join(f"{p}: {r}" for p, r in failed[:3])
            raise DocmemError(f"building eval corpus {self.name} failed for {len(failed)} files: {reasons}")
        return written

    def close(self) -> None:
        self.corpus.close()

    def __enter__(self) -> "EvalCorpus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clean_eval_corpora(settings: Settings) -> tuple[list[str], int]:
    """Delete every eval corpus and its source files; (names removed, bytes freed).
    A corpus an evaluation is using is refused by its lock, and nothing is removed."""
    from docmem.store.corpus import corpus_names, disk_usage

    home = eval_settings(settings).home
    names = corpus_names(eval_settings(settings))
    freed = disk_usage(home) if home.exists() else 0
    for name in names:
        delete_corpus(eval_settings(settings), name)
    shutil.rmtree(home / "sources", ignore_errors=True)
    return names, freed
