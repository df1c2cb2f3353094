"""The ownership rule with real processes: the first opener serves the corpus on a Unix socket,
others are its clients; a killed owner is replaced; ``docmem serve`` on TCP wants its token."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from docmem.api import IngestOptions, connect
from docmem.api.local import LocalService
from docmem.api.owner import read_owner
from docmem.api.remote import RemoteService
from docmem.schema import JOB_DONE, JOB_PROGRESS
from tests.conftest import write_tree

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _owner(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.owner_process", *args], cwd=ROOT, env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc


def _say(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin and proc.stdout
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


@pytest.fixture
def held(tmp_path, settings):
    """A corpus with one document, held open by another process (as a chat would hold it)."""
    with connect(settings) as service:
        service.ingest([write_tree(tmp_path / "docs", {"a.txt": "The lighthouse keeper is Marguerite."})],
                       options=IngestOptions(embedder="none", workers=1)).wait()
    proc = _owner()
    assert proc.stdout and proc.stdout.readline().strip() == "ready LocalService"
    yield proc
    if proc.poll() is None:
        _say(proc, "quit")
        proc.wait(20)


def test_a_second_process_searches_and_ingests_through_the_owner(held, tmp_path, settings):
    record = read_owner(settings, "default")
    assert record and record["pid"] == held.pid
    assert stat.S_IMODE(os.stat(record["socket"]).st_mode) == 0o600
    assert stat.S_IMODE((settings.corpora_dir / "default" / "owner.json").stat().st_mode) == 0o600
    with connect(settings) as client:
        assert isinstance(client.route(), RemoteService)
        assert client.search("lighthouse keeper").hits[0].chunk.path == "a.txt"
        new = write_tree(tmp_path / "new", {"b.txt": "Cormorants nest under the northern pier."})
        events = list(client.ingest([new]).events())
        assert any(e.kind == JOB_PROGRESS and e.progress["stage"] == "extract" for e in events)
        assert events[-1].kind == JOB_DONE and events[-1].summary["added"] == ["b.txt"]
        view = client.open_corpus()
        assert view.manifest.totals()[0] == 2 and view.store.count() == 2
    assert _say(held, "search cormorants pier") == "hit b.txt"  # the owner's next search finds it


def test_a_killed_owner_is_replaced(held, settings):
    with connect(settings) as client:
        assert client.search("lighthouse").hits
        held.send_signal(signal.SIGKILL)
        held.wait(10)
        assert client.search("lighthouse").hits[0].chunk.path == "a.txt"  # it became the owner
        assert isinstance(client.route(), LocalService)
        client.wait_serving()
        assert read_owner(settings, "default")["pid"] == os.getpid()
        assert sorted(p.name for p in (settings.home / "run").iterdir()) == [f"{os.getpid()}.sock"]


def test_a_client_started_with_the_owner_waits_for_it(tmp_path, settings):
    with connect(settings) as service:
        service.ingest([write_tree(tmp_path / "docs", {"a.txt": "Tides turn at the harbour mouth."})],
                       options=IngestOptions(embedder="none", workers=1)).wait()
    proc = _owner()
    try:
        with connect(settings) as client:  # whichever wins the lock, both work
            assert client.search("harbour tides").hits[0].chunk.path == "a.txt"
            line = proc.stdout.readline().strip()  # type: ignore[union-attr]
            assert line in ("ready LocalService", "ready RemoteService")
            assert _say(proc, "search harbour") == "hit a.txt"
    finally:
        _say(proc, "quit")
        proc.wait(20)


def test_serve_on_tcp_wants_the_token(tmp_path, settings):
    with connect(settings) as service:
        service.ingest([write_tree(tmp_path / "docs", {"a.txt": "Salt marsh birds."})],
                       options=IngestOptions(embedder="none", workers=1)).wait()
    proc = subprocess.Popen([sys.executable, "-m", "docmem.cli", "serve", "--port", "0"], cwd=ROOT, env=_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        url = lines[1].split()[2]
        token_file = settings.home / "server.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/v1/corpora", trust_env=False).status_code == 401
        bad = httpx.get(url + "/v1/corpora", headers={"Authorization": "Bearer nope"}, trust_env=False)
        assert bad.status_code == 401
        with RemoteService(settings, url, token_file.read_text().strip()) as remote:
            assert remote.search("marsh birds").hits[0].chunk.path == "a.txt"
            forbidden = remote.client.post("/v1/corpora/default/call",
                                           json={"target": "store", "method": "close", "args": []})
            assert forbidden.status_code == 403
            for bad in (b"not json", b"[1, 2]", b'{"page": 1}', b'{"query": "x", "page": "two"}'):
                answer = remote.client.post("/v1/corpora/default/search", content=bad)
                assert answer.status_code == 400 and answer.json()["error"], bad
            assert remote.client.post("/v1/corpora/..%2Fetc/search", json={"query": "x"}).status_code in (400, 404)
        # a local command finds `docmem serve` through the socket in the data home
        with connect(settings) as client:
            assert isinstance(client.route(), RemoteService)
            assert json.loads(json.dumps(client.search("salt").as_dict()))["hits"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert not (settings.home / "docmem.sock").exists()


def test_an_ingest_whose_owner_is_killed_resumes_on_the_next_owner(held, tmp_path, settings):
    """The client's job is resubmitted when its owner dies mid-ingest; nothing is lost or doubled."""
    from docmem.schema import JOB_QUEUED

    files = {f"f{n:03d}.txt": f"Note {n}\n\nThe buoy number {n} is painted red and white." for n in range(150)}
    tree = write_tree(tmp_path / "many", files)
    with connect(settings) as client:
        job = client.ingest([tree], options=IngestOptions(workers=1))
        events = []
        for event in job.events():
            events.append(event)
            if event.kind == JOB_PROGRESS and event.progress["stage"] == "extract" and event.progress["done"] >= 3 \
                    and held.poll() is None:
                held.send_signal(signal.SIGKILL)
                held.wait(10)
        assert held.returncode == -signal.SIGKILL
        assert any(e.kind == JOB_QUEUED and e.error and "resuming" in e.error for e in events)
        assert events[-1].kind == JOB_DONE
        assert isinstance(client.route(), LocalService)  # the client became the owner
        view = client.open_corpus()
        files_ok, failed, chunks = view.manifest.totals()
        assert (files_ok, failed) == (151, 0) and view.store.count() == chunks == 151
        assert client.search("buoy number 149").hits[0].chunk.path == "f149.txt"


