"""Time to error when the LLM server misbehaves, with docmem's default settings, as a user sees it.

`docmem ask` runs as a real process against the fake OpenAI-compatible server on 127.0.0.1,
scripted to fail in one way per row: hung (reads the request, never answers), resetting the
connection (TCP RST), refusing connections (nothing listens), an HTML page, a stream that
stalls midway, and a slow model streaming steadily for longer than the timeout (which must
*not* fail). Reported: seconds from start to exit, exit status, requests the server saw,
and the error line.

    .venv/bin/python bench/llm_faults.py [--quick]     # ~10 min (the hung row waits 2 x 120 s)

``--quick`` sets ``--timeout 5`` (~1 min).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, SAMPLE, machine, table, write_json  # noqa: E402
from docmem.config import Settings  # noqa: E402
from tests.agent_helpers import citing_server_policy  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

DEFAULT_TIMEOUT = Settings().timeout
SLOW = "The White Rabbit is late, and Alice follows him down the rabbit hole. " * 3


PIECE_DELAY = [30.0]  # a quarter of the timeout: set by main()


def _slow_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The citing policy; its first reply streams a piece every quarter timeout, ~1.5 timeouts in all."""
    reply = citing_server_policy(body)
    if any(m["role"] == "tool" for m in body["messages"]):
        return reply
    return {**reply, "chunk_delay": PIECE_DELAY[0]}


FAULTS: dict[str, Callable[[dict[str, Any]], Any] | None] = {
    "hung server": lambda body: {"hang": True},
    "connection reset": lambda body: {"reset": True},
    "connection refused": None,
    "HTML page (proxy / web UI)": lambda body: {"body": "<html><title>Open WebUI</title></html>"},
    "stream stalls midway": lambda body: {"content": SLOW, "stall_after_chunks": 4},
    "slow model, steady stream": _slow_answer,
}


def run(name: str, home: Path, timeout: float | None) -> dict[str, Any]:
    policy = FAULTS[name]
    env = {**os.environ, "DOCMEM_HOME": str(home), "PYTHONPATH": str(REPO)}
    extra = ["--timeout", str(timeout)] if timeout else []
    with FakeOpenAI(model="m", piece_chars=40) as server:
        url = server.url
        if policy is None:
            server.stop()
            with socket.socket() as sock:  # a port nobody listens on
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        else:
            server.policy = policy
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "docmem.cli", "ask", "Who is the White Rabbit?",
                               "--model", "m", "--base-url", url, "-q", *extra],
                              cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - started
        requests = len(server.chat_requests) if policy is not None else 0
    said = " ".join(proc.stderr.split())
    error = said[said.rfind("Error:"):] if "Error:" in said else ""
    return {"fault": name, "seconds": round(seconds, 1), "exit": proc.returncode, "requests": requests,
            "error": error.replace(url, "URL")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"--timeout 5 instead of the default {DEFAULT_TIMEOUT:g}")
    opts = parser.parse_args()
    timeout = 5.0 if opts.quick else None
    PIECE_DELAY[0] = (timeout or DEFAULT_TIMEOUT) / 4
    home = Path(tempfile.mkdtemp(prefix="docmem-bench-faults-"))
    docs = home / "docs"
    docs.mkdir()
    shutil.copy(SAMPLE / "text" / "alice29.txt", docs)
    env = {**os.environ, "DOCMEM_HOME": str(home), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "docmem.cli", "ingest", str(docs), "--embedder", "none"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    rows = [run(name, home, timeout) for name in FAULTS]
    shutil.rmtree(home, ignore_errors=True)
    print(table(["fault", "seconds", "exit", "requests", "error"],
                [[r["fault"], r["seconds"], r["exit"], r["requests"], r["error"][:110]] for r in rows],
                title=f"docmem ask against a misbehaving server (timeout {timeout or DEFAULT_TIMEOUT:g} s)"))
    path = write_json("llm_faults-quick" if opts.quick else "llm_faults",
                      {"machine": machine(), "timeout": timeout or DEFAULT_TIMEOUT, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
