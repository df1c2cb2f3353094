"""Who owns a corpus, and ``Docmem``: the service front ends get from ``connect``.

The ownership rule. Qdrant Edge opens a shard in one process only, with no read-only open,
so whichever docmem process opens a corpus first owns it, and serves it to every other
docmem process on a Unix socket in the data home for as long as it holds it (``docmem chat``
included; ``docmem serve`` is only the long-running form). The corpus lock says *that* it is
held; ``owner.json`` beside it (0600) says by which pid and on which socket. Another process
finding the lock held reads that record and becomes a client (``RemoteService``); while the
owner is still starting (lock held, no answer yet) it waits for the socket. A killed owner
leaves no lock (the kernel drops it with the process), so the next process simply becomes the
owner. When an owner exits, its clients' next call fails to connect; they find the owner
again, and one of them becomes it: nothing fails with "in use".
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from docmem.api import ops
from docmem.api.jobs import last_event
from docmem.api.local import LocalService
from docmem.api.remote import OwnerGone, RemoteCorpus, RemoteService
from docmem.config import Settings
from docmem.errors import CorpusInUse, DocmemError
from docmem.schema import JOB_DONE, JOB_FAILED, JOB_QUEUED, CorpusInfo, IngestOptions, JobEvent, ReadPage, SearchPage
from docmem.store.corpus import Corpus, corpus_dir, resolve_corpus
from docmem.threads import start_thread

if TYPE_CHECKING:
    from docmem.agent.loop import Step
    from docmem.agent.recall import SessionInfo
    from docmem.protocols import Processor

log = logging.getLogger(__name__)

WAIT_FOR_OWNER = 15.0  # seconds a client waits for a starting (or closing) owner to answer
_POLL = 0.05
_SOCKET_MAX = 104  # sun_path is 104-108 bytes depending on the OS


def owner_record(settings: Settings, name: str) -> Path:
    return corpus_dir(settings, name) / "owner.json"


def read_owner(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(owner_record(settings, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data and "socket" in data else None


def _write_private(path: Path, text: str) -> None:
    """Written whole (rename) and readable by this user only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def run_dir(settings: Settings) -> Path:
    """``run/PID.sock`` of the owners; those of killed owners are swept here."""
    directory = settings.home / "run"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for stale in directory.glob("*.sock"):
        if stale.stem.isdigit() and not pid_alive(int(stale.stem)):
            stale.unlink(missing_ok=True)
    return directory


def bind_unix(path: Path) -> socket.socket:
    """A listening socket that only this user can connect to (mode 0600, set before listen)."""
    if len(os.fsencode(path)) >= _SOCKET_MAX:
        raise DocmemError(f"socket path {path} is too long for a Unix socket: use a shorter DOCMEM_HOME")
    if path.exists() and not socket_answers(str(path)):
        path.unlink()  # left by a killed owner
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


class _Resuming:
    """An ingest job that survives its owner: if the owner goes away mid-job, the same ingest is
    submitted to the corpus's next owner (maybe this process), and the incremental pipeline
    resumes where the manifest says it stopped."""

    def __init__(self, router: "Docmem", paths: Sequence[Path], corpus: str, options: IngestOptions) -> None:
        ops.check_paths(paths)
        self.router, self.paths, self.corpus, self.options = router, list(paths), corpus, options
        self.job = router._do(corpus, lambda b: b.ingest(self.paths, corpus=corpus, options=options),
                              create=True, embedder=options.embedder)
        self.id = self.job.id

    def events(self) -> Iterator[JobEvent]:
        for attempt in range(3):
            try:
                for event in self.job.events():
                    yield event
                    if event.kind in (JOB_DONE, JOB_FAILED):
                        return
            except OwnerGone as exc:
                if attempt == 2:
                    raise
                log.info("%s; resubmitting", exc)
            yield JobEvent(self.id, JOB_QUEUED, error="the corpus owner went away: resuming the ingest")
            self.router._routes.pop(self.corpus, None)
            self.job = self.router._do(self.corpus, lambda b: b.ingest(self.paths, corpus=self.corpus,
                                                                       options=self.options), create=True)

    def wait(self) -> JobEvent:
        return last_event(self.events())

    def cancel(self) -> None:
        self.job.cancel()


