"""A named corpus: its manifest, its Qdrant store and the embedder it was built with."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from docmem.config import Settings
from docmem.embedders import DenseEmbedder, embedder_dim, make_embedder
from docmem.errors import CorpusNotFound, DocmemError, EmbedderMismatch
from docmem.schema import CorpusInfo
from docmem.store.base import ArchivalStore
from docmem.store.lock import CorpusLock
from docmem.store.manifest import Manifest

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise DocmemError(f"invalid corpus name {name!r}: use letters, digits, '.', '_' or '-'")


class Corpus:
    """Open for the lifetime of one command; closing releases the lock."""

    def __init__(self, name: str, directory: Path, manifest: Manifest, store: ArchivalStore,
                 embedder_spec: str, lock: CorpusLock, settings: Settings) -> None:
        self.name = name
        self.dir = directory
        self.manifest = manifest
        self.store = store
        self.embedder_spec = embedder_spec
        self.lock = lock
        self.settings = settings
        self._embedder: DenseEmbedder | None = None
        # The loaded model, shared with ``copy.copy`` views of this corpus (an ingest job's, with its
        # own chunk settings), so a search and an ingest never load it twice.
        self._loaded: dict[str, DenseEmbedder] = {}
        self._loading = threading.Lock()

    @property
    def has_dense(self) -> bool:
        return self.store.dense_dim is not None

    @property
    def embedder(self) -> DenseEmbedder | None:
        """Loaded on first use: BM25-only work never pays for the model."""
        if self._embedder is None and self.has_dense:
            with self._loading:
                if "model" not in self._loaded:
                    self._loaded["model"] = make_embedder(self.embedder_spec, self.settings.base_url,
                                                          self.settings.api_key)
            self._embedder = self._loaded["model"]
        return self._embedder

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.manifest.close()
            self.lock.release()

    def __enter__(self) -> "Corpus":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def corpus_dir(settings: Settings, name: str) -> Path:
    return settings.corpora_dir / name


def corpus_names(settings: Settings) -> list[str]:
    if not settings.corpora_dir.is_dir():
        return []
    return sorted(d.name for d in settings.corpora_dir.iterdir() if (d / "manifest.sqlite").exists())


def default_corpus(settings: Settings, *, strict: bool = True) -> str:
    """The corpus to read when none is named: ``settings.corpus`` if a layer named it or it
    exists, else the only corpus there is. With several and ``strict``, say which exist."""
    name = settings.corpus
    if settings.corpus_given or (corpus_dir(settings, name) / "manifest.sqlite").exists():
        return name
    names = corpus_names(settings)
    if len(names) == 1:
        log.debug("no corpus %r: using %r, the only one", name, names[0])
        return names[0]
    if names and strict:
        raise CorpusNotFound(f"no corpus '{name}'; there are {len(names)}: {', '.join(names)}. "
                             f"Pick one with --corpus NAME (or corpus = \"NAME\" in config.toml)")
    return name


def resolve_corpus(settings: Settings, name: str | None, *, create: bool = False) -> str:
    """The corpus a command means: ``name``; unnamed, 'default' (or the configured one) to
    create, and to read that or the only corpus there is (``default_corpus``)."""
    return name or (settings.corpus if create else default_corpus(settings))


def open_corpus(settings: Settings, name: str | None = None, *, create: bool = False,
                embedder: str | None = None) -> Corpus:
    """Open (or with create=True, make) a corpus; refuse a different embedder than it has.
    Without a name, reading falls back to the only corpus there is (``default_corpus``)."""
    name = resolve_corpus(settings, name, create=create)
    started = time.perf_counter()
    _check_name(name)
    directory = corpus_dir(settings, name)
    manifest_path = directory / "manifest.sqlite"
    if not manifest_path.exists() and not create:
        raise CorpusNotFound(f"no corpus '{name}' in {settings.corpora_dir}: run `docmem ingest PATH --corpus {name}` first")
    lock = CorpusLock(directory / "corpus.lock", name)
    lock.acquire()
    try:
        manifest = Manifest(manifest_path)
        stored_spec = manifest.get_meta("embedder")
        if stored_spec is None:
            spec = embedder or settings.embedder
            dim = embedder_dim(spec)
            if dim == -1:  # an API embedder: ask it
                loaded = make_embedder(spec, settings.base_url, settings.api_key)
                dim = loaded.dim if loaded else None
            manifest.set_meta("embedder", spec)
            manifest.set_meta("dim", str(dim or 0))
            manifest.set_meta("backend", settings.qdrant_url or "edge")
        else:
            spec = stored_spec
            dim = int(manifest.get_meta("dim") or 0) or None
            if embedder is not None and embedder != stored_spec:
                raise EmbedderMismatch(
                    f"corpus '{name}' was built with embedder {stored_spec} ({dim or 0}-d), not {embedder}: "
                    f"drop --embedder, or ingest into another --corpus"
                )
        backend = manifest.get_meta("backend") or "edge"
        store = _open_store(settings, name, directory, backend, dim)
    except BaseException:
        lock.release()
        raise
    log.debug("opened corpus %r (%s, embedder %s, %s-d) in %.0f ms", name, backend, spec, dim or 0,
              (time.perf_counter() - started) * 1000)
    return Corpus(name, directory, manifest, store, spec, lock, settings)


def _open_store(settings: Settings, name: str, directory: Path, backend: str, dim: int | None) -> ArchivalStore:
    if backend == "edge":
        if settings.qdrant_url:
            raise DocmemError(f"corpus '{name}' is embedded (Qdrant Edge); drop --qdrant-url to use it")
        from docmem.store.edge import EdgeStore

        return EdgeStore(directory / "shard", dim)
    from docmem.store.server import ServerStore

    url = settings.qdrant_url or backend
    return ServerStore.connect(url, settings.qdrant_api_key, f"docmem_{name}", dim)


def disk_usage(path: Path) -> int:
    """Blocks really used: Qdrant preallocates sparse files far larger than their data."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def list_corpora(settings: Settings) -> list[CorpusInfo]:
    """Read each manifest without opening the store, so a corpus in use still lists."""
    out = []
    for name in corpus_names(settings):
        directory = corpus_dir(settings, name)
        manifest = Manifest(directory / "manifest.sqlite")
        try:
            files, failed, chunks = manifest.totals()
            pending = manifest.get_meta("dense_pending")
            out.append(CorpusInfo(
                name=name, files=files, failed=failed, chunks=chunks,
                embedder=manifest.get_meta("embedder") or "?", dim=int(manifest.get_meta("dim") or 0),
                backend=manifest.get_meta("backend") or "edge", bytes_on_disk=disk_usage(directory),
                roots=manifest.roots(), last_ingest=manifest.last_ingest(),
                dense_pending=int(pending) if pending is not None else None,
            ))
        finally:
            manifest.close()
    return out


def delete_corpus(settings: Settings, name: str) -> None:
    _check_name(name)
    directory = corpus_dir(settings, name)
    if not (directory / "manifest.sqlite").exists():
        raise CorpusNotFound(f"no corpus '{name}'")
    lock = CorpusLock(directory / "corpus.lock", name)
    lock.acquire()
    try:
        manifest = Manifest(directory / "manifest.sqlite")
        backend = manifest.get_meta("backend") or "edge"
        manifest.close()
        if backend != "edge":  # drop the server's collection too
            from docmem.store.server import ServerStore

            store = ServerStore.connect(settings.qdrant_url or backend, settings.qdrant_api_key,
                                        f"docmem_{name}", None)
            store.client.delete_collection(store.collection)
            store.close()
        shutil.rmtree(directory)
    finally:
        lock.release()
