"""One process at a time per embedded corpus, with a message that names the holder.

Qdrant Edge refuses a second open of the same shard with a low-level WAL error; this lock
turns that into "corpus is in use by PID N" before the shard is touched.

The lock file records the PID and the command's *name* only, never its arguments: an
argument can be a secret (``--api-key=KEY``), and the file outlives a killed process. Like
every state file docmem writes, it is private to its owner (0600, in folders made 0700).
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from pathlib import Path
from typing import IO

from docmem.errors import CorpusInUse

__all__ = ["CorpusLock", "command_name", "private_dir", "private_file"]


def private_dir(path: Path) -> None:
    """``mkdir -p`` whose new folders are 0700 (the data home holds documents and sessions)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            pass


def private_file(path: Path) -> Path:
    """Create ``path`` (0600) if it is missing; an existing file is made 0600 too.

    SQLite gives its -wal and -shm files the database file's mode, so creating the
    database this way keeps them private as well.
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:  # not ours to change (a shared file system): leave its mode as it is
        pass
    finally:
        os.close(fd)
    return path


def command_name() -> str:
    """``docmem ask``: the program and its subcommand, without any option or value."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
    except ImportError:  # pragma: no cover - click is a dependency
        ctx = None
    if ctx is not None:
        return ctx.command_path
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "docmem"


_HOLDER = re.compile(r"PID \d+")
_WORD = re.compile(r"[\w.]+")


def _holder(recorded: str) -> str:
    """"PID N (docmem ask)" from the file, dropping anything an older version recorded
    after the command name (it wrote argv, which could hold a key)."""
    pid = _HOLDER.match(recorded.strip())
    if pid is None:
        return "another process"
    words = recorded[pid.end():].strip(" ()\n").split()
    keep: list[str] = []
    for word in words[:4]:  # "docmem ask", "python -m docmem.cli ask"
        if not (_WORD.fullmatch(word) or word == "-m"):
            break
        keep.append(word)
    return f"{pid.group()} ({' '.join(keep)})" if keep else pid.group()


class CorpusLock:
    def __init__(self, path: Path, corpus: str) -> None:
        self.path = path
        self.corpus = corpus
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        private_file(self.path)
        fh = open(self.path, "r+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _holder(fh.read())
            fh.close()
            raise CorpusInUse(
                f"corpus '{self.corpus}' is in use by {holder}; wait for it to finish or use another --corpus"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"PID {os.getpid()} ({command_name()})")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
