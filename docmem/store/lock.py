"""One process at a time per embedded corpus, with a message that names the holder.

Qdrant Edge refuses a second open of the same shard with a low-level WAL error; this lock
turns that into "corpus is in use by PID N" before the shard is touched.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from docmem.errors import CorpusInUse


class CorpusLock:
    def __init__(self, path: Path, corpus: str) -> None:
        self.path = path
        self.corpus = corpus
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise CorpusInUse(
                f"corpus '{self.corpus}' is in use by {holder}; wait for it to finish or use another --corpus"
            ) from None
        fh.seek(0)
        fh.truncate()
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))
        fh.write(f"PID {os.getpid()} ({command})")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
