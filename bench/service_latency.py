"""The service layer's cost and behaviour under load (issue 11).

1. Added latency: the same queries on the same corpus, in-process (``LocalService``, this
   process owns the corpus) and through the owner (a client process, ``RemoteService`` over
   the Unix socket), interleaved in rounds in one run.
2. 8 client processes searching in a loop while an ingest of >= 2,000 chunks runs as a job
   in the owner (BM25-only, ``--embedder none``, to keep the shared machine usable): errors,
   "in use", p50/p95 per client, and the ingest's rate against the same ingest alone.
3. Failures: a client killed mid-request, the owner killed mid-ingest (then a re-run resumes
   it), a client started while the owner is starting.

    .venv/bin/python bench/service_latency.py [--quick] [--rate N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, SAMPLE, load1, log, machine, summary_ms, table, write_json

if __name__ == "__main__":  # not in the ingest's spawned workers, which import this module again
    HOME = Path(tempfile.mkdtemp(prefix="docmem-bench-svc-", dir="/tmp"))
    os.environ["DOCMEM_HOME"] = str(HOME)
else:
    HOME = Path(os.environ.get("DOCMEM_HOME", tempfile.gettempdir()))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}

from docmem.api import IngestOptions  # noqa: E402
from docmem.api.owner import Docmem  # noqa: E402
from docmem.config import load_settings  # noqa: E402

# A client process: N searches (or until a deadline), one JSON line of timings and errors.
CLIENT = r"""
import json, signal, sys, time
from docmem.api import connect
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
from docmem.api.remote import RemoteService
corpus, queries, seconds, rate = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
times, errors, in_use = [], [], 0
with connect(corpus=corpus) as service:
    remote = isinstance(service.route(), RemoteService)
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + seconds if seconds > 0 else None
    i = 0
    while not stop and ((deadline is None and i < len(queries))
                        or (deadline is not None and time.monotonic() < deadline)):
        q = queries[i % len(queries)]
        i += 1
        started = time.perf_counter()
        try:
            service.search(q)
        except Exception as exc:
            errors.append(str(exc)[:200])
            in_use += "in use" in str(exc)
        times.append(time.perf_counter() - started)
        if rate > 0:
            time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
print(json.dumps({"remote": remote, "times": times, "errors": errors, "in_use": in_use}), flush=True)
"""


def docmem(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docmem.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=timeout)


def spawn_client(corpus: str, queries: list[str], seconds: float, rate: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, corpus, json.dumps(queries), str(seconds), str(rate)],
                            env=ENV, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout and proc.stdout.readline().strip() == "ready"
    return proc


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    return json.loads(out.strip().splitlines()[-1])


def build_tree(copies: int) -> Path:
    """The sample corpora's text, Markdown, reST and PDF files, ``copies`` times (distinct paths)."""
    root = HOME / "tree"
    for n in range(copies):
        for kind in ("text", "markdown", "rst", "pdf"):
            shutil.copytree(SAMPLE / kind, root / f"copy{n}" / kind)
    return root


def queries_from(service: Docmem, corpus: str, n: int) -> list[str]:
    """Two-word queries drawn from the corpus's own text."""
    rng = random.Random(7)
    view = service.open_corpus(corpus)
    words: list[str] = []
    for path in view.manifest.paths()[:40]:
        for chunk in view.store.neighbours(path, 0, 3):
            words += [w for w in chunk.text.split() if w.isalpha() and len(w) > 4]
    return [f"{rng.choice(words)} {rng.choice(words)}" for _ in range(n)]


def added_latency(rounds: int, per_round: int, embedder: str = "none") -> dict[str, Any]:
    log(f"1. added latency: building the corpus (embedder {embedder})")
    small = HOME / "small"
    for kind in ("text", "markdown"):
        if not (small / kind).exists():
            shutil.copytree(SAMPLE / kind, small / kind)
    corpus = "lat" if embedder == "none" else f"lat-{embedder}"
    result = docmem("ingest", str(small), "--corpus", corpus, "--embedder", embedder, "--json", timeout=1800)
    assert result.returncode == 0, result.stderr
    chunks = json.loads(result.stdout)["chunks_written"]
    local_times: list[float] = []
    remote_times: list[float] = []
    with Docmem(load_settings(corpus=corpus)) as owner:
        queries = queries_from(owner, corpus, per_round)
        for q in queries[:20]:
            owner.search(q)  # warm
        for r in range(rounds):
            for q in queries:
                started = time.perf_counter()
                owner.search(q)
                local_times.append(time.perf_counter() - started)
            client = spawn_client(corpus, queries, 0, 0)
            assert client.stdin
            client.stdin.write("go\n")
            client.stdin.flush()
            data = finish(client)
            assert data["remote"] and not data["errors"], data
            remote_times += data["times"][5:]  # its first calls open the connection
            log(f"   round {r + 1}/{rounds} done")
    local, remote = summary_ms(local_times), summary_ms(remote_times)
    return {"embedder": embedder, "chunks": chunks, "queries_per_round": per_round, "rounds": rounds, "in_process": local,
            "through_owner": remote, "added_p50_ms": round(remote["p50_ms"] - local["p50_ms"], 3),
            "added_p95_ms": round(remote["p95_ms"] - local["p95_ms"], 3), "load1": load1()}


