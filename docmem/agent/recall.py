"""Recall storage and saved sessions, in one SQLite file.

Every event of the loop is written here before the next LLM call, so nothing the queue
evicts is ever lost: ``conversation_search`` (FTS5) and ``conversation_search_date`` page
through it. A named session also keeps its working context, queue and summary here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from docmem.store.lock import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    ts REAL NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    message TEXT NOT NULL              -- the full chat message as JSON
);
CREATE INDEX IF NOT EXISTS events_session_ts ON events(session, ts);
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(content, content='events', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS events_ai AFTER INSERT ON events BEGIN
    INSERT INTO events_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    corpus TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    state TEXT NOT NULL                -- JSON: working context, queue, summary, counters
);
"""


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    role: str
    content: str

    def when(self) -> str:
        return datetime.fromtimestamp(self.ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class SessionInfo:
    name: str
    corpus: str
    created: float
    updated: float
    events: int


def message_text(message: dict[str, Any]) -> str:
    """The searchable text of a chat message, function calls included."""
    parts = [message.get("content") or ""]
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {})
        parts.append(f"{fn.get('name')}({fn.get('arguments')})")
    return "\n".join(p for p in parts if p)


class Recall:
    def __init__(self, path: Path | str, session: str) -> None:
        if isinstance(path, Path):
            private_file(path)  # 0600: every conversation, verbatim
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: each event is in the database file's log before the next LLM call and
        # survives a crash of docmem; only a power cut can lose the last ones. FULL would
        # fsync every message (~2 ms a step).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.session = session

    def append(self, message: dict[str, Any], ts: float | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO events(session, ts, role, content, message) VALUES (?,?,?,?,?)",
            (self.session, ts or time.time(), message.get("role", "?"), message_text(message),
             json.dumps(message, ensure_ascii=False)),
        )
        return int(cur.lastrowid or 0)

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM events WHERE session=?", (self.session,)).fetchone()[0])

    def search(self, query: str, page: int, page_size: int) -> tuple[list[Event], int]:
        """Best matches first; a query FTS5 cannot parse is searched as plain words."""
        terms = " OR ".join('"' + w.replace('"', "") + '"' for w in query.split() if w.replace('"', ""))
        if not terms:
            return [], 0
        base = ("FROM events_fts JOIN events e ON e.id = events_fts.rowid "
                "WHERE events_fts MATCH ? AND e.session = ?")
        total = int(self.db.execute(f"SELECT COUNT(*) {base}", (terms, self.session)).fetchone()[0])
        rows = self.db.execute(
            f"SELECT e.id, e.ts, e.role, e.content {base} ORDER BY bm25(events_fts), e.id LIMIT ? OFFSET ?",
            (terms, self.session, page_size, (page - 1) * page_size),
        ).fetchall()
        return [Event(*r) for r in rows], total

    def between(self, start: float, end: float, page: int, page_size: int) -> tuple[list[Event], int]:
        where = "FROM events WHERE session=? AND ts >= ? AND ts < ?"
        total = int(self.db.execute(f"SELECT COUNT(*) {where}", (self.session, start, end)).fetchone()[0])
        rows = self.db.execute(f"SELECT id, ts, role, content {where} ORDER BY id LIMIT ? OFFSET ?",
                               (self.session, start, end, page_size, (page - 1) * page_size)).fetchall()
        return [Event(*r) for r in rows], total

    def history(self, limit: int = 2000) -> list[dict[str, Any]]:
        """The full chat messages of this session, oldest first (the last ``limit`` of them)."""
        rows = self.db.execute(
            "SELECT message FROM (SELECT id, message FROM events WHERE session=? ORDER BY id DESC LIMIT ?) "
            "ORDER BY id", (self.session, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- sessions -------------------------------------------------------------

    def load_state(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT state FROM sessions WHERE name=?", (self.session,)).fetchone()
        return json.loads(row[0]) if row else None

    def save_state(self, corpus: str, state: dict[str, Any]) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO sessions(name, corpus, created, updated, state) VALUES (?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET updated=excluded.updated, state=excluded.state, corpus=excluded.corpus",
            (self.session, corpus, now, now, json.dumps(state, ensure_ascii=False)),
        )

    def sessions(self) -> list[SessionInfo]:
        rows = self.db.execute(
            "SELECT s.name, s.corpus, s.created, s.updated, "
            "(SELECT COUNT(*) FROM events e WHERE e.session = s.name) FROM sessions s ORDER BY s.updated DESC"
        ).fetchall()
        return [SessionInfo(*r) for r in rows]

    def delete_session(self, name: str) -> bool:
        """Forget a session: its saved state and every event (and their full-text index rows)."""
        self.db.execute("BEGIN")
        try:
            self.db.execute("INSERT INTO events_fts(events_fts, rowid, content) "
                            "SELECT 'delete', id, content FROM events WHERE session=?", (name,))
            self.db.execute("DELETE FROM events WHERE session=?", (name,))
            found = self.db.execute("DELETE FROM sessions WHERE name=?", (name,)).rowcount > 0
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return found

    def close(self) -> None:
        self.db.close()
