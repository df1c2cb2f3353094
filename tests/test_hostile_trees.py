"""Hostile file trees: links out of the root, undecodable and markup-laden names (issue 9)."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from docmem.cli.ingest_cmd import _print_summary
from docmem.cli.main import cli
from docmem.search import search
from docmem.store.corpus import open_corpus
from ingest.discover import OUTSIDE_ROOT
from ingest.loaders.rich import NEEDS_EXTRA
from ingest.extract import Job, process
from ingest.pipeline import IngestSummary, ingest
from tests.conftest import write_tree


def _run(settings, root: Path, **kw):  # type: ignore[no-untyped-def]
    with open_corpus(settings, create=True, embedder="none") as corpus:
        summary = ingest(corpus, [root], workers=0, **kw)
        found = {h.chunk.path for h in search(corpus, "zanzibar secret ledger").hits}
    return summary, found


def test_links_out_of_the_root_are_skipped_unless_asked(settings, tmp_path):
    outside = write_tree(tmp_path / "elsewhere", {"ledger.txt": "The zanzibar secret ledger lives here.",
                                                  "deep/more.txt": "Another zanzibar secret ledger page."})
    root = write_tree(tmp_path / "docs", {"mine.txt": "My own notes about gardening.",
                                          "sub/inner.txt": "Inner notes."})
    os.symlink(outside, root / "etc_link")  # a folder outside
    os.symlink(outside / "ledger.txt", root / "file_link.txt")  # a file outside
    os.symlink(root / "sub", root / "sub_link")  # a folder inside: ingested under its own path
    os.symlink(root, root / "sub" / "up")  # a loop back to the root

    summary, found = _run(settings, root)
    skipped = dict(summary.skipped)
    assert skipped["etc_link/"] == skipped["file_link.txt"] == OUTSIDE_ROOT
    assert "sub_link/" in skipped and "sub/up/" in skipped
    assert sorted(summary.added) == ["mine.txt", "sub/inner.txt"] and not summary.failed
    assert found == set()

    summary, found = _run(settings, root, follow_symlinks=True)  # the opt-in
    assert {"etc_link/ledger.txt", "etc_link/deep/more.txt", "file_link.txt"} <= set(summary.added)
    assert "etc_link/ledger.txt" in found
    assert any("symlink loop" in reason for _, reason in summary.failed)  # the loop still ends

    summary, found = _run(settings, root)  # back to the default: what came through links goes
    assert {"etc_link/ledger.txt", "file_link.txt"} <= set(summary.removed) and found == set()


def test_a_link_to_etc_never_makes_passwd_searchable(settings, tmp_path):
    root = write_tree(tmp_path / "docs", {"a.txt": "Plain text."})
    os.symlink("/etc", root / "etc_link")
    with open_corpus(settings, create=True, embedder="none") as corpus:
        summary = ingest(corpus, [root], workers=0)
        assert dict(summary.skipped)["etc_link/"] == OUTSIDE_ROOT
        assert all(h.chunk.path == "a.txt" for h in search(corpus, "root bin daemon nologin").hits)


def test_a_link_swapped_in_after_the_walk_is_refused_when_read(tmp_path):
    outside = write_tree(tmp_path / "elsewhere", {"secret.txt": "secret"})
    root = tmp_path / "docs"
    root.mkdir()
    os.symlink(outside / "secret.txt", root / "late.txt")
    job = Job(str(root / "late.txt"), "late.txt", None, 200, 30, os.path.realpath(root))
    outcome = process(job)
    assert (outcome.status, outcome.reason) == ("failed", OUTSIDE_ROOT)


def test_a_name_that_is_not_utf8_is_ingested_and_the_rest_too(settings, tmp_path):
    root = write_tree(tmp_path / "docs", {"good.txt": "A well named file about herons."})
    bad = os.fsdecode(b"caf\xe9 menu.txt")  # latin-1 bytes: Python holds them as surrogates
    (root / bad).write_text("The zanzibar secret ledger of the cafe.", encoding="utf-8")
    (root / os.fsdecode(b"dir\xff")).mkdir()
    (root / os.fsdecode(b"dir\xff") / "inner.txt").write_text("Inside a badly named folder.")

    summary, found = _run(settings, root)
    assert sorted(summary.added) == ["caf\\xe9 menu.txt", "dir\\xff/inner.txt", "good.txt"]
    assert found == {"caf\\xe9 menu.txt"}
    summary, _ = _run(settings, root)
    assert len(summary.unchanged) == 3 and not summary.failed
    (root / bad).unlink()
    summary, found = _run(settings, root)
    assert summary.removed == ["caf\\xe9 menu.txt"] and found == set()

    result = CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none"], catch_exceptions=False)
    assert result.exit_code == 0 and "up to date" in result.output


def test_markup_and_control_characters_in_names_print_as_text(tmp_path):
    root = write_tree(tmp_path / "docs", {"q[/q].md": "# Heading [/b] [red]x\n\nText.", "plain.md": "Text two."})
    (root / "evil\x1b[31mred.txt").write_text("Terminal escapes in a name.")
    result = CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 added" in result.output and "\x1b" not in result.output
    result = CliRunner().invoke(cli, ["search", "heading text"], catch_exceptions=False)
    assert result.exit_code == 0 and "q[/q].md" in result.output


def test_summary_keeps_brackets_in_paths_and_reasons(capsys):
    summary = IngestSummary(corpus="c", added=["ok.md"], failed=[("q[/q].docx", NEEDS_EXTRA)],
                            skipped=[("a[b]\x07.xyz", "unsupported format .xyz")])
    _print_summary(summary)
    out = capsys.readouterr().out
    assert "q[/q].docx: needs the formats extra: pip install 'docmem[formats]'" in out
    assert "a[b]?.xyz" in out and "\x07" not in out


def test_escape_sequences_in_documents_never_reach_the_terminal(tmp_path):
    """Document text, headings and the model's reply are the corpus author's words: an ESC
    sequence in them (clear screen, set the window title) is printed as text, never sent raw,
    by ``search`` and by ``ask`` (its answer, its quotes and its activity lines)."""
    from tests.agent_helpers import citing_server_policy
    from tests.fake_openai import FakeOpenAI

    hostile = "\x1b[2J\x1b]0;pwned\x07"
    root = write_tree(tmp_path / "docs", {"a.md": f"# Title {hostile}[bold]x\n\nThe secret {hostile} word is pineapple.\n"})
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", str(root), "--embedder", "none"], catch_exceptions=False).exit_code == 0
    result = runner.invoke(cli, ["search", "secret pineapple"], catch_exceptions=False)
    assert result.exit_code == 0 and "pineapple" in result.output and "[bold]x" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    with FakeOpenAI(model="m") as fake:
        fake.policy = citing_server_policy
        result = runner.invoke(cli, ["ask", f"secret word pineapple {hostile}?", "--model", "m",
                                     "--base-url", fake.url], catch_exceptions=False)
    assert result.exit_code == 0 and "pineapple" in result.stdout and "[1] ✓" in result.stdout
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream and "\x07" not in stream


def test_corpora_prints_a_markup_and_escape_laden_root_as_typed(tmp_path):
    root = write_tree(tmp_path / "r[bold]\x1b[2Jx", {"a.txt": "Hello."})
    assert CliRunner().invoke(cli, ["ingest", str(root), "--embedder", "none"]).exit_code == 0
    result = CliRunner().invoke(cli, ["corpora"], catch_exceptions=False)
    assert result.exit_code == 0 and "r[bold]?[2Jx" in result.output and "\x1b" not in result.output
