"""``docmem mcp`` driven by the MCP SDK's own client over stdio: tools listed, a paged search
with the truthful header, read on, a cited answer from ``ask`` (real openai client against
the fake server), and ingest only under the configured roots."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from docmem.api import IngestOptions, connect
from tests.agent_helpers import citing_server_policy
from tests.conftest import write_tree
from tests.fake_openai import FakeOpenAI

pytest.importorskip("mcp")
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOG = "\n\n".join(f"Entry {n}. The harbour master logged tide {n} at the north quay." for n in range(30))


def _params(home: Path, *args: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(PYTHONPATH=str(ROOT), DOCMEM_HOME=str(home))
    return StdioServerParameters(command=sys.executable, args=["-m", "docmem.cli", "mcp", *args], env=env,
                                 cwd=str(ROOT))


async def _session(params: StdioServerParameters, body: Any) -> Any:
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def corpus(tmp_path, settings):
    tides = {f"tide{n:02d}.txt": f"Tide {n}\n\nThe harbour master logged tide {n} at the quay." for n in range(12)}
    docs = write_tree(tmp_path / "docs", {"keeper.txt": "The lighthouse keeper is called Marguerite Ostrander.",
                                          "log.md": "# Harbour log\n\n" + LOG, **tides})
    with connect(settings) as service:
        service.ingest([docs], options=IngestOptions(embedder="none", workers=1)).wait()
    return settings


def test_tools_search_read_and_a_cited_answer_over_stdio(corpus):
    with FakeOpenAI(model="gpt-4o-mini") as llm:
        llm.policy = citing_server_policy

        async def body(session: ClientSession) -> None:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) == {"search", "read", "ask", "corpora"}  # no ingest without the flag
            assert "chunk id" in (tools["search"].description or "")
            page = _text(await session.call_tool("search", {"query": "harbour master tide", "page": 2}))
            assert page.startswith("Showing results 6-10 of ") and "(page 2 of " in page
            chunk = page.split("chunk ", 1)[1].split(" ", 1)[0]
            read = _text(await session.call_tool("read", {"chunk_id": chunk}))
            path = page.split(f"chunk {chunk} | ", 1)[1].split("\n", 1)[0].split(" |")[0]
            assert read.startswith(f"{path} (") and f"[chunk {chunk} | {path}]" in read
            missing = await session.call_tool("read", {"chunk_id": "000000000000-0"})
            assert missing.is_error and "no chunk 000000000000-0" in _text(missing)
            answer = await session.call_tool("ask", {"question": "Who is the lighthouse keeper?"})
            data = answer.structured_content
            assert data["status"] == "answered", data
            assert data["citations"][0]["verified"] and data["citations"][0]["path"] == "keeper.txt"
            listed = (await session.call_tool("corpora", {})).structured_content
            assert "default" in str(listed)

        anyio.run(_session, _params(corpus.home, "--model", llm.model, "--base-url", llm.url, "--api-key", "sk-t"),
                  body)
    assert any(m["role"] == "tool" for m in llm.chat_requests[-1]["messages"])  # the model saw a search page


def test_ingest_tool_only_under_its_roots(corpus, tmp_path):
    allowed = write_tree(tmp_path / "allowed", {"new.txt": "Cormorants nest under the northern pier."})
    outside = write_tree(tmp_path / "outside", {"secret.txt": "Not for the index."})
    (allowed / "escape").symlink_to(outside)

    async def body(session: ClientSession) -> None:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert "ingest" in tools
        refused = await session.call_tool("ingest", {"paths": [str(outside)]})
        assert refused.is_error and "not under an allowed root" in _text(refused)
        sneaky = await session.call_tool("ingest", {"paths": [str(allowed / "escape")]})
        assert sneaky.is_error
        done = await session.call_tool("ingest", {"paths": [str(allowed / "new.txt")]})
        assert not done.is_error and done.structured_content["added"] == ["new.txt"]
        found = _text(await session.call_tool("search", {"query": "cormorants pier"}))
        assert "new.txt" in found and "secret.txt" not in found

    anyio.run(_session, _params(corpus.home, "--allow-ingest", "--root", str(allowed)), body)


def test_serve_offers_mcp_over_streamable_http_with_its_token(corpus):
    import signal
    import subprocess

    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCMEM_HOME": str(corpus.home)}
    proc = subprocess.Popen([sys.executable, "-m", "docmem.cli", "serve", "--port", "0", "--mcp"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr
        url = next(line for line in iter(proc.stderr.readline, "") if "/mcp" in line).split()[-1]
        token = (corpus.home / "server.token").read_text().strip()
        assert httpx2.post(url, json={}).status_code == 401

        async def main() -> str:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        assert {t.name for t in (await session.list_tools()).tools} >= {"search", "ask"}
                        return _text(await session.call_tool("search", {"query": "lighthouse keeper"}))

        assert "keeper.txt" in anyio.run(main)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_document_s_control_bytes_never_reach_the_client():
    """A document can carry terminal escapes and bidi overrides; the MCP client shows the text
    (often in a terminal), so search and read replace them as the CLI does. Lines stay in read."""
    from docmem.mcp.server import render_page, render_read
    from docmem.schema import Chunk, Hit, ReadPage, SearchPage

    chunk = Chunk(doc_hash="e" * 64, index=0, text="Run \x1b[2J\x1b]0;owned\x07 now.\nSecond line",
                  path="evil\u202egpj.exe", title="T\x1b[31m", headings=("Head\x1b[1m",))
    page = render_page(SearchPage("run", 1, 5, [Hit(1, 0.5, chunk)], 1, False, "hybrid"))
    read = render_read(ReadPage(chunk.path, chunk.title, [chunk], 1))
    for shown in (page, read):
        assert not any(ch in shown for ch in "\x1b\x07\u202e"), repr(shown)
        assert "Run ?[2J?]0;owned? now." in shown and "evil?gpj.exe" in shown
    assert "Head?[1m" in page and "now.\nSecond line" in read
