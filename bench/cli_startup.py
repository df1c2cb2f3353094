"""How long the CLI takes to start: every ``--help`` and ``docmem corpora``, in subprocesses.

    .venv/bin/python bench/cli_startup.py [--runs 7] [--json]

Each command runs ``--runs`` times as ``python -m docmem.cli ...`` in a fresh process, with
DOCMEM_HOME pointing at a temporary data home holding one small BM25 corpus (so that
``corpora`` has something to list); the median and the worst wall time are reported, and
the median compared against the 0.3 s target. The first run of each command is a warm-up
(page cache, .pyc) and is not counted. Load average is printed: on a busy 2-core machine
every figure rises together.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.3


def commands() -> list[list[str]]:
    from docmem.cli.main import cli

    out = [["--help"]] + [[name, "--help"] for name in sorted(cli.commands)]
    out += [["eval", sub, "--help"] for sub in sorted(cli.commands["eval"].commands)]  # type: ignore[attr-defined]
    return out + [["corpora"]]


def time_one(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "docmem.cli", *args], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DOCMEM_HOME": home, "PYTHONPATH": str(ROOT)}
        src = Path(home) / "src"
        src.mkdir()
        (src / "a.txt").write_text("A small file so that `docmem corpora` lists one corpus.\n")
        subprocess.run([sys.executable, "-m", "docmem.cli", "ingest", str(src), "--embedder", "none"],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        rows = []
        for args in commands():
            time_one(args, env)  # warm-up
            times = [time_one(args, env) for _ in range(opts.runs)]
            rows.append({"command": "docmem " + " ".join(args), "median_s": round(statistics.median(times), 3),
                         "max_s": round(max(times), 3)})
    load = os.getloadavg()[0]
    if opts.json:
        print(json.dumps({"load_average": load, "runs": opts.runs, "rows": rows}, indent=2))
        return
    print(f"{opts.runs} runs each, load average {load:.2f}, target median <= {TARGET} s")
    for row in rows:
        mark = "ok" if row["median_s"] <= TARGET else "SLOW"
        print(f"{row['command']:<32} median {row['median_s']:.3f} s  max {row['max_s']:.3f} s  {mark}")


if __name__ == "__main__":
    main()
