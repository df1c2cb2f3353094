"""Batch throughput: questions/min vs --jobs against the fake OpenAI server, and what
--share-memory saves.

    .venv/bin/python bench/batch_throughput.py [--latency 0.2] [--jobs 1,4,16] [--slots 4]
        [--rounds 2] [--embedder none|bundled]

Setup: sample_corpora/ ingested into a temporary DOCMEM_HOME (BM25-only by default, so the
figures measure the batch machinery and not the embedder), the 50 questions of
bench/batch_questions.txt, and FakeOpenAI (tests/fake_openai.py, the real HTTP fake) in a
child process, so that server and client do not share a GIL.

(a) Throughput. The server answers every chat call after --latency seconds with the tests'
    citing policy (search, then answer citing the top hit: 2 calls a question). The batch
    runs in process (docmem.batch.Batch, as `docmem ask --questions` does) at each --jobs,
    over the question file asked --rounds times; questions/min against the ideal
    jobs x 60 / (2 x latency), and the CPU client and server spend per question (they share
    the machine's cores, which is what bends the curve at high --jobs). Then again against a server
    with --slots parallel slots (requests beyond them queue, as on a vLLM or Ollama server):
    scaling stops at the slot count.
(b) Shared notes. 10 topics x 4 phrasings (40 questions) with a policy that reads the top
    hit, stores a finding (quote + source chunk) with archival_insert and answers (4 calls),
    or, when a search shows a stored finding about the same question (word overlap >= 50%),
    answers from it at once (2 calls). Tokens with and without --share-memory.

Figures go to stdout and bench/out/batch_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, REPO, SAMPLE, log, machine, table, write_json  # noqa: E402

QUESTIONS = BENCH / "batch_questions.txt"
MODEL = "gpt-4o-mini"

# -- server side (runs in the child process) ---------------------------------------------------

_HIT = re.compile(r"\[\d+\] chunk (\S+) \| ([^\n]*)\n([^\n]+)")
_NOTE = re.compile(r"Note on: (.+?) \| Finding: (.+?) \[source (\S+?)\]")
_OPENED = re.compile(r"\[chunk (\S+) \| [^\]]*\]\n(.+?)(?=\n\[chunk |\n\n(?:next|previous):|\Z)", re.S)


def _question(body: dict[str, Any]) -> str:
    first = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return first.split("Question: ")[-1].strip()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", " ".join(text.replace(" …[cut]", "").split()))[0][:120]


def citing_policy(body: dict[str, Any]) -> dict[str, Any]:
    from tests.agent_helpers import citing_server_policy

    return citing_server_policy(body)


def notes_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Search; answer from a stored finding about the same question if one shows up; else
    read the top hit, store a finding, answer."""
    if not body.get("tools"):
        return {"content": "Summary of the session so far."}
    question = _question(body)
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if not results:
        return _call("archival_search", query=question, request_heartbeat=True)
    last = results[-1]
    if last.startswith("Showing results"):
        mine = _words(question)
        for about, quote, source in _NOTE.findall(last):
            theirs = _words(about)
            if len(mine & theirs) / max(1, len(mine | theirs)) >= 0.5:
                return _answer(quote, source)
        return _call("open_document", chunk_id=_HIT.search(last).group(1), request_heartbeat=True)
    if last.startswith("No results"):
        return _call("answer", text="Not in the corpus.", not_found=True)
    if last.startswith("Stored as chunk"):
        calls = [c for m in body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
        note = json.loads(calls[-1]["function"]["arguments"])["content"]
        _, quote, source = _NOTE.search(note).groups()
        return _answer(quote, source)
    chunk_id, text = _OPENED.search(last).groups()
    return _call("archival_insert", request_heartbeat=True,
                 content=f"Note on: {question} | Finding: {_sentence(text)} [source {chunk_id}]")


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def _answer(quote: str, source: str) -> dict[str, Any]:
    return _call("answer", text=f"{quote} [1]", citations=[{"chunk_id": source, "quote": quote}])


POLICIES = {"citing": citing_policy, "notes": notes_policy}


def _serve(conn: Any, latency: float, slots: int, policy_name: str) -> None:
    """The fake server; with ``slots``, at most that many requests are served at once."""
    from tests.fake_openai import FakeOpenAI  # sets TCP_NODELAY, as real servers do

    inner = POLICIES[policy_name]
    policy = inner
    if slots:
        gate = threading.BoundedSemaphore(slots)

        def policy(body: dict[str, Any]) -> dict[str, Any]:  # noqa: F811 - the limited variant
            with gate:
                time.sleep(latency)
                return inner(body)

    with FakeOpenAI(model=MODEL, latency=0 if slots else latency) as server:
        server.policy = policy
        conn.send(server.url)
        conn.recv()  # until told to stop
        conn.send(len(server.chat_requests))


class Server:
    def __init__(self, latency: float, slots: int = 0, policy: str = "citing") -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, latency, slots, policy), daemon=True)

    def __enter__(self) -> "Server":
        self.proc.start()
        self.url = self.conn.recv()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.send("stop")
        self.calls = self.conn.recv()
        self.proc.join(10)


