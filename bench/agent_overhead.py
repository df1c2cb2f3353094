"""Loop overhead per step, excluding the LLM, and tokens sent per nested-KV answer.

1. Overhead: a scripted processor (answers instantly) drives archival_search steps over
   sample_corpora (BM25, so no query embedding is timed) at 8k, 32k and 128k windows, with a
   trace file written. Everything the loop does besides the LLM call is timed: context
   assembly, token counting, memory pressure checks, paging, recall writes, trace writes.
   Target: <= 5 ms per step.
2. Tokens sent per nested-KV answer (levels 1-4, 140 pairs) by docmem's paging agent driven
   by a policy that reads only tool results, against the fixed-context baseline that puts
   all 140 pairs in one prompt.

    .venv/bin/python bench/agent_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DOCMEM_HOME", tempfile.mkdtemp(prefix="docmem-bench-"))

from docmem.agent.loop import Agent, LLMStep, Trace  # noqa: E402
from docmem.agent.recall import Recall  # noqa: E402
from docmem.config import load_settings  # noqa: E402
from docmem.llm.scripted import ScriptedProcessor, call, text  # noqa: E402
from docmem.store.corpus import open_corpus  # noqa: E402
from docmem.tokens import TokenCounter  # noqa: E402
from ingest.pipeline import ingest  # noqa: E402
from tests.agent_helpers import build_corpus, kv_policy, nested_kv  # noqa: E402

QUERIES = ["linear model", "rabbit hole", "write-ahead log", "event emitter", "package manager",
           "paragraph style", "data frame", "checkpoint", "stream backpressure", "tea party"]


class TimedProcessor(ScriptedProcessor):
    """Records the time spent inside the (instant) LLM, to subtract it."""

    def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.llm_seconds = 0.0

    def complete(self, messages, tools, on_text=None, *, schema=None):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return super().complete(messages, tools, on_text, schema=schema)
        finally:
            self.llm_seconds += time.perf_counter() - started


def overhead(window: int, steps: int) -> dict[str, float]:
    settings = load_settings(corpus="sample")
    counter = iter(range(10**6))

    def policy(messages, tools):  # type: ignore[no-untyped-def]
        if not tools:
            return text("summary of the searches so far")
        n = next(counter)
        return call("archival_search", query=QUERIES[n % len(QUERIES)], page=1 + (n // len(QUERIES)) % 5,
                    request_heartbeat=True)

    llm = TimedProcessor(policy=policy)
    with open_corpus(settings) as corpus, tempfile.TemporaryDirectory() as tmp:
        agent = Agent(llm, corpus, Recall(Path(tmp) / "recall.sqlite", "bench"), window=window,
                      max_steps=steps)
        trace = Trace(Path(tmp) / "trace.jsonl")
        per_step: list[float] = []
        last = time.perf_counter()
        llm_before = 0.0
        flushes = 0
        for step in agent.run("benchmark question"):
            trace.write(step)
            if isinstance(step, LLMStep):
                continue
            if type(step).__name__ == "MemoryStep" and step.kind == "flush":  # type: ignore[union-attr]
                flushes += 1
            if type(step).__name__ == "CallStep":
                now = time.perf_counter()
                per_step.append((now - last) - (llm.llm_seconds - llm_before))
                last, llm_before = now, llm.llm_seconds
        trace.close()
        context = agent._usage().total
    per_step_ms = sorted(x * 1000 for x in per_step[3:])  # skip warm-up
    return {"window": window, "steps": len(per_step), "flushes": flushes, "context_tokens_at_end": context,
            "p50_ms": statistics.median(per_step_ms), "p95_ms": per_step_ms[int(len(per_step_ms) * 0.95) - 1],
            "mean_ms": statistics.fmean(per_step_ms)}


def kv_tokens(level: int, seed: int, tmp: Path) -> dict[str, float]:
    settings = load_settings(corpus=f"kv{level}-{seed}")
    pairs, key, gold = nested_kv(level, seed=seed)
    build_corpus(settings, tmp / f"kv{level}-{seed}", {
        f"pair{i:03d}.txt": f"Key-value pair: key = {k}, value = {v}" for i, (k, v) in enumerate(pairs)})
    llm = ScriptedProcessor(policy=kv_policy)
    tc = TokenCounter("gpt-4o-mini")
    with open_corpus(settings) as corpus:
        agent = Agent(llm, corpus, Recall(":memory:", "kv"), window=8192, model="gpt-4o-mini")
        result = agent.ask(f"Find the value of key {key}. If the value is itself a key, look that up too.")
    sent = sum(sum(tc.count((m.get("content") or "") + json.dumps(m.get("tool_calls") or ""))
                   for m in messages) + tc.count(json.dumps(tools, separators=(",", ":")))
               for messages, tools in llm.history)
    baseline = tc.count(
        "Extract the value corresponding to the specified key in the JSON object below. If the value is "
        "itself a key, find its value too, until you reach a value that is not a key.\n\nJSON data:\n"
        + json.dumps(dict(pairs), indent=1) + f"\n\nKey: \"{key}\"\nCorresponding value:")
    return {"level": level, "correct": gold in result.answer, "calls": len(llm.history),
            "docmem_tokens_sent": sent, "baseline_tokens_sent": baseline}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    settings = load_settings(corpus="sample")
    with open_corpus(settings, create=True, embedder="none") as corpus:
        ingest(corpus, [ROOT / "sample_corpora"])
    steps = 40 if args.quick else 120
    rows = [overhead(w, steps) for w in (8192, 32768, 131072)]
    print("Loop overhead per step (excluding the LLM), BM25 paging over sample_corpora, trace on")
    print(f"{'window':>8} {'steps':>6} {'flushes':>8} {'ctx tokens':>11} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for r in rows:
        print(f"{r['window']:>8} {r['steps']:>6} {r['flushes']:>8} {r['context_tokens_at_end']:>11} "
              f"{r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['mean_ms']:>8.2f}")
    kv = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in (1, 2, 3, 4):
            samples = [kv_tokens(level, seed, Path(tmp)) for seed in range(1 if args.quick else 3)]
            kv.append({"level": level, "accuracy": sum(s["correct"] for s in samples) / len(samples),
                       "docmem_tokens_sent": statistics.fmean(s["docmem_tokens_sent"] for s in samples),
                       "baseline_tokens_sent": statistics.fmean(s["baseline_tokens_sent"] for s in samples),
                       "calls": statistics.fmean(s["calls"] for s in samples)})
    print("\nTokens sent per nested-KV answer (140 pairs; scripted policy reading only tool results)")
    print(f"{'level':>6} {'calls':>6} {'docmem':>9} {'baseline':>9} {'ratio':>6} {'correct':>8}")
    for r in kv:
        print(f"{r['level']:>6} {r['calls']:>6.1f} {r['docmem_tokens_sent']:>9.0f} {r['baseline_tokens_sent']:>9.0f} "
              f"{r['docmem_tokens_sent'] / r['baseline_tokens_sent']:>6.2f} {r['accuracy']:>8.0%}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_overhead.json").write_text(json.dumps({"overhead": rows, "nested_kv": kv}, indent=2))


if __name__ == "__main__":
    main()