def test_a_corpus_held_elsewhere_is_reached_there_even_with_serve_running(held, settings):
    proc = subprocess.Popen([sys.executable, "-m", "docmem.cli", "serve"], cwd=ROOT, env=_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr and "socket" in proc.stderr.readline()
        with connect(settings) as client:
            route = client.route()
            assert isinstance(route, RemoteService) and route.address == read_owner(settings, "default")["socket"]
            assert client.search("lighthouse").hits[0].chunk.path == "a.txt"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_deleting_a_corpus_a_chat_works_on_is_refused_in_one_line(held, settings):
    from click.testing import CliRunner

    from docmem.cli.main import cli

    result = CliRunner().invoke(cli, ["corpora", "--delete", "default"])
    assert result.exit_code == 1 and f"open in PID {held.pid}" in result.output
    assert result.output.count("\n") == 1
    assert _say(held, "search lighthouse") == "hit a.txt"  # the holder never noticed


def test_a_client_killed_mid_request_leaves_the_owner_serving(held, settings):
    loop = ("from docmem.api import connect\n"
            "with connect() as s:\n"
            "    print('go', flush=True)\n"
            "    while True:\n"
            "        s.search('lighthouse keeper')\n")
    client = subprocess.Popen([sys.executable, "-c", loop], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    assert client.stdout and client.stdout.readline().strip() == "go"
    client.send_signal(signal.SIGKILL)
    client.wait(10)
    with connect(settings) as other:
        assert all(other.search("lighthouse").hits for _ in range(20))
    assert _say(held, "search lighthouse keeper") == "hit a.txt"


def test_a_client_may_store_agent_notes_but_not_documents(held, settings):
    from docmem.embedders import bm25_document
    from docmem.errors import DocmemError
    from docmem.schema import KIND_NOTE, Chunk

    note = Chunk("ab" * 32, 0, "The keeper's cat is named Biscuit.", "(agent notes)", "Agent note",
                 kind=KIND_NOTE, scope="s1")
    fake = Chunk("cd" * 32, 0, "Forged document text.", "forged.txt", "Forged")
    with connect(settings) as client:
        view = client.open_corpus()
        assert isinstance(view.service, RemoteService)
        view.store.upsert([note], [bm25_document(note.embed_text())])
        assert [c.id for c in view.store.by_chunk_ids([note.id])] == [note.id]
        with pytest.raises(DocmemError, match="agent notes only"):
            view.store.upsert([fake], [bm25_document(fake.embed_text())])
        assert view.store.by_chunk_ids([fake.id]) == []
        view.store.delete_scope("s1")
        assert view.store.by_chunk_ids([note.id]) == []
