"""Chunker speed on hostile text shapes: MB/s per shape, all in one run so they compare.

    .venv/bin/python bench/chunker_speed.py [--scale 1.0] [--only SHAPE]

Each shape goes through what a .txt file goes through in a worker: the plain-text parser
(paragraphs between blank lines) and the Chunker (200/30 tokens). Linear chunking gives the
same MB/s for the 1 MB and the 50 MB single line; a quadratic step shows as MB/s falling
with size. Target: >= 5 MB/s on one core for every shape (issue 9). The last column is the
floor no exact token count can beat: tiktoken alone over the same text (token-dense text such
as logs and random "words" is slow to tokenize whatever the chunker does). ``--scale 0.1``
for a quick look (sizes times 0.1). Times are this process's CPU seconds (one core), so
other work on a shared machine does not count against the figures.
"""

from __future__ import annotations

import argparse
import random
import time

import _common  # noqa: F401  (sys.path and environment)

from docmem.tokens import TokenCounter
from ingest.chunker import Chunker
from ingest.loaders.text import parse_plain

MB = 1_000_000
WORDS = ("valve pressure turbine inspection schedule flange gasket torque vibration sensor calibration "
         "maintenance operator shutdown the of and a to in is was for on with as by at").split()


def prose(size: int, rng: random.Random, newline_every: int = 0) -> str:
    """Sentences of random words; a newline after every ``newline_every`` sentences (0: none)."""
    parts, n, count = [], 0, 0
    while n < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))).capitalize() + ". "
        count += 1
        if newline_every and count % newline_every == 0:
            sentence = sentence.rstrip() + "\n\n"
        parts.append(sentence)
        n += len(sentence)
    return "".join(parts)[:size]


def log_lines(size: int, rng: random.Random) -> str:
    parts, n, i = [], 0, 0
    while n < size:
        line = (f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z INFO svc-{rng.randint(1, 9)} request "
                f"id={rng.getrandbits(64):016x} path=/api/v1/items/{rng.randint(1, 10**6)} status=200 "
                f"took={rng.randint(1, 900)}ms\n")
        parts.append(line)
        n += len(line)
        i += 1
    return "".join(parts)[:size]


def shapes(scale: float) -> dict[str, str]:
    rng = random.Random(9)
    return {
        "paragraphs 8 MB (baseline)": prose(int(8 * MB * scale), rng, newline_every=5),
        "single line 1 MB": prose(int(1 * MB * scale), rng),
        "single line 8 MB": prose(int(8 * MB * scale), rng),
        "single line 50 MB": prose(int(50 * MB * scale), rng),
        "space-less word 0.3 MB": "".join(rng.choice("abcdefghij0123456789") for _ in range(int(0.3 * MB * scale))),
        "log 17 MB, no blank line": log_lines(int(17 * MB * scale), rng),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default=None, help="run only shapes whose name contains this")
    args = parser.parse_args()
    chunker = Chunker(200, 30, TokenCounter())
    chunker.chunk(parse_plain("warm up the tokenizer.", "t"), doc_hash="0" * 64, path="t.txt")
    encoding = chunker.counter.encoding
    print(f"{'shape':<28} {'MB':>7} {'seconds':>8} {'MB/s':>7} {'chunks':>8} {'tokenizer alone MB/s':>21}")
    for name, text in shapes(args.scale).items():
        if args.only and args.only not in name:
            continue
        size = len(text.encode("utf-8")) / MB
        started = time.process_time()
        chunks = chunker.chunk(parse_plain(text, "t"), doc_hash="0" * 64, path="t.txt")
        seconds = time.process_time() - started
        started = time.process_time()  # the floor: one tiktoken pass over the text, in 1 MB calls
        for at in range(0, len(text), MB):
            encoding.encode_ordinary(text[at:at + MB])
        floor = time.process_time() - started
        print(f"{name:<28} {size:>7.2f} {seconds:>8.2f} {size / seconds:>7.1f} {len(chunks):>8} "
              f"{size / floor:>21.1f}", flush=True)


if __name__ == "__main__":
    main()
