"""Bad input gets a one-line reason and loses nothing; crashes and concurrent writers are safe."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from docmem.store.corpus import open_corpus
from ingest import extract
from ingest.pipeline import ingest
from tests.conftest import write_tree


def _pdf(pages: list[str], password: str | None = None) -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for text in pages:
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    if password is None:
        return buf.getvalue()
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(buf.getvalue())))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    good_pdf = _pdf(["Quarterly turbine report page one", "Vibration levels were nominal on page two"])
    root = write_tree(tmp_path / "bad", {
        "good.md": "# Good\n\nThe pump station was inspected in March.\n",
        "good.pdf": good_pdf,
        "corrupt.pdf": good_pdf[: len(good_pdf) // 2],
        "locked.pdf": _pdf(["Secret page"], password="hunter2"),
        "empty.txt": "",
        "binary.txt": b"\x00\x01\x02\x03ELF\x00\x00" * 50,
        "latin1.txt": "Caf\xe9 menu: cr\xe8me br\xfbl\xe9e for dessert.\n".encode("cp1252"),
        "image.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
    })
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(root / "loop_b", root / "loop_a")
    return root


def test_each_bad_input_has_its_reason_and_the_rest_is_ingested(settings, bad_tree):
    with open_corpus(settings, create=True, embedder="none") as corpus:
        summary = ingest(corpus, [bad_tree, bad_tree.parent / "does-not-exist"], workers=2)
        failed = dict(summary.failed)
        assert sorted(summary.added) == ["good.md", "good.pdf", "latin1.txt"]
        assert "corrupt" in failed["corrupt.pdf"].lower()
        assert "encrypted" in failed["locked.pdf"].lower()
        assert "empty" in failed["empty.txt"].lower()
        assert "binary" in failed["binary.txt"].lower()
        assert "symlink loop" in failed["loop_a"] and "symlink loop" in failed["loop_b"]
        assert failed[str(bad_tree.parent / "does-not-exist")] == "no such file or directory"
        assert dict(summary.skipped)["image.png"].startswith("unsupported")
        assert any(path == "latin1.txt" for path, _ in summary.warnings)
        assert all("\n" not in reason for reason in failed.values())
        from docmem.search import search

        assert "crème brûlée" in search(corpus, "creme brulee dessert menu").hits[0].chunk.text.lower() or \
            search(corpus, "dessert").hits[0].chunk.path == "latin1.txt"
        hit = search(corpus, "vibration levels").hits[0].chunk
        assert (hit.path, hit.page, hit.page_end) == ("good.pdf", 1, 2)  # one chunk spans both pages


def test_strict_exit_codes(bad_tree):
    runner = CliRunner()
    lenient = runner.invoke(cli, ["ingest", str(bad_tree), "--embedder", "none", "--json"])
    assert lenient.exit_code == 0
    strict = runner.invoke(cli, ["ingest", str(bad_tree), "--embedder", "none", "--json", "--strict"])
    assert strict.exit_code == 1
    nothing = runner.invoke(cli, ["ingest", str(bad_tree / "nowhere"), "--corpus", "x", "--embedder", "none"])
    assert nothing.exit_code == 1 and "no such file or directory" in nothing.output
    assert "x" not in [c["name"] for c in json.loads(runner.invoke(cli, ["corpora", "--json"]).output)]


def test_unreadable_file(settings, tmp_path, monkeypatch):
    root = write_tree(tmp_path / "docs", {"ok.txt": "Readable text here.", "secret.txt": "Hidden text."})
    if os.geteuid() != 0:
        (root / "secret.txt").chmod(0)
    else:  # root reads anything: make the open fail the way it does for a normal user
        real_open = open

        def guarded(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if str(path).endswith("secret.txt"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", guarded)
    with open_corpus(settings, create=True, embedder="none") as corpus:
        summary = ingest(corpus, [root], workers=1)
    assert summary.added == ["ok.txt"] and dict(summary.failed) == {"secret.txt": "permission denied"}


def test_file_deleted_during_the_run(settings, tmp_path, monkeypatch):
    root = write_tree(tmp_path / "docs", {"a.txt": "First file.", "b.txt": "Second file."})
    real = extract.file_hash

    def vanish_then_hash(path: str) -> str:  # b.txt disappears between the walk and its read
        if path.endswith("b.txt") and os.path.exists(path):
            os.unlink(path)
        return real(path)

    monkeypatch.setattr(extract, "file_hash", vanish_then_hash)
    with open_corpus(settings, create=True, embedder="none") as corpus:
        summary = ingest(corpus, [root], workers=1)
    assert summary.added == ["a.txt"] and dict(summary.failed) == {"b.txt": "file vanished during the run"}


def test_second_writer_goes_through_the_holder(settings, tmp_path):
    """No "in use" any more: the process holding the corpus runs the second ingest as a job."""
    from docmem.api import connect

    root = write_tree(tmp_path / "docs", {"a.txt": "Some text about herons."})
    with connect(settings) as holder:
        holder.open_corpus(create=True, embedder="none")
        proc = subprocess.run([sys.executable, "-m", "docmem.cli", "ingest", str(root)],
                              capture_output=True, text=True, env=os.environ.copy(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "in use" not in proc.stderr
        assert holder.search("herons").hits[0].chunk.path == "a.txt"


# -- SIGKILL mid-run, for real, at several points ------------------------------------------

def _corpus_files(root: Path, n: int) -> None:
    for i in range(n):
        paras = "\n\n".join(f"Section {j} of report {i}: the sensor {i}-{j} read {i * j} units at dawn." * 3
                            for j in range(12))
        (root / f"report{i:03d}.md").write_text(f"# Report {i}\n\n{paras}\n", encoding="utf-8")


def _start(root: Path, embedder: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "docmem.cli", "ingest", str(root), "--embedder", embedder,
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def _manifest_rows(home: Path) -> int:
    import sqlite3

    path = home / "corpora" / "default" / "manifest.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(str(path))
    try:
        return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _wait_for(predicate, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("state never reached")
        time.sleep(0.005)


def _points(settings) -> tuple[list[str], int, int]:  # type: ignore[no-untyped-def]
    with open_corpus(settings) as corpus:
        ids = sorted(c.id for path in corpus.manifest.paths() for c in corpus.store.neighbours(path, 0, 10**6))
        return ids, corpus.store.count(), corpus.store.count(missing_dense=True)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["first-file", "half-files", "dense-fill"])
def test_sigkill_then_rerun_has_no_duplicate_and_no_missing_chunk(settings, docmem_home, tmp_path, kill_at):
    root = tmp_path / "reports"
    root.mkdir()
    _corpus_files(root, 30)
    embedder = "bundled" if kill_at == "dense-fill" else "none"
    proc = _start(root, embedder)
    if kill_at == "dense-fill":
        _wait_for(lambda: _manifest_rows(docmem_home) == 30)
        assert proc.stderr is not None
        for line in proc.stderr:  # the plain progress line that opens the dense stage
            if line.startswith("dense:"):
                break
    else:
        target = 1 if kill_at == "first-file" else 15
        _wait_for(lambda: _manifest_rows(docmem_home) >= target)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    rerun = subprocess.run([sys.executable, "-m", "docmem.cli", "ingest", str(root), "--json"],
                           capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    ids, count, missing = _points(settings)
    assert len(ids) == len(set(ids)) == count  # no duplicate, nothing outside the manifest
    assert missing == 0

    # The same folder ingested cleanly into another corpus gives exactly the same chunks.
    from docmem.config import load_settings

    clean = load_settings(corpus="clean")
    with open_corpus(clean, create=True, embedder=embedder) as corpus:
        ingest(corpus, [root], workers=1, dense=False)
        expected = sorted(c.id for p in corpus.manifest.paths() for c in corpus.store.neighbours(p, 0, 10**6))
    assert ids == expected
    assert json.loads(rerun.stdout)["failed"] == []


def test_hostile_queries_and_pdf_lines_are_read_in_linear_time():
    """Whether a query is an identifier lookup is asked of every search (and of the agent's
    question). Its pattern once scanned the rest of a run like "a-a-a-..." at every word
    boundary: a 200,000-character query of it took minutes, one request pinning a core. A PDF
    line of spaces did the same to the dot-leader pattern at ingest, an error page of "<" from
    an LLM server to the markup stripping of its message, and a reply of a code fence or a
    tool-call tag followed by whitespace (small models loop on it) to their parsing."""
    from docmem.search import identifiers, looks_like_identifier

    def too_slow(*_: object) -> None:
        raise TimeoutError("identifier pattern is super-linear")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(20)  # the quadratic pattern needed ~15 minutes here; the linear one ~1 s
    try:
        assert not looks_like_identifier("a-" * 100_000)
        found = identifiers("a-" * 100_000 + "a1")  # the digit is looked for 64 characters ahead at most
        assert len(found) == 1 and found[0].endswith("a-a-a1") and len(found[0]) <= 70
        assert identifiers("error E1234 in v1.2.3 or covid-19, not ab") == ["E1234", "v1.2.3", "covid-19"]
        # a PDF line of spaces: the dot-leader pattern backtracked through the run at every position
        from ingest.loaders.pdf import _without_leaders

        assert _without_leaders(" " * 400_000 + "x") == "x"
        assert _without_leaders("2 Linear models ....... 7" + " " * 200_000) == "2 Linear models … 7"
        # an LLM server's error page of "<" without ">": the tag pattern scanned on from each one
        from docmem.llm.failures import _untagged

        assert _untagged("<" * 2_000_000).strip() == "<" * 8000
        # a small model looping on whitespace: a fence or a tool-call tag followed by spaces
        from docmem.llm.jsonfix import strip_fences, text_tool_calls

        assert strip_fences("```" + " " * 200_000 + "x") == "```" + " " * 200_000 + "x"
        assert strip_fences("```json\n" + " " * 200_000 + "[1]\n```") == "[1]"
        call = '<tool_call>{"name": "search", "arguments": {"query": "owls"}}</tool_call>'
        assert text_tool_calls(call + " " * 200_000 + "x") is None
        assert [c.name for c in text_tool_calls(call + " " * 200_000)] == ["search"]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
