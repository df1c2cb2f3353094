"""Running the owner's app with uvicorn in a background thread, on sockets bound here.

The Unix socket is bound before the thread starts (mode 0600), so a client that connects
while uvicorn is still starting waits in the listen queue instead of failing.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn

from docmem.api.local import LocalService
from docmem.api.owner import bind_unix
from docmem.config import Settings
from docmem.server.app import make_app
from docmem.threads import start_thread

log = logging.getLogger(__name__)


def token_path(settings: Settings) -> Path:
    return settings.home / "server.token"


def server_token(settings: Settings) -> str:
    """The bearer token for TCP clients: made once, kept 0600 in the data home."""
    from docmem.api.owner import _write_private

    path = token_path(settings)
    if path.exists():
        path.chmod(0o600)
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return token


class OwnerServer:
    """One uvicorn server per listening socket: the Unix socket (no token: its mode guards it)
    and, with ``port``, loopback TCP (bearer token)."""

    def __init__(self, service: LocalService, socket_path: Path, *, open_on_demand: bool = False,
                 port: int | None = None, token: str | None = None, mcp_app: Any = None,
                 lifespan: Any = None) -> None:
        self.service = service
        self.socket_path = socket_path
        self.open_on_demand = open_on_demand
        self.port = port
        self.token = token
        self.mcp_app = mcp_app
        self.lifespan = lifespan
        self._servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(self) -> None:
        listeners: list[tuple[socket.socket, str | None]] = [(bind_unix(self.socket_path), None)]
        if self.port is not None:
            tcp = socket.create_server(("127.0.0.1", self.port), backlog=128)
            self.port = tcp.getsockname()[1]
            listeners.append((tcp, self.token))
        for sock, token in listeners:
            tcp = token is not None  # MCP only on loopback TCP: its clients speak HTTP to a host:port
            app = make_app(self.service, open_on_demand=self.open_on_demand, token=token,
                           mcp_app=self.mcp_app if tcp else None, lifespan=self.lifespan if tcp else None)
            config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                    lifespan="on" if tcp and self.lifespan else "off")
            server = uvicorn.Server(config)
            thread = start_thread(server.run, kwargs={"sockets": [sock]},
                                  name=f"docmem-serve-{'tcp' if token else 'unix'}")
            self._servers.append((server, thread))

    def wait_started(self, timeout: float = 10.0) -> bool:
        for server, thread in self._servers:
            while not server.started and thread.is_alive():
                thread.join(0.02)
        return all(server.started for server, _ in self._servers)

    def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        for _, thread in self._servers:
            thread.join(10)
        self._servers = []
        self.socket_path.unlink(missing_ok=True)
