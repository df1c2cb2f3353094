"""The corpus manifest: which files are in archival storage, at which content hash.

A file's row is committed only after the upsert it describes has reached the store, so
after a crash the manifest never claims more than Qdrant holds; the next run redoes the
difference, and deterministic point ids make the redo idempotent.

Replacing or removing a file's points is journaled: ``begin_rewrite`` drops the file's row
and records the path as *dirty* in one transaction, before the store is touched; the path
stays dirty until ``commit_file`` (or ``finish_removal``) in another single transaction. A
crash anywhere in between leaves the path dirty, and the next run deletes every point of a
dirty path before anything else, so an old version can never stay searchable beside a new one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from docmem.store.lock import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to its root, POSIX separators
    root TEXT NOT NULL,             -- absolute path of the folder it was found under
    hash TEXT NOT NULL,             -- sha256 of the content
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,           -- 'ok' | 'failed'
    reason TEXT,                    -- why it failed, or a warning
    title TEXT,
    pages INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    ingested_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
-- Paths whose points in the store may not match the files table (a rewrite in progress).
CREATE TABLE IF NOT EXISTS dirty (path TEXT PRIMARY KEY);
"""


# Meta key: "1" once an ingest ended with every chunk holding its dense vector, "0" from the
# start of an ingest (chunks are written before their vectors) until then. Search skips
# asking which BM25 hits lack a vector when it is "1" (0.6-0.7 ms a query at 1M chunks).
DENSE_COMPLETE = "dense_complete"


@dataclass(frozen=True)
class FileRecord:
    path: str
    root: str
    hash: str
    size: int
    mtime_ns: int
    status: str
    reason: str | None
    title: str | None
    pages: int
    chunks: int
    ingested_at: float


class Manifest:
    def __init__(self, path: Path) -> None:
        private_file(path)  # 0600: it names every ingested file
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    # -- meta -----------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- files ----------------------------------------------------------------

    def get(self, path: str) -> FileRecord | None:
        row = self.db.execute("SELECT * FROM files WHERE path=?", (path,)).fetchone()
        return FileRecord(*row) if row else None

    def files(self, root: str | None = None) -> Iterator[FileRecord]:
        if root is None:
            rows = self.db.execute("SELECT * FROM files ORDER BY path")
        else:
            rows = self.db.execute("SELECT * FROM files WHERE root=? ORDER BY path", (root,))
        for row in rows.fetchall():
            yield FileRecord(*row)

    def paths(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM files WHERE status='ok' ORDER BY path")]

    def put(self, record: FileRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (record.path, record.root, record.hash, record.size, record.mtime_ns, record.status,
             record.reason, record.title, record.pages, record.chunks, record.ingested_at),
        )

    # -- the rewrite journal ---------------------------------------------------

    def begin_rewrite(self, path: str) -> None:
        """Before a file's points are deleted or written: its row goes, the path is dirty."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO dirty(path) VALUES (?)", (path,))
            self.db.execute("DELETE FROM files WHERE path=?", (path,))

    def commit_file(self, record: FileRecord) -> None:
        """After the store holds exactly this file's points: its row, and the path clean."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.put(record)
            self.db.execute("DELETE FROM dirty WHERE path=?", (record.path,))

    def finish_removal(self, path: str) -> None:
        self.db.execute("DELETE FROM dirty WHERE path=?", (path,))

    def dirty(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM dirty ORDER BY path")]

    def touch(self, path: str, mtime_ns: int) -> None:
        self.db.execute("UPDATE files SET mtime_ns=? WHERE path=?", (mtime_ns, path))

    def remove(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE path=?", (path,))

    def totals(self) -> tuple[int, int, int]:
        """(files ok, files failed, chunks)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(status='ok'),0), COALESCE(SUM(status='failed'),0), COALESCE(SUM(chunks),0) FROM files"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def roots(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT root FROM files ORDER BY root")]

    def last_ingest(self) -> float | None:
        """When the last ingest finished (recorded), else when a file was last written."""
        recorded = self.get_meta("last_ingest")
        if recorded is not None:
            return float(recorded)
        row = self.db.execute("SELECT MAX(ingested_at) FROM files").fetchone()
        return row[0]

    def close(self) -> None:
        self.db.close()


def now() -> float:
    return time.time()
