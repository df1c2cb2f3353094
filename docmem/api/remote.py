"""``RemoteService``: a client of the process that owns a corpus, with the same methods and
results as ``LocalService`` (httpx over the owner's Unix socket, or loopback TCP + token).

The agent runs here, in the caller, against a ``RemoteCorpus`` whose store, manifest and
embedder are the owner's: the LLM and its credentials never leave the caller's process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import httpx

from docmem import errors
from docmem.api import ops
from docmem.api.codec import ALLOWED, decode, encode
from docmem.config import Settings
from docmem.schema import CorpusInfo, IngestOptions, JobEvent, ReadPage, SearchPage
from docmem.store.corpus import resolve_corpus

if TYPE_CHECKING:
    from docmem.agent.loop import Step
    from docmem.agent.recall import SessionInfo
    from docmem.protocols import Processor

# Generous: an alive owner can be busy for minutes, e.g. in Qdrant Edge's optimize() after an
# ingest, which holds the GIL (~150 s at 100k dense chunks); a dead one fails to connect at once.
READ_TIMEOUT = 600.0
TIMEOUT = httpx.Timeout(READ_TIMEOUT, connect=5.0)


class OwnerGone(errors.DocmemError):
    """The owner closed its socket (it exited or was killed): find the corpus's owner again."""


class Unauthorized(errors.DocmemError):
    """The TCP server refused the bearer token."""


def _raise(response: httpx.Response) -> Any:
    if response.status_code == 200:
        return response.json()
    try:
        data = response.json()
    except ValueError:
        raise errors.DocmemError(f"the corpus owner answered {response.status_code}") from None
    kind = getattr(errors, data.get("type", ""), None)
    if data.get("type") == "NotOwnedHere":
        raise OwnerGone(data["error"])
    if data.get("type") == "Unauthorized":
        raise Unauthorized("the docmem server refused the token: read it from server.token in its data home")
    cls = kind if isinstance(kind, type) and issubclass(kind, errors.DocmemError) else errors.DocmemError
    raise cls(data.get("error") or f"the corpus owner answered {response.status_code}")


def make_client(address: str, token: str | None = None) -> httpx.Client:
    """``address``: a Unix socket path, or ``http://127.0.0.1:PORT``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if address.startswith("http://"):
        return httpx.Client(base_url=address, headers=headers, timeout=TIMEOUT, trust_env=False)
    return httpx.Client(transport=httpx.HTTPTransport(uds=address), base_url="http://docmem",
                        headers=headers, timeout=TIMEOUT, trust_env=False)


class _Part:
    """One of store / manifest / embedder of a remote corpus: each allowed method is a call."""

    def __init__(self, corpus: "RemoteCorpus", target: str, **attrs: Any) -> None:
        self._corpus, self._target = corpus, target
        self.__dict__.update(attrs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in ALLOWED[self._target]:
            raise AttributeError(f"{self._target}.{method} is not available from a corpus owner")
        return lambda *args: self._corpus.call(self._target, method, args)


class RemoteCorpus:
    """A ``CorpusView`` of a corpus another process owns."""

    def __init__(self, service: "RemoteService", name: str,
                 rebind: Callable[[], Any] | None = None) -> None:
        self.service = service
        self.name = name
        self.rebind = rebind  # when the owner goes: the next backend (a service) for this corpus
        self._local: Any = None  # the corpus itself, once this process has become its owner
        self.settings = service.settings
        info = service.get(f"/v1/corpora/{name}")
        self.embedder_spec = info["embedder"]
        self.store = _Part(self, "store", dense_dim=info["dense_dim"])
        self.manifest = _Part(self, "manifest")
        self._embedder = _Part(self, "embedder", dim=info["dense_dim"]) if info["dense_dim"] else None

    @property
    def has_dense(self) -> bool:
        return self._embedder is not None

    @property
    def embedder(self) -> Any:
        return self._embedder

    def call(self, target: str, method: str, args: Sequence[Any]) -> Any:
        """Every allowed call is idempotent (reads; notes by content hash), so when the owner
        goes away mid-call it is made once more on the corpus's next owner, maybe this process."""
        if self._local is not None:
            return getattr(getattr(self._local, target), method)(*args)
        try:
            reply = self.service.post(f"/v1/corpora/{self.name}/call",
                                      {"target": target, "method": method, "args": encode(list(args))})
        except OwnerGone:
            if self.rebind is None:
                raise
            backend = self.rebind()
            if isinstance(backend, RemoteService):
                self.service = backend
            else:
                self._local = backend.open_corpus(self.name)
            return self.call(target, method, args)
        return decode(reply["result"])


