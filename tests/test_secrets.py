"""API keys never reach the disk or another user's eyes (issue 9 item 4).

Every way of passing a key (flag and value, ``--flag=value``, environment, config.toml) is
used on real ``docmem`` processes; then the whole data home, the traces, the batch outputs
and everything printed are searched for the key's bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.agent_helpers import citing_server_policy
from tests.conftest import SAMPLE_DIR
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-test-Zq7SECRETkey4417"
QKEY = "qd-test-Wx9SECRETqdrant0042"


def _docmem(*args: str, env: dict[str, str], wait: bool = True) -> Any:
    cmd = [sys.executable, "-m", "docmem.cli", *args]
    if wait:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _files_holding(secret: str, *roots: Path) -> list[Path]:
    found = []
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        found += [p for p in paths if secret.encode() in p.read_bytes()]
    return found


@pytest.fixture
def env(docmem_home: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "QDRANT_API_KEY")}
    out["PYTHONPATH"] = str(REPO)
    return out


def test_no_way_of_passing_a_key_leaves_it_on_disk_or_in_a_message(docmem_home, env, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    shutil.copy(SAMPLE_DIR / "text" / "alice29.txt", root)
    printed: list[str] = []

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = _docmem(*args, env={**env, **(extra or {})})
        printed.extend([result.stdout, result.stderr])
        return result

    ingest = run("ingest", str(root), "--embedder", "none", f"--qdrant-api-key={QKEY}")
    assert ingest.returncode == 0, ingest.stderr

    gate = threading.Event()

    def held(body: dict[str, Any]) -> dict[str, Any]:
        if "White Rabbit" in json.dumps(body["messages"]):
            gate.wait(60)  # the first process holds the corpus until the test lets it answer
        return citing_server_policy(body)

    traces, outs = tmp_path / "traces", tmp_path / "outs"
    traces.mkdir()
    outs.mkdir()
    with FakeOpenAI(model="m", api_key=KEY) as server:
        llm = ["--model", "m", "--base-url", server.url]
        server.policy = held
        holder = _docmem("ask", f"--api-key={KEY}", f"--qdrant-api-key={QKEY}", "Who is the White Rabbit?",
                         *llm, "--trace", str(traces / "held.jsonl"), env=env, wait=False)
        try:
            while not server.chat_requests:  # the holder has the lock and is waiting for its answer
                assert holder.poll() is None, holder.communicate()
                threading.Event().wait(0.05)
            lock = docmem_home / "corpora" / "default" / "corpus.lock"
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600
            assert lock.read_text() == f"PID {holder.pid} (python -m docmem.cli ask)"
            second = run("ask", f"--api-key={KEY}", "Who?", *llm)  # goes through the holder (issue 11)
            assert second.returncode == 0, second.stderr
            assert "in use" not in second.stderr
        finally:
            gate.set()
        out, err = holder.communicate(timeout=60)
        printed.extend([out, err])
        assert holder.returncode == 0, err
        server.policy = citing_server_policy

        (docmem_home / "config.toml").write_text(f'api_key = "{KEY}"\nqdrant_api_key = "{QKEY}"\n')
        for name, extra in (("config", None), ("env", {"OPENAI_API_KEY": KEY, "QDRANT_API_KEY": QKEY})):
            asked = run("ask", "What did Alice drink?", *llm, "--session", name, "--json",
                        "--trace", str(traces / f"{name}.jsonl"), extra=extra)
            assert asked.returncode == 0, asked.stderr
        questions = tmp_path / "questions.txt"
        questions.write_text("Who is the White Rabbit?\nWhat did Alice drink?\n")
        batch = run("ask", "--questions", str(questions), "--api-key", KEY, "--qdrant-api-key", QKEY, *llm, "--jobs", "1",
                    "--out", str(outs / "a.jsonl"), "--out", str(outs / "a.csv"), "--out", str(outs / "a.md"))
        assert batch.returncode == 0, batch.stderr
        (docmem_home / "config.toml").unlink()
        assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {KEY}"}  # the key was used

    for secret in (KEY, QKEY):
        assert _files_holding(secret, docmem_home, traces, outs, questions) == []
        assert not any(secret in text for text in printed)
    for state in ("sessions.sqlite", "corpora/default/manifest.sqlite", "corpora/default/corpus.lock",
                  traces / "held.jsonl", traces / "env.jsonl"):
        assert stat.S_IMODE((docmem_home / state).stat().st_mode) == 0o600, state


def test_a_new_data_home_is_private(tmp_path, env):
    home = tmp_path / "fresh" / "home"
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("The White Rabbit is late.\n")
    result = _docmem("--home", str(home), "ingest", str(root), "--embedder", "none", env=env)
    assert result.returncode == 0, result.stderr
    for folder in (home, home / "corpora", home / "corpora" / "default"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert (home / "corpora" / "default" / "corpus.lock").read_text() == ""  # released


def test_a_lock_written_by_an_older_version_does_not_show_its_argv(tmp_path):
    import fcntl

    from docmem.errors import CorpusInUse
    from docmem.store.lock import CorpusLock

    path = tmp_path / "corpus.lock"
    path.write_text(f"PID 4242 (docmem ask --api-key={KEY})")
    path.chmod(0o644)
    with open(path, "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CorpusInUse) as caught:
            CorpusLock(path, "default").acquire()
    assert str(caught.value).startswith("corpus 'default' is in use by PID 4242 (docmem ask); wait")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
