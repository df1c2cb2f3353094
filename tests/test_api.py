"""The service layer in-process (``LocalService``): corpora, search, read, ingest jobs, ask."""

from __future__ import annotations

from pathlib import Path

import pytest

from docmem.api import IngestOptions, connect
from docmem.errors import DocmemError
from docmem.schema import JOB_DONE, JOB_PROGRESS, JOB_QUEUED
from tests.agent_helpers import citing_server_policy
from tests.conftest import write_tree
from tests.fake_openai import FakeOpenAI

LONG = "\n\n".join(f"Paragraph {n} of the harbour log. The tide turned at mark {n}." * 3 for n in range(40))


def _tree(root: Path) -> Path:
    return write_tree(root, {"log.md": "# Harbour log\n\n" + LONG,
                             "notes.txt": "The lighthouse keeper is called Marguerite Ostrander."})


def test_ingest_job_reports_progress_and_search_reads_it(tmp_path, settings):
    with connect(settings) as service:
        job = service.ingest([_tree(tmp_path / "docs")], options=IngestOptions(embedder="none", workers=1))
        events = list(job.events())
        assert events[0].kind == JOB_QUEUED and events[0].position == 0
        assert any(e.kind == JOB_PROGRESS and e.progress["stage"] == "extract" for e in events)
        assert events[-1].kind == JOB_DONE and sorted(events[-1].summary["added"]) == ["log.md", "notes.txt"]
        page = service.search("lighthouse keeper")
        assert page.hits[0].chunk.path == "notes.txt"
        assert page.header().startswith("Showing results 1-")
        [info] = service.corpora()
        assert (info.name, info.files) == ("default", 2)


def test_second_writer_waits_in_line(tmp_path, settings):
    with connect(settings) as service:
        first = service.ingest([_tree(tmp_path / "a")], options=IngestOptions(embedder="none", workers=1))
        second = service.ingest([write_tree(tmp_path / "b", {"c.txt": "Cormorants nest on the pier."})],
                                options=IngestOptions(workers=1))
        kinds = [(e.kind, e.position) for e in second.events()]
        assert first.wait().kind == JOB_DONE
        if kinds[0] == (JOB_QUEUED, 1):  # it was submitted while the first ran: it waited
            assert kinds.index((JOB_QUEUED, 1)) < kinds.index(next(k for k in kinds if k[0] == JOB_PROGRESS))
        assert kinds[-1][0] == JOB_DONE
        assert service.search("cormorants").hits[0].chunk.path == "c.txt"


def test_read_pages_through_a_document(tmp_path, settings):
    with connect(settings) as service:
        service.ingest([_tree(tmp_path / "docs")], options=IngestOptions(embedder="none", workers=1)).wait()
        first = service.read(path="log.md", count=2)
        assert [c.index for c in first.chunks] == [0, 1] and first.previous is None
        after = service.read(chunk_id=first.next, direction="next", count=2)
        assert [c.index for c in after.chunks] == [2, 3]
        before = service.read(chunk_id=after.previous, direction="previous", count=2)
        assert [c.index for c in before.chunks] == [0, 1]
        assert f"of {first.total_chunks}" in first.header()
        with pytest.raises(DocmemError, match="no chunk"):
            service.read(chunk_id="000000000000-0")
        with pytest.raises(DocmemError, match="no chunk previous"):
            service.read(chunk_id=first.chunks[0].id, direction="previous")


def test_ingest_of_nothing_is_refused_without_creating_a_corpus(tmp_path, settings):
    with connect(settings) as service:
        with pytest.raises(DocmemError, match="no such file"):
            service.ingest([tmp_path / "missing"])
        assert service.corpora() == []


def test_ask_streams_steps_to_a_cited_answer(tmp_path, settings):
    from dataclasses import replace

    from docmem.agent.loop import CallStep, FinalStep

    with FakeOpenAI(model="gpt-4o-mini") as fake:
        fake.policy = citing_server_policy
        settings = replace(settings, model=fake.model, base_url=fake.url, api_key="sk-test")
        with connect(settings) as service:
            service.ingest([_tree(tmp_path / "docs")], options=IngestOptions(embedder="none", workers=1)).wait()
            steps = list(service.ask("Who is the lighthouse keeper?"))
    assert isinstance(steps[-1], FinalStep)
    result = steps[-1].result
    assert result.status == "answered" and result.citations[0].verified
    assert result.citations[0].path == "notes.txt"
    assert any(isinstance(s, CallStep) and s.name == "archival_search" for s in steps)