def ingest_alone(tree: Path, corpus: str) -> dict[str, Any]:
    with Docmem(load_settings(corpus=corpus)) as owner:
        started = time.perf_counter()
        summary = owner.ingest([tree], options=IngestOptions(embedder="none")).wait().summary
        seconds = time.perf_counter() - started
    assert summary is not None
    return {"chunks": summary["chunks_written"], "seconds": round(seconds, 2),
            "chunks_per_s": round(summary["chunks_written"] / seconds, 1), "load1": load1()}


def ingest_with_clients(tree: Path, corpus: str, clients: int, rate: float) -> dict[str, Any]:
    seed = HOME / f"seed-{corpus}"
    shutil.copytree(SAMPLE / "text", seed / "text")
    assert docmem("ingest", str(seed), "--corpus", corpus, "--embedder", "none").returncode == 0
    with Docmem(load_settings(corpus=corpus)) as owner:
        queries = queries_from(owner, corpus, 200)
        procs = [spawn_client(corpus, queries, 3600, rate) for _ in range(clients)]
        for proc in procs:
            assert proc.stdin
            proc.stdin.write("go\n")
            proc.stdin.flush()
        started = time.perf_counter()
        summary = owner.ingest([tree], options=IngestOptions()).wait().summary
        seconds = time.perf_counter() - started
        for proc in procs:
            proc.send_signal(signal.SIGUSR1)  # ends its loop after the current search
        results = []
        for proc in procs:
            try:
                results.append(finish(proc))
            except (ValueError, IndexError):
                results.append({"remote": True, "times": [], "errors": ["client died"], "in_use": 0})
    assert summary is not None
    per_client = [{**summary_ms(r["times"]), "errors": len(r["errors"]), "in_use": r["in_use"],
                   "remote": r["remote"]} for r in results]
    return {"clients": clients, "rate_per_client": f"{rate:g}/s each" if rate else "tight loop",
            "chunks": summary["chunks_written"], "seconds": round(seconds, 2),
            "chunks_per_s": round(summary["chunks_written"] / seconds, 1), "per_client": per_client,
            "errors": sum(c["errors"] for c in per_client), "in_use": sum(c["in_use"] for c in per_client),
            "load1": load1()}