class RemoteJob:
    """An ingest job running in the owner; ``events()`` streams them (NDJSON)."""

    def __init__(self, service: "RemoteService", job_id: str) -> None:
        self.service, self.id = service, job_id

    def cancel(self) -> None:
        try:
            self.service.post(f"/v1/jobs/{self.id}/cancel", {})
        except errors.DocmemError:
            pass  # the owner is gone, and the job with it

    def events(self) -> Iterator[JobEvent]:
        try:
            with self.service.client.stream("GET", f"/v1/jobs/{self.id}/events", timeout=httpx.Timeout(
                    None, connect=5.0)) as response:
                if response.status_code != 200:
                    response.read()
                    _raise(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield JobEvent.from_dict(json.loads(line))
        except httpx.TransportError as exc:
            raise OwnerGone(f"the corpus owner went away during ingest job {self.id} ({exc})") from exc


class RemoteService:
    """The ``Service`` of the owner at ``address``."""

    def __init__(self, settings: Settings, address: str, token: str | None = None) -> None:
        self.settings = settings
        self.address = address
        self.client = make_client(address, token)

    def get(self, path: str) -> Any:
        return self._send(lambda: self.client.get(path))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._send(lambda: self.client.post(path, json=body))

    def _send(self, request: Callable[[], httpx.Response]) -> Any:
        try:
            return _raise(request())
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
            raise errors.DocmemError(
                f"the docmem process that owns this corpus ({self.address}) did not answer within "
                f"{READ_TIMEOUT:.0f} s; it is alive but busy (or stuck): try again, or stop it") from exc
        except httpx.TransportError as exc:  # refused, reset, closed mid-answer: it went away
            raise OwnerGone(f"no corpus owner at {self.address} ({exc})") from exc

    def _name(self, corpus: str | None) -> str:
        return resolve_corpus(self.settings, corpus)  # the owner shares this data home

    def corpora(self) -> list[CorpusInfo]:
        return [CorpusInfo(**i) for i in self.get("/v1/corpora")]

    def delete_corpus(self, name: str) -> None:
        self.post(f"/v1/corpora/{name}/delete", {})

    def open_corpus(self, name: str | None = None, *, create: bool = False,
                    embedder: str | None = None) -> RemoteCorpus:
        corpus = RemoteCorpus(self, self._name(name))
        if embedder is not None and embedder != corpus.embedder_spec:
            raise errors.EmbedderMismatch(
                f"corpus '{corpus.name}' was built with embedder {corpus.embedder_spec}, not {embedder}: "
                f"drop --embedder, or ingest into another --corpus")
        return corpus

    def release(self, name: str) -> None:
        """Nothing to let go: the owner keeps the corpus open for its own work."""

    def search(self, query: str, *, corpus: str | None = None, page: int = 1, page_size: int | None = None,
               path: str | None = None, ranking: str | None = None,
               candidates: int | None = None) -> SearchPage:
        s = self.settings  # this caller's defaults, not the owner's
        body = {"query": query, "page": page, "page_size": page_size or s.page_size, "path": path,
                "ranking": ranking or s.fusion, "candidates": candidates or s.candidates}
        return SearchPage.from_dict(self.post(f"/v1/corpora/{self._name(corpus)}/search", body))

    def read(self, *, corpus: str | None = None, chunk_id: str | None = None, path: str | None = None,
             page: int | None = None, direction: str = "here", count: int = 4) -> ReadPage:
        body = {"chunk_id": chunk_id, "path": path, "page": page, "direction": direction, "count": count}
        return ReadPage.from_dict(self.post(f"/v1/corpora/{self._name(corpus)}/read", body))

    def ingest(self, paths: Sequence[Path], *, corpus: str | None = None,
               options: IngestOptions = IngestOptions()) -> RemoteJob:
        ops.check_paths(paths)
        body = {"paths": [str(Path(p).expanduser().absolute()) for p in paths], "options": options.as_dict(),
                "client_pid": os.getpid()}
        return RemoteJob(self, self.post(f"/v1/corpora/{self._name(corpus)}/ingest", body)["job"])

    def ask(self, question: str, *, corpus: str | None = None, session: str | None = None,
            max_steps: int = 24, processor: "Processor | None" = None,
            on_text: Callable[[str], None] | None = None) -> Iterator["Step"]:
        return ops.ask_steps(self.open_corpus(corpus), self.settings, question, session=session,
                             max_steps=max_steps, processor=processor, on_text=on_text)

    def sessions(self) -> list["SessionInfo"]:
        return ops.saved_sessions(self.settings)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "RemoteService":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
