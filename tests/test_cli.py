"""CLI habits a new user meets first: which corpus, what ran, filters, version, logging,
startup imports, the corpora listing and eval corpora."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from tests.conftest import write_tree

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def _ingest(tmp_path: Path, corpus: str, files: dict[str, str], *extra: str) -> Path:
    root = write_tree(tmp_path / corpus, files)
    _run("ingest", str(root), "--corpus", corpus, "--embedder", "none", "--json", *extra)
    return root


CATS = {"pets/cats.txt": "Cats purr when they are content and sleep most of the day.",
        "debian-notes.md": "# Debian\n\nUse apt to install packages; cats are not packages.",
        "docs/debian/intro.txt": "Debian is a free operating system made by volunteers."}


def test_without_corpus_the_only_one_is_used_and_several_are_named(tmp_path: Path, docmem_home: Path):
    _ingest(tmp_path, "pets", CATS)
    hits = json.loads(_run("search", "cats purr", "--json").stdout)["hits"]
    assert hits and hits[0]["path"] == "pets/cats.txt"
    _ingest(tmp_path, "other", {"a.txt": "Nothing about felines at all here."})
    failed = _run("search", "cats", ok=False)
    assert "no corpus 'default'; there are 2: other, pets. Pick one with --corpus NAME" in failed.output
    # Named (by flag or config) and missing: no fallback, the usual message.
    assert "no corpus 'nope'" in _run("search", "cats", "--corpus", "nope", ok=False).output
    (docmem_home / "config.toml").write_text('corpus = "pets"\n')
    assert json.loads(_run("search", "cats purr", "--json").stdout)["hits"]


def test_the_service_resolves_an_unnamed_corpus_the_same_way(tmp_path: Path):
    from docmem.api import connect
    from docmem.config import load_settings
    from docmem.errors import CorpusNotFound

    _ingest(tmp_path, "pets", CATS)
    with connect(load_settings()) as service:
        assert service.search("cats purr").hits[0].chunk.path == "pets/cats.txt"
    _ingest(tmp_path, "other", {"a.txt": "Nothing about felines."})
    with connect(load_settings()) as service:
        with pytest.raises(CorpusNotFound, match="there are 2: other, pets"):
            service.search("cats")


def test_search_says_what_ran_and_why_nothing_was_found(tmp_path: Path):
    _ingest(tmp_path, "pets", CATS)
    assert "0 is not in the range x>=1" in _run("search", "cats", "-k", "0", ok=False).output
    assert "0 is not in the range x>=1" in _run("search", "cats", "--page", "0", ok=False).output
    dense = _run("search", "cats", "--fusion", "dense", ok=False).output
    assert "corpus 'pets' has no dense vectors (embedder none): --fusion dense cannot run" in dense
    page = json.loads(_run("search", "cats", "--json").stdout)
    assert page["mode"] == "bm25" and page["notes"] == []
    # A bare pattern also matches file names in any folder, as git does; one with / does not.
    paths = {h["path"] for h in json.loads(_run("search", "debian", "--path", "debian*", "--json").stdout)["hits"]}
    assert paths == {"debian-notes.md"}
    paths = {h["path"] for h in json.loads(_run("search", "debian", "--path", "*intro*", "--json").stdout)["hits"]}
    assert paths == {"docs/debian/intro.txt"}
    assert "No results" in _run("search", "debian", "--path", "debian/*").stdout
    empty = _run("search", "cats", "--path", "*.pdf")
    assert "Note: no file of the 3 in 'pets' matches --path '*.pdf'" in empty.stdout
    assert "nothing found in the 1 file matching --path 'cats*'" in _run("search", "zebra", "--path", "cats*").stdout


def test_a_corpus_waiting_for_dense_vectors_says_so(tmp_path: Path):
    root = write_tree(tmp_path / "src", CATS)
    _run("ingest", str(root), "--corpus", "half", "--no-dense", "--json")
    page = json.loads(_run("search", "cats", "--corpus", "half", "--json").stdout)
    assert page["mode"].startswith("hybrid")
    assert page["notes"] == ["3 chunks have no dense vector yet, so only BM25 can find them: "
                             "re-run `docmem ingest` to fill them"]
    listing = json.loads(_run("corpora", "--json").stdout)
    assert [(c["name"], c["dense_pending"], c["roots"]) for c in listing] == [("half", 3, [str(root)])]
    _run("ingest", str(root), "--corpus", "half", "--json")
    assert json.loads(_run("corpora", "--json").stdout)[0]["dense_pending"] == 0
    assert json.loads(_run("search", "cats", "--corpus", "half", "--json").stdout)["notes"] == []


def test_corpora_lists_sources_last_ingest_and_eval_corpora(tmp_path: Path, docmem_home: Path):
    root = _ingest(tmp_path, "pets", CATS)
    out = _run("corpora").stdout
    assert "last ingest" in out and f"pets: from {root}" in out
    assert "eval corpora" not in out
    # An eval corpus is an ordinary corpus under <home>/eval.
    from docmem.config import load_settings
    from docmem.eval.corpora import EvalCorpus
    from ingest.pipeline import ingest

    with EvalCorpus(load_settings(), "kv-test", "none", lambda c, p: ingest(c, p, workers=1)) as built:
        built.sync({"pair-1.txt": "key = a, value = b"})
    out = _run("corpora").stdout
    assert "1 eval corpora in" in out and "kv-test" in out and "docmem eval --clean" in out
    listing = json.loads(_run("corpora", "--json").stdout)
    assert [(c["name"], c["eval"]) for c in listing] == [("pets", False), ("kv-test", True)]
    assert "Removed 1 eval corpora" in _run("eval", "--clean").stdout
    assert not (docmem_home / "eval" / "corpora" / "kv-test").exists()
    assert not (docmem_home / "eval" / "sources").exists()
    assert [c["name"] for c in json.loads(_run("corpora", "--json").stdout)] == ["pets"]
    assert "No eval corpora to remove." in _run("eval", "--clean").stdout


def test_version_and_verbose_debug_lines(tmp_path: Path):
    from docmem import __version__

    assert _run("-V").stdout.strip() == f"docmem, version {__version__}"
    _ingest(tmp_path, "pets", CATS)
    # A subprocess: logging is configured once per process, as for a user.
    run = subprocess.run([sys.executable, "-m", "docmem.cli", "-v", "search", "cats"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert any(line.startswith("DEBUG docmem.config: settings from ") for line in lines)
    assert any(line.startswith("DEBUG docmem.store.corpus: opened corpus 'pets'") for line in lines)
    assert any(line.startswith("DEBUG docmem.search: search 'cats': bm25") for line in lines)
    quiet = subprocess.run([sys.executable, "-m", "docmem.cli", "search", "cats"], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
    assert "DEBUG" not in quiet.stderr


HEAVY = ("numpy", "qdrant_edge", "qdrant_client", "fastembed", "onnxruntime", "openai", "tiktoken",
         "textual", "matplotlib", "pypdf", "unstructured", "ingest", "docmem.agent", "docmem.tui")


def test_help_and_corpora_import_nothing_heavy():
    """What keeps `--help` and `docmem corpora` under 0.3 s (bench/cli_startup.py times it)."""
    script = f"""