def failures(tree: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log("3a. a client killed mid-request")
    assert docmem("ingest", str(SAMPLE / "text"), "--corpus", "fail", "--embedder", "none").returncode == 0
    with Docmem(load_settings(corpus="fail")) as owner:
        queries = queries_from(owner, "fail", 50)
        victim = spawn_client("fail", queries, 30, 0)
        assert victim.stdin
        victim.stdin.write("go\n")
        victim.stdin.flush()
        time.sleep(1.0)  # it is mid-loop, most likely mid-request
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        after = spawn_client("fail", queries, 0, 0)
        assert after.stdin
        after.stdin.write("go\n")
        after.stdin.flush()
        data = finish(after)
        own = owner.search(queries[0])
    out["client_killed"] = {"next_client_errors": len(data["errors"]), "next_client_searches": len(data["times"]),
                            "owner_search_ok": bool(own.total), "ok": not data["errors"]}

    log("3b. the owner killed mid-ingest, then the ingest run again")
    proc = subprocess.Popen([sys.executable, "-m", "docmem.cli", "ingest", str(tree), "--corpus", "killed",
                             "--embedder", "none", "--json"], env=ENV, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    manifest = HOME / "corpora" / "killed" / "manifest.sqlite"
    import sqlite3

    def files_done() -> int:
        try:
            db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
            try:
                return int(db.execute("SELECT COUNT(*) FROM files").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return 0
    deadline = time.monotonic() + 120
    while files_done() < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    at_kill = files_done()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = docmem("ingest", str(tree), "--corpus", "killed", "--json")
    summary = json.loads(rerun.stdout)
    with Docmem(load_settings(corpus="killed")) as owner:
        view = owner.open_corpus("killed")
        files, failed, chunks = view.manifest.totals()
        points = view.store.count()
    expected = sum(1 for p in tree.rglob("*") if p.is_file())
    out["owner_killed_mid_ingest"] = {"files_at_kill": at_kill, "rerun_added": len(summary["added"]),
                                      "rerun_unchanged": len(summary["unchanged"]), "files": files,
                                      "files_expected": expected, "chunks_in_manifest": chunks,
                                      "points_in_store": points,
                                      "ok": files + failed == expected and chunks == points}

    log("3c. a client started while the owner is starting (x5)")
    outcomes = []
    for _ in range(5):
        owner_proc = subprocess.Popen([sys.executable, "-m", "docmem.cli", "serve"], env=ENV, cwd=REPO,
                                      stderr=subprocess.PIPE, text=True)
        client = docmem("search", "Alice rabbit", "--corpus", "fail", "--json")
        assert owner_proc.stderr
        owner_proc.stderr.readline()  # serve is up
        second = docmem("search", "Alice rabbit", "--corpus", "fail", "--json")
        owner_proc.send_signal(signal.SIGTERM)
        owner_proc.wait(30)
        outcomes.append(client.returncode == 0 and second.returncode == 0 and "in use" not in client.stderr)
    out["client_during_owner_start"] = {"runs": len(outcomes), "ok": all(outcomes)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer queries, one copy of the tree")
    parser.add_argument("--rate", type=float, default=20,
                        help="searches/s per client in part 2's paced run (its other run is a tight loop)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--dense-latency", action="store_true",
                        help="only part 1, on a corpus with the bundled dense embedder (hybrid search)")
    args = parser.parse_args()
    if args.dense_latency:
        lat = added_latency(3, 300, "bundled")
        path = write_json("service_latency-dense", {"machine": machine(), "latency": lat})
        print(json.dumps(lat, indent=2))
        print(f"wrote {path}")
        shutil.rmtree(HOME, ignore_errors=True)
        return
    rounds, per_round, copies = (2, 100, 1) if args.quick else (3, 300, 3)
    results: dict[str, Any] = {"machine": machine(), "embedder": "none (BM25 only)"}
    results["latency"] = added_latency(rounds, per_round)
    tree = build_tree(copies)
    log("2. the ingest alone")
    results["ingest_alone"] = ingest_alone(tree, "alone")
    alone = results["ingest_alone"]["chunks_per_s"]
    for key, rate in (("ingest_with_clients", 0.0), ("ingest_with_paced_clients", args.rate)):
        log(f"2. the same ingest with {args.clients} clients searching ({f'{rate}/s each' if rate else 'tight loop'})")
        results[key] = ingest_with_clients(tree, key, args.clients, rate)
        results[key]["rate_ratio"] = round(results[key]["chunks_per_s"] / alone, 3)
    results["failures"] = failures(tree)
    name = "service_latency-quick" if args.quick else "service_latency"
    path = write_json(name, results)
    lat = results["latency"]
    print(table(["", "p50 ms", "p95 ms", "n"], [
        ["in-process", lat["in_process"]["p50_ms"], lat["in_process"]["p95_ms"], lat["in_process"]["n"]],
        ["through the owner", lat["through_owner"]["p50_ms"], lat["through_owner"]["p95_ms"],
         lat["through_owner"]["n"]],
        ["added", lat["added_p50_ms"], lat["added_p95_ms"], ""]], title=f"search, {lat['chunks']} chunks"))
    for key in ("ingest_with_clients", "ingest_with_paced_clients"):
        busy = results[key]
        print(table(["client", "searches", "p50 ms", "p95 ms", "errors", "in use"],
                    [[i + 1, c["n"], c["p50_ms"], c["p95_ms"], c["errors"], c["in_use"]]
                     for i, c in enumerate(busy["per_client"])],
                    title=f"{busy['clients']} clients ({busy['rate_per_client']}) during an ingest of "
                          f"{busy['chunks']} chunks"))
        print(f"ingest alone {alone} chunks/s, with these clients {busy['chunks_per_s']} chunks/s: "
              f"ratio {busy['rate_ratio']}")
    print(json.dumps(results["failures"], indent=2))
    print(f"wrote {path}")
    shutil.rmtree(HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