# -- client side ----------------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_batch(settings: Any, corpus: Any, questions: list[Any], answers: Path, url: str, server_pid: int,
              jobs: int, share: bool = False) -> dict[str, Any]:
    from docmem.batch.runner import Batch, BatchOptions
    from docmem.llm.openai import OpenAIProcessor

    batch = Batch(corpus, settings, questions, answers,
                  options=BatchOptions(jobs=jobs, share_memory=share, max_consecutive_failures=0))
    plan = batch.plan()
    started = time.perf_counter()
    cpu = time.process_time()
    server_cpu = _cpu(server_pid)
    summary = batch.run(plan, lambda: OpenAIProcessor(MODEL, url, None, max_retries=0))
    seconds = time.perf_counter() - started
    cpu, server_cpu = time.process_time() - cpu, _cpu(server_pid) - server_cpu
    records = [json.loads(line) for line in answers.read_text(encoding="utf-8").splitlines()]
    cites = [c for r in records for c in r["citations"]]
    return {
        "jobs": jobs, "questions": len(records), "seconds": round(seconds, 2),
        "per_min": round(len(records) / seconds * 60, 1),
        "answered": summary.answered, "abstained": summary.abstained, "failed": summary.failed,
        "citations": len(cites), "verified": sum(c["verified"] for c in cites),
        "tokens_in": summary.tokens_in, "tokens_out": summary.tokens_out,
        "steps": sum(r["steps"] for r in records),
        "client_cpu_ms_per_q": round(cpu / len(records) * 1000, 1),
        "server_cpu_ms_per_q": round(server_cpu / len(records) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per chat call")
    parser.add_argument("--jobs", default="1,4,16")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots of the limited server")
    parser.add_argument("--embedder", default="none")
    parser.add_argument("--rounds", type=int, default=2,
                        help="ask the question file this many times (fewer stragglers at high --jobs)")
    args = parser.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",")]

    home = Path(tempfile.mkdtemp(prefix="docmem-bench-batch-"))
    os.environ["DOCMEM_HOME"] = str(home)
    from docmem.batch.questions import Question, load_questions
    from docmem.config import load_settings
    from docmem.store.corpus import open_corpus
    from ingest.pipeline import ingest

    settings = load_settings(corpus="sample", model=MODEL)
    log(f"ingesting {SAMPLE} (embedder {args.embedder}) into {home}")
    started = time.perf_counter()
    with open_corpus(settings, create=True, embedder=args.embedder) as corpus:
        summary = ingest(corpus, [SAMPLE], workers=2)
    log(f"  {summary.chunks_written} chunks in {time.perf_counter() - started:.0f} s")
    questions, _ = load_questions(QUESTIONS)
    results: dict[str, Any] = {"machine": machine(), "latency_s": args.latency, "slots": args.slots,
                               "embedder": args.embedder, "questions": len(questions), "throughput": {},
                               "shared_notes": {}}
    asked = [Question(f"{q.id}-r{n}", q.text) for n in range(args.rounds) for q in questions]
    results["questions"] = len(asked)
    out = home / "out"
    out.mkdir()
    with open_corpus(settings) as corpus:
        for label, slots in (("unlimited", 0), (f"{args.slots} slots", args.slots)):
            rows = []
            with Server(args.latency, slots) as server:
                for jobs in jobs_list:
                    log(f"server {label}: jobs {jobs}")
                    row = run_batch(settings, corpus, asked, out / f"t-{slots}-{jobs}.jsonl", server.url,
                                    server.proc.pid, jobs)
                    calls_per_q = 2
                    ideal_parallel = jobs if not slots else min(jobs, slots)
                    row["ideal_per_min"] = round(ideal_parallel * 60 / (calls_per_q * args.latency), 1)
                    row["of_ideal"] = round(row["per_min"] / row["ideal_per_min"], 2)
                    rows.append(row)
            results["throughput"][label] = rows
            print(table(["jobs", "questions", "seconds", "q/min", "ideal q/min", "of ideal", "verified",
                         "client CPU ms/q", "server CPU ms/q"],
                        [(r["jobs"], r["questions"], r["seconds"], r["per_min"], r["ideal_per_min"],
                          f"{r['of_ideal']:.0%}", f"{r['verified']}/{r['citations']}", r["client_cpu_ms_per_q"],
                          r["server_cpu_ms_per_q"]) for r in rows],
                        title=f"\nThroughput, server {label}, {args.latency} s a call"))

        topics = [q.text for q in questions[:10]]
        phrasings = ["{q}", "Briefly: {q}", "{q} Please cite the source.", "Quick check, {q}"]
        paraphrased = [Question(f"t{t}-p{p}", f.format(q=q)) for p, f in enumerate(phrasings)
                       for t, q in enumerate(topics)]
        rows = []
        for jobs in (1, 4):
            for share in (False, True):
                with Server(args.latency, 0, "notes") as server:
                    log(f"shared notes: jobs {jobs}, share_memory={share}")
                    row = run_batch(settings, corpus, paraphrased, out / f"n-{jobs}-{share}.jsonl", server.url,
                                    server.proc.pid, jobs, share)
                row["share_memory"] = share
                row["llm_calls"] = server.calls
                rows.append(row)
        for jobs in (1, 4):
            base, shared = [r for r in rows if r["jobs"] == jobs]
            shared["tokens_saved"] = round(1 - (shared["tokens_in"] + shared["tokens_out"])
                                           / (base["tokens_in"] + base["tokens_out"]), 3)
        results["shared_notes"] = {"questions": len(paraphrased), "topics": len(topics), "runs": rows}
        print(table(["jobs", "share-memory", "LLM calls", "tokens in", "tokens out", "tokens/question",
                     "saved", "q/min", "verified"],
                    [(r["jobs"], "yes" if r["share_memory"] else "no", r["llm_calls"], r["tokens_in"],
                      r["tokens_out"], round((r["tokens_in"] + r["tokens_out"]) / r["questions"]),
                      f"{r['tokens_saved']:.0%}" if "tokens_saved" in r else "-", r["per_min"],
                      f"{r['verified']}/{r['citations']}") for r in rows],
                    title=f"\nShared notes: {len(topics)} topics x {len(phrasings)} phrasings"))
    path = write_json("batch_throughput", results)
    log(f"wrote {path.relative_to(REPO)}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