import sys
import click
import pytest
from click.testing import CliRunner
from docmem.cli.main import cli
runner = CliRunner()
commands = [[]] + [[name] for name in cli.commands] + [["eval", sub] for sub in cli.commands["eval"].commands]
for args in commands:
    assert runner.invoke(cli, args + ["--help"]).exit_code == 0, args
assert runner.invoke(cli, ["corpora"]).exit_code == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m.startswith({HEAVY!r})))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("content, says", [
    (b"\xff\xfe page_size = 3\n", "not UTF-8"),
    (b"page_size = \n", "Invalid value"),
    (b'page_size = "five"\n', "page_size must be a whole number"),
    (b'modle = "x"\n', "unknown setting(s) modle"),
])
def test_a_broken_config_file_is_one_clear_line(docmem_home: Path, content: bytes, says: str):
    (docmem_home / "config.toml").write_bytes(content)
    result = _run("corpora", ok=False)
    assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["http://[::1", "localhost:8080/v1", "http://host:port/v1", "ftp://host/v1"])
def test_a_mistyped_base_url_is_one_line_before_anything_is_called(url: str):
    result = _run("ask", "Who?", "--model", "m", "--base-url", url, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output and "cannot connect" not in result.output
    assert f"setting base_url {url!r} is not" in result.output and "http://localhost:11434/v1" in result.output


def test_an_error_quoting_an_escape_sequence_prints_it_as_text():
    """click strips ANSI codes only when stdout is not a terminal: in one, a path or a server's
    reply quoted in an error would run its ESC sequence."""
    from docmem.cli.common import user_errors
    from docmem.errors import DocmemError

    @user_errors
    def fails() -> None:
        raise DocmemError("no such file: /tmp/\x1b]52;c;ZWNobw==\x07x")

    with pytest.raises(click.ClickException) as caught:
        fails()
    assert caught.value.message == "no such file: /tmp/?]52;c;ZWNobw==?x"


def test_search_headers_count_in_words_and_clip_a_pasted_query():
    from docmem.schema import SearchPage

    past = SearchPage("q", page=3, page_size=5, hits=[], total=1, capped=False, mode="bm25")
    assert past.header() == "Page 3 is past the last page: 1 result (1 page)"
    many = SearchPage("q", page=9, page_size=5, hits=[], total=12, capped=False, mode="bm25")
    assert many.header() == "Page 9 is past the last page: 12 results (3 pages)"
    long = SearchPage("x" * 100_000, page=1, page_size=5, hits=[], total=0, capped=False, mode="bm25")
    assert long.header() == 'No results for "' + "x" * 79 + '…"'
