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


def test_writers_of_one_corpus_run_one_at_a_time_with_their_place_shown():
    import threading

    from docmem.api.jobs import JobQueue
    from docmem.api.ops import follow_job

    queue, gate, running = JobQueue(), threading.Event(), []
    started = {name: threading.Event() for name in ("first", "second", "third", "other")}

    def work(name: str):  # type: ignore[no-untyped-def]
        def run(emit):  # type: ignore[no-untyped-def]
            running.append(name)
            started[name].set()
            gate.wait(10)
            return {"corpus": name}
        return run

    first = queue.submit("c", work("first"))
    second = queue.submit("c", work("second"))
    third = queue.submit("c", work("third"))
    other = queue.submit("other", work("other"))
    notes: list[str] = []
    watcher = threading.Thread(target=lambda: follow_job(third, on_note=notes.append))
    watcher.start()
    assert started["other"].wait(10) and started["first"].wait(10)  # another corpus does not wait
    assert not started["second"].is_set() and not started["third"].is_set()
    gate.set()
    assert other.wait().kind == JOB_DONE
    for job in (first, second, third):
        assert job.wait().kind == JOB_DONE
    watcher.join(10)
    assert running.index("first") < running.index("second") < running.index("third")
    assert [(e.kind, e.position) for e in third.events()][:1] == [(JOB_QUEUED, 2)]
    assert notes[0] == "waiting: 2 ingests ahead of this one in this corpus (one writer at a time)"
    assert "waiting: 1 ingest ahead of this one in this corpus (one writer at a time)" in notes


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


def test_a_cancelled_ingest_stops_and_a_rerun_resumes(tmp_path, settings):
    from docmem.schema import JOB_FAILED

    files = {f"f{n:03d}.txt": f"Note {n}\n\nBuoy {n} is painted red and white." for n in range(60)}
    tree = write_tree(tmp_path / "many", files)
    with connect(settings) as service:
        job = service.ingest([tree], options=IngestOptions(embedder="none", workers=1))
        for event in job.events():
            if event.kind == JOB_PROGRESS and event.progress["stage"] == "extract" and event.progress["done"] >= 2:
                job.cancel()
        assert event.kind == JOB_FAILED and "interrupted" in (event.error or "")
        done_before = service.corpora()[0].files
        assert 0 < done_before < 60
        summary = service.ingest([tree]).wait().summary
        assert len(summary["added"]) == 60 - done_before and len(summary["unchanged"]) == done_before
        view = service.open_corpus()
        assert view.manifest.totals()[0] == 60 and view.store.count() == 60


def test_an_ingest_job_says_loading_embedder_before_the_model_loads(tmp_path, settings, monkeypatch):
    """The model takes 1-3 s to load: a client must see why it waits, not a silent pause before it."""
    from docmem.api.local import LocalService
    from docmem.store import corpus as corpus_module
    from ingest.pipeline import LOADING_EMBEDDER

    real, told_before_load = corpus_module.make_embedder, []
    with LocalService(settings) as service:
        def spy(*args):  # type: ignore[no-untyped-def]
            [job] = service.jobs.jobs.values()
            told_before_load.append([e.progress["message"] for e in job._events
                                     if e.kind == JOB_PROGRESS and e.progress["stage"] == "dense"])
            return real(*args)
        monkeypatch.setattr(corpus_module, "make_embedder", spy)
        job = service.ingest([_tree(tmp_path / "docs")], options=IngestOptions(embedder="bundled", workers=1))
        events = list(job.events())
        assert events[-1].kind == JOB_DONE, events[-1]
        assert told_before_load == [[LOADING_EMBEDDER]]  # loaded once, right after saying so
        assert service.search("lighthouse keeper", ranking="dense").hits[0].chunk.path == "notes.txt"
        assert len(told_before_load) == 1  # the search used the model the job loaded
