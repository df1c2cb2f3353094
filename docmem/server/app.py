"""The owner's HTTP surface (Starlette): each route is one ``LocalService`` call.

Routes under ``/v1``; errors the user can act on come back as 400 with the message and the
error's class, so the client raises the same ``DocmemError``. Sync endpoints run in
Starlette's thread pool, so a long ingest stream never blocks a search.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from docmem import errors
from docmem.api.codec import ALLOWED, decode, encode
from docmem.api.local import LocalService
from docmem.schema import KIND_NOTE, IngestOptions

log = logging.getLogger(__name__)


class NotOwnedHere(errors.DocmemError):
    """This process does not hold that corpus (any more): ask the corpus's owner."""


class _BearerToken:
    """On TCP every request carries the data home's token; a Unix socket is guarded by its 0600 mode."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token and scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given, f"Bearer {self.token}"):
                await JSONResponse({"error": "missing or wrong bearer token", "type": "Unauthorized"},
                                   status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(exc: errors.DocmemError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=400)


def make_app(service: LocalService, *, open_on_demand: bool, token: str | None = None,
             mcp_app: ASGIApp | None = None, lifespan: Callable[..., Any] | None = None) -> Starlette:
    """``open_on_demand``: ``docmem serve`` opens (and owns) any corpus asked for; an owner that
    holds corpora for its own work (chat, ingest) serves only those."""

    def corpus_of(request: Request, create: bool = False, embedder: str | None = None) -> str:
        name = request.path_params["name"]
        if not service.owns(name) and not open_on_demand:
            raise NotOwnedHere(f"PID {os.getpid()} does not hold corpus '{name}'")
        service.open_corpus(name, create=create, embedder=embedder)
        return name

    def endpoint(fn: Callable[[Request, dict[str, Any]], Any], *, slow: bool = False) -> Callable[[Request], Any]:
        """Quick calls (a search is ~0.5 ms, mostly in Qdrant under the GIL) run on the event loop:
        a hop to the thread pool would cost more than the call. Slow ones (an ingest to queue, a
        corpus to delete, a job's event stream) run in the pool so the loop keeps answering."""
        async def handle(request: Request) -> Response:
            try:
                body = json.loads(await request.body() or b"{}") if request.method == "POST" else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return JSONResponse({"error": "the request body must be a JSON object", "type": "BadRequest"},
                                    status_code=400)
            name = request.path_params.get("name")
            heavy = slow or body.get("target") == "embedder" or (
                open_on_demand and name is not None and not service.owns(name))  # opening takes ~1 s
            try:
                result = await run_in_threadpool(fn, request, body) if heavy else fn(request, body)
            except errors.DocmemError as exc:
                return _error(exc)
            except (KeyError, TypeError, ValueError) as exc:  # a missing or mistyped field
                return JSONResponse({"error": f"bad request: {type(exc).__name__}: {exc}", "type": "BadRequest"},
                                    status_code=400)
            return result if isinstance(result, Response) else JSONResponse(result)
        return handle

    def health(request: Request, body: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "corpora": sorted(service._corpora)}

    def corpora(request: Request, body: dict[str, Any]) -> Any:
        return [i.as_dict() for i in service.corpora()]

    def info(request: Request, body: dict[str, Any]) -> Any:
        corpus = service.open_corpus(corpus_of(request))
        return {"name": corpus.name, "embedder": corpus.embedder_spec, "dense_dim": corpus.store.dense_dim}

    def search(request: Request, body: dict[str, Any]) -> Any:
        keys = ("page", "page_size", "path", "ranking", "candidates")
        return service.search(body["query"], corpus=corpus_of(request),
                              **{k: body[k] for k in keys if k in body}).as_dict()

    def read(request: Request, body: dict[str, Any]) -> Any:
        keys = ("chunk_id", "path", "page", "direction", "count")
        return service.read(corpus=corpus_of(request), **{k: body[k] for k in keys if k in body}).as_dict()

    def call(request: Request, body: dict[str, Any]) -> Any:
        target, method = body.get("target"), body.get("method")
        if method not in ALLOWED.get(target, ()):  # type: ignore[arg-type]
            return JSONResponse({"error": f"{target}.{method} is not callable", "type": "Forbidden"},
                                status_code=403)
        corpus = service.open_corpus(corpus_of(request))
        args = decode(body.get("args") or [])
        if method == "upsert" and not all(getattr(c, "kind", None) == KIND_NOTE for c in args[0]):
            return JSONResponse({"error": "clients store agent notes only; documents come through ingest",
                                 "type": "Forbidden"}, status_code=403)
        obj = {"store": corpus.store, "manifest": corpus.manifest, "embedder": corpus.embedder}[target]
        if obj is None:
            raise errors.DocmemError(f"corpus '{corpus.name}' has no dense embedder")
        return {"result": encode(getattr(obj, method)(*args))}

    def ingest(request: Request, body: dict[str, Any]) -> Any:
        options = IngestOptions.from_dict(body.get("options") or {})
        name = corpus_of(request, create=True, embedder=options.embedder)
        job = service.ingest([Path(p) for p in body["paths"]], corpus=name, options=options,
                             client_pid=body.get("client_pid"))
        return {"job": job.id}

    def events(request: Request, body: dict[str, Any]) -> Any:
        job = service.jobs.jobs.get(request.path_params["job"])
        if job is None:
            raise errors.DocmemError(f"no ingest job {request.path_params['job']}")

        def lines() -> Iterator[bytes]:
            for event in job.events():
                yield (json.dumps(event.as_dict()) + "\n").encode()
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    def cancel(request: Request, body: dict[str, Any]) -> Any:
        job = service.jobs.jobs.get(request.path_params["job"])
        if job is not None:
            job.cancel()
        return {"cancelled": job is not None}

    def delete(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        if not open_on_demand:  # a chat or an ingest is working on it: deleting would pull it from under them
            raise errors.CorpusInUse(f"corpus '{name}' is open in PID {os.getpid()}, which is working on it: "
                                     "close that docmem first, then delete it")
        service.delete_corpus(name)
        return {"deleted": request.path_params["name"]}

    routes: list[Any] = [
        Route("/v1/health", endpoint(health)),
        Route("/v1/corpora", endpoint(corpora)),
        Route("/v1/corpora/{name}", endpoint(info)),
        Route("/v1/corpora/{name}/search", endpoint(search), methods=["POST"]),
        Route("/v1/corpora/{name}/read", endpoint(read), methods=["POST"]),
        Route("/v1/corpora/{name}/call", endpoint(call), methods=["POST"]),
        Route("/v1/corpora/{name}/ingest", endpoint(ingest, slow=True), methods=["POST"]),
        Route("/v1/corpora/{name}/delete", endpoint(delete, slow=True), methods=["POST"]),
        Route("/v1/jobs/{job}/events", endpoint(events, slow=True)),
        Route("/v1/jobs/{job}/cancel", endpoint(cancel), methods=["POST"]),
    ]
    if mcp_app is not None:
        routes.extend(mcp_app.routes)  # its /mcp route; its session manager runs in ``lifespan``
    return Starlette(routes=routes, middleware=[Middleware(_BearerToken, token=token)], lifespan=lifespan)
