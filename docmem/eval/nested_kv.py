"""Nested key-value retrieval (MemGPT, section 3.2.2): the recipe, the scoring, the run.

An instance is a list of UUID key-value pairs in which a chain of ``level`` values were
replaced by other keys: the key asked for leads, through ``level`` nested lookups, to a
value that is no key. Level 0 is the original single lookup.

docmem gets the pairs in archival storage, one ``Key-value pair: key = K, value = V`` per
file, and pages through them with ``archival_search``. The baseline is the same model
with all the pairs in its prompt, when they fit its window (otherwise it is scored wrong
and the record says ``did_not_fit``).
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from docmem.errors import DocmemError
from docmem.eval.corpora import EvalCorpus, IngestFn, corpus_name
from docmem.eval.harness import Estimate, Harness, Prior, agent_estimate, prompt
from docmem.tokens import TokenCounter

SHARED_FILE = "kv-retrieval-140_keys.jsonl.gz"
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)

Pairs = list[tuple[str, str]]


# -- the recipe ---------------------------------------------------------------------------


def nest(pairs: Pairs, level: int, rng: random.Random) -> tuple[Pairs, str, str, list[int]]:
    """The paper's recipe: choose ``level + 1`` distinct positions i0..iL; the value of
    key[i_j] becomes key[i_(j+1)]. Returns (pairs, key asked, gold value, chain positions)."""
    if not 0 <= level < len(pairs):
        raise DocmemError(f"nesting level {level} needs more than {level} pairs (have {len(pairs)})")
    pairs = list(pairs)
    chain = rng.sample(range(len(pairs)), level + 1)
    for a, b in zip(chain, chain[1:]):
        pairs[a] = (pairs[a][0], pairs[b][0])
    return pairs, pairs[chain[0]][0], pairs[chain[-1]][1], chain


@functools.cache
def read_lines(path: Path) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Every line of kv-retrieval-140_keys.jsonl.gz (the paper's data) as its ordered pairs."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = []
            for line in fh:
                record = json.loads(line)
                raw = record.get("ordered_kv_records") or record["kv_records"]
                lines.append(tuple((str(k), str(v)) for k, v in raw))
    except (OSError, ValueError, KeyError) as exc:
        raise DocmemError(f"cannot read key-value data {path}: {exc}") from None
    if not lines:
        raise DocmemError(f"no key-value records in {path}")
    return tuple(lines)


def random_pairs(n: int, rng: random.Random) -> Pairs:
    """``n`` pairs of random (seeded) version-4 UUIDs, as ``uuid.uuid4()`` makes them."""
    def one() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    return [(one(), one()) for _ in range(n)]


def resolve_data(path: Path) -> Path:
    """--data may name the file or the folder that holds it."""
    candidate = path / SHARED_FILE if path.is_dir() else path
    if not candidate.exists():
        raise DocmemError(f"no {SHARED_FILE} at {path}")
    return candidate


@dataclass(frozen=True)
class KVInstance:
    sample: int
    level: int
    pairs: tuple[tuple[str, str], ...]
    key: str
    gold: str
    chain: tuple[str, ...]  # the keys looked up, in order; the last one's value is the gold

    @property
    def id(self) -> str:
        return f"s{self.sample:03d}-l{self.level}"


@dataclass(frozen=True)
class KVParams:
    levels: tuple[int, ...] = (0, 1, 2, 3, 4)
    pairs: int = 140
    samples: int = 30
    seed: int = 0
    data: Path | None = None  # kv-retrieval-140_keys.jsonl.gz; None: generate with seeded uuid4
    embedder: str = "bundled"
    fresh: bool = False


def base_pairs(params: KVParams, sample: int) -> Pairs:
    """The pairs of one sample before nesting: the same for every level of that sample."""
    if params.data is None:
        return random_pairs(params.pairs, random.Random(f"kv-pairs:{params.seed}:{sample}"))
    lines = read_lines(resolve_data(params.data))
    line = lines[(params.seed + sample) % len(lines)]
    if params.pairs > len(line):
        raise DocmemError(f"--pairs {params.pairs}: the data has {len(line)} pairs a line")
    return list(line[:params.pairs])


def instance(params: KVParams, sample: int, level: int, pairs: Pairs | None = None) -> KVInstance:
    rng = random.Random(f"kv-chain:{params.seed}:{sample}:{level}")
    nested, key, gold, chain = nest(pairs or base_pairs(params, sample), level, rng)
    return KVInstance(sample, level, tuple(nested), key, gold, tuple(nested[i][0] for i in chain))


def questions(params: KVParams) -> Iterator[KVInstance]:
    """Sample-major, so a run cut short by its budget still covers every level evenly."""
    for sample in range(params.samples):
        pairs = base_pairs(params, sample)
        for level in params.levels:
            yield instance(params, sample, level, pairs)


# -- what each system is given, and the score ----------------------------------------------


def pair_text(key: str, value: str) -> str:
    return f"Key-value pair: key = {key}, value = {value}"


def pair_files(pairs: Any) -> dict[str, str]:
    return {EvalCorpus.file_name(f"pair-{i:03d}", pair_text(k, v), ".txt"): pair_text(k, v)
            for i, (k, v) in enumerate(pairs)}


def agent_question(inst: KVInstance) -> str:
    return prompt("kv_question", key=inst.key)


def baseline_prompt(inst: KVInstance) -> str:
    data = ",\n".join(f'"{k}": "{v}"' for k, v in inst.pairs)
    return prompt("kv_baseline", pairs=data, key=inst.key)


def score(answer: str, inst: KVInstance) -> bool:
    """Exact UUID match: the gold value must be named, and no UUID outside the lookup chain
    (listing candidates earns nothing)."""
    named = {u.lower() for u in UUID.findall(answer or "")}
    allowed = {k.lower() for k in inst.chain} | {inst.gold.lower()}
    return inst.gold.lower() in named and named <= allowed


def reply_reserve(window: int) -> int:
    return min(1024, max(256, window // 16))


# -- planning (--dry-run) and running ----------------------------------------------------------


def priors(inst: KVInstance, counter: TokenCounter, page_size: int, systems: tuple[str, ...],
           baseline_tokens: int | None = None) -> list[Prior]:
    """Expected calls and tokens of one instance: the agent ideally does level + 1 lookups,
    one search proving the last value is no key, and the answer."""
    out: list[Prior] = []
    if "docmem" in systems:
        out.append(Prior("docmem", inst.level, agent_estimate(
            counter, counter.count(agent_question(inst)), inst.level + 3, page_size * 55)))
    if "baseline" in systems:
        tokens = baseline_tokens if baseline_tokens is not None else counter.count(baseline_prompt(inst))
        out.append(Prior("baseline", inst.level, Estimate(1, tokens + 8, 40)))
    return out


def plan(params: KVParams, counter: TokenCounter, page_size: int, systems: tuple[str, ...],
         max_questions: int | None) -> list[dict[str, Any]]:
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for n, inst in enumerate(questions(params)):
        if max_questions is not None and n >= max_questions:
            break
        for prior in priors(inst, counter, page_size, systems):
            estimate = prior.estimate
            row = rows.setdefault((prior.system, inst.level), {
                "system": prior.system, "x": inst.level, "questions": 0, "calls": 0.0, "tokens_in": 0.0,
                "tokens_out": 0.0})
            row["questions"] += 1
            row["calls"] += estimate.calls
            row["tokens_in"] += estimate.tokens_in
            row["tokens_out"] += estimate.tokens_out
    return sorted(rows.values(), key=lambda r: (r["system"] != "docmem", r["x"]))


def run(harness: Harness, params: KVParams, ingest: IngestFn) -> list[dict[str, Any]]:
    """Every instance on every system; one JSONL record per (instance, system)."""
    options, settings = harness.options, harness.settings
    harness.header({"levels": list(params.levels), "pairs": params.pairs, "samples": params.samples,
                    "seed": params.seed, "data": str(params.data) if params.data else "generated (seeded uuid4)",
                    "embedder": params.embedder})
    total = params.samples * len(params.levels)
    if options.max_questions is not None:
        total = min(total, options.max_questions)
    records: list[dict[str, Any]] = []
    reserve = reply_reserve(options.baseline_window)
    done = 0
    for sample in range(params.samples):
        if harness.stopped:
            break
        pairs = base_pairs(params, sample)
        corpus: EvalCorpus | None = None  # one per sample; between levels only changed pairs are re-ingested
        try:
            for level in params.levels:
                inst = instance(params, sample, level, pairs)
                text = baseline_prompt(inst)
                baseline_tokens = harness.counter.count(text)
                if not harness.may_start(priors(inst, harness.counter, settings.page_size, options.systems,
                                                baseline_tokens)):
                    break
                done += 1
                common = {"id": inst.id, "sample": sample, "level": level, "x": level, "pairs": len(inst.pairs),
                          "key": inst.key, "gold": inst.gold, "chain": list(inst.chain)}
                marks = []
                for system in options.systems:
                    if system == "docmem":
                        if corpus is None:
                            name = corpus_name("kv", (f"{k}={v}" for k, v in pairs), settings, params.embedder)
                            corpus = EvalCorpus(settings, name, params.embedder, ingest, fresh=params.fresh)
                        corpus.sync(pair_files(inst.pairs))
                        outcome = harness.ask_agent(corpus.corpus, agent_question(inst), inst.id, level)
                    else:
                        fits = baseline_tokens + 8 + reserve <= options.baseline_window
                        outcome = harness.ask_baseline(text, inst.id, level, fits=fits)
                    correct = outcome.status == "answered" and score(outcome.answer, inst)
                    records.append(harness.result({**common, **outcome.fields(), "correct": correct}))
                    mark = "✓" if correct else "✗"
                    marks.append(f"{system} {mark} ({outcome.status}, {outcome.steps} steps)")
                harness.notify(f"[{done}/{total}] level {level} sample {sample}: " + " · ".join(marks))
        finally:
            if corpus is not None:
                corpus.close()
    return records
