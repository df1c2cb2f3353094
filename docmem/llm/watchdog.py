"""Ends a stream that stays busy but says nothing.

The client's read timeout only measures silence on the socket. A server (or a proxy) that
sends SSE comments (``: keep-alive``) or empty events forever keeps the socket busy while
no token ever comes, and the call would never end. The watchdog measures the time since
the last *token* instead, and past ``timeout`` shuts the socket down, which ends the
blocked read; ``fired`` then tells the caller why.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from docmem.threads import start_thread

__all__ = ["Watchdog"]


class Watchdog:
    def __init__(self, response: Any, timeout: float) -> None:
        self.timeout = timeout
        # Past the read timeout, with a margin: a socket that is merely silent is the read
        # timeout's to report ("stopped sending"); the watchdog is for one that stays busy.
        # Firing at the same moment made the two race for the error message.
        self.limit = timeout * 1.5 + 0.25
        self.fired = False
        self._last = time.monotonic()
        self._done = threading.Event()
        self._socket = _socket_of(response)
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        if self._socket is not None:
            self._thread = start_thread(self._watch, name="llm-watchdog")
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def beat(self) -> None:
        """A token arrived."""
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout / 4)):
            if time.monotonic() - self._last > self.limit:
                self.fired = True
                try:
                    assert self._socket is not None
                    self._socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return


def _socket_of(response: Any) -> socket.socket | None:
    """The response's socket, from the transport's public ``network_stream`` extension."""
    stream = (getattr(response, "extensions", None) or {}).get("network_stream")
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # a transport without it (a test double, HTTP/2): no watchdog
        return None
    return sock if isinstance(sock, socket.socket) else None