class Docmem:
    """The ``Service`` for a data home: per corpus, the local service if this process owns it
    (or can), else a client of its owner. ``serve=False``: own corpora without serving them."""

    def __init__(self, settings: Settings, *, serve: bool = True, workers: int | None = None,
                 wait: float = WAIT_FOR_OWNER, **server_options: Any) -> None:
        """``server_options`` go to ``docmem.server.run.OwnerServer`` (``docmem serve``: its
        socket path, ``open_on_demand``, ``port`` and ``token``, ``mcp_app``)."""
        self.settings = settings
        self.server_options = server_options
        self.local = LocalService(settings, on_open=self._owned, on_release=self._disowned, workers=workers)
        self.serve = serve
        self.wait = wait
        self.server: Any = None  # docmem.server.run.OwnerServer, started with the first corpus owned
        self._routes: dict[str, RemoteService] = {}
        self._lock = threading.Lock()
        self._starting: list[threading.Thread] = []

    # -- ownership --------------------------------------------------------------------------

    def start_serving(self) -> Any:
        """Listen now (``docmem serve``); other owners start with their first corpus."""
        with self._lock:
            if self.server is None:
                from docmem.server.run import OwnerServer

                options = dict(self.server_options)
                path = options.pop("socket_path", None) or run_dir(self.settings) / f"{os.getpid()}.sock"
                server = OwnerServer(self.local, path, **options)
                server.start()
                self.server = server
            return self.server

    def _owned(self, corpus: Corpus) -> None:
        """Serve a corpus this process just came to own. In the background: importing and starting
        the server (~0.25 s) would otherwise delay every command that finds its corpus free; a
        client arriving meanwhile waits for the record (lock held, no answer yet)."""
        if not self.serve:
            return

        def start() -> None:
            try:
                server = self.start_serving()
            except (DocmemError, OSError) as exc:
                log.warning("cannot serve corpus '%s' to other processes: %s", corpus.name, exc)
                return
            if self.local.owns(corpus.name):
                _write_private(owner_record(self.settings, corpus.name),
                               json.dumps({"pid": os.getpid(), "socket": str(server.socket_path)}))

        self._starting.append(start_thread(start, name=f"docmem-serve-{corpus.name}"))

    def wait_serving(self) -> None:
        """Until the corpora this process owns are served (their owner records written)."""
        for thread in list(self._starting):
            thread.join()

    def _disowned(self, name: str) -> None:
        record = read_owner(self.settings, name)
        if record and record.get("pid") == os.getpid():
            owner_record(self.settings, name).unlink(missing_ok=True)

    def route(self, name: str | None = None, *, create: bool = False,
              embedder: str | None = None) -> LocalService | RemoteService:
        """This process's service if it owns the corpus or can open it, else its owner's."""
        name = resolve_corpus(self.settings, name, create=create)
        if self.local.owns(name):
            return self.local
        if name in self._routes:
            return self._routes[name]
        serve_socket = self.settings.home / "docmem.sock"
        deadline = time.monotonic() + self.wait
        while True:
            record = read_owner(self.settings, name)
            if record and record["pid"] != os.getpid() and pid_alive(int(record["pid"])) \
                    and socket_answers(str(record["socket"])):
                address = str(record["socket"])  # the corpus's owner
            elif self.server is None and serve_socket.exists() and socket_answers(str(serve_socket)):
                address = str(serve_socket)  # `docmem serve` is up: it will own the corpus
            else:
                address = None
            if address is not None:
                remote = RemoteService(self.settings, address)
                self._routes[name] = remote
                return remote
            try:
                self.local.open_corpus(name, create=create, embedder=embedder)
                return self.local
            except CorpusInUse as exc:
                if time.monotonic() > deadline:
                    record = read_owner(self.settings, name)
                    holder = f"PID {record['pid']}" if record else "a process that does not serve it"
                    raise CorpusInUse(f"{exc} ({holder} did not answer on its socket within "
                                      f"{self.wait:.0f} s; is it stopped or an older docmem?)") from None
                time.sleep(_POLL)  # the owner is starting or closing: its socket or the lock will change

    def _do(self, name: str | None, fn: Callable[[Any], Any], *, create: bool = False,
            embedder: str | None = None) -> Any:
        name = resolve_corpus(self.settings, name, create=create)
        try:
            return fn(self.route(name, create=create, embedder=embedder))
        except OwnerGone:
            self._routes.pop(name, None)
            return fn(self.route(name, create=create, embedder=embedder))

    def _rebind(self, name: str) -> Callable[[], Any]:
        def rebind() -> Any:
            self._routes.pop(name, None)
            return self.route(name)
        return rebind

    # -- the Service --------------------------------------------------------------------------

    def corpora(self) -> list[CorpusInfo]:
        return self.local.corpora()

    def delete_corpus(self, name: str) -> None:
        try:
            self.local.delete_corpus(name)
        except CorpusInUse:
            self._do(name, lambda b: b.delete_corpus(name))

    def open_corpus(self, name: str | None = None, *, create: bool = False, embedder: str | None = None) -> Any:
        name = resolve_corpus(self.settings, name, create=create)

        def view_of(backend: LocalService | RemoteService) -> Any:
            if isinstance(backend, LocalService):
                return backend.open_corpus(name, create=create, embedder=embedder)
            view = backend.open_corpus(name, embedder=embedder)
            view.rebind = self._rebind(name)
            return view
        return self._do(name, view_of, create=create, embedder=embedder)

    def release(self, name: str) -> None:
        self._routes.pop(name, None)
        self.local.release(name)

    def search(self, query: str, *, corpus: str | None = None, page: int = 1, page_size: int | None = None,
               path: str | None = None, ranking: str | None = None,
               candidates: int | None = None) -> SearchPage:
        return self._do(corpus, lambda b: b.search(query, corpus=corpus, page=page, page_size=page_size,
                                                   path=path, ranking=ranking, candidates=candidates))

    def read(self, *, corpus: str | None = None, chunk_id: str | None = None, path: str | None = None,
             page: int | None = None, direction: str = "here", count: int = 4) -> ReadPage:
        return self._do(corpus, lambda b: b.read(corpus=corpus, chunk_id=chunk_id, path=path, page=page,
                                                 direction=direction, count=count))

    def ingest(self, paths: Sequence[Path], *, corpus: str | None = None,
               options: IngestOptions = IngestOptions()) -> _Resuming:
        return _Resuming(self, paths, corpus or self.settings.corpus, options)

    def ask(self, question: str, *, corpus: str | None = None, session: str | None = None,
            max_steps: int = 24, processor: "Processor | None" = None,
            on_text: Callable[[str], None] | None = None) -> Iterator["Step"]:
        return ops.ask_steps(self.open_corpus(corpus), self.settings, question, session=session,
                             max_steps=max_steps, processor=processor, on_text=on_text)

    def sessions(self) -> list["SessionInfo"]:
        return self.local.sessions()

    def close(self) -> None:
        """Stop being the owner: no new clients, queued jobs finished, in-flight requests
        answered, then the corpora closed and their locks released."""
        self.wait_serving()
        for name in list(self.local._corpora):
            self._disowned(name)
        others = [job for job in self.local.jobs.busy() if job.owner_pid not in (None, os.getpid())]
        if others:
            log.warning("finishing %d ingest job(s) that other docmem processes (PID %s) sent here first",
                        len(others), ", ".join(sorted({str(j.owner_pid) for j in others})))
        self.local.jobs.wait_idle()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.local.close()
        for remote in self._routes.values():
            remote.close()
        self._routes.clear()

    def __enter__(self) -> "Docmem":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
