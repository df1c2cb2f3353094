"""Helpers shared by the benchmark scripts (not part of the product).

Every bench points DOCMEM_HOME at a temporary directory under /tmp (or a cache folder
under bench/cache) before importing docmem, so it never touches a user's corpora.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
CACHE = BENCH / "cache"
SAMPLE = REPO / "sample_corpora"

if str(REPO) not in sys.path:  # run as `python bench/NAME.py` from the repo root
    sys.path.insert(0, str(REPO))

os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "1")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # The machine is shared: other work running at the same time slows every figure.
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as fh:
            info["mem_gb"] = round(int(fh.readline().split()[1]) / 1e6, 1)
    except OSError:
        pass
    try:
        from importlib.metadata import version

        info["qdrant_edge"] = version("qdrant-edge-py")
        info["fastembed"] = version("fastembed")
        info["onnxruntime"] = version("onnxruntime")
        info["pypdf"] = version("pypdf")
    except Exception:  # pragma: no cover - informative only
        pass
    return info


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
        return "-" if v is None else str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in body:
        lines.append("| " + " | ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-.") and text != "-" or text.endswith("%")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p95_ms": round(percentile(ms, 0.95), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
    }


class RssSampler:
    """Peak resident memory of a process and its descendants, sampled in a thread.

    ``ru_maxrss`` alone misses the worker processes (RUSAGE_CHILDREN reports only the largest
    single child, and only once it has been waited for), so the tree is summed here.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.2) -> None:
        import psutil

        self.proc = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.peak_tree = 0
        self.peak_main = 0
        self.peak_main_anon = 0  # rss - shared: without file-backed pages (mmapped segments, WAL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            info = self.proc.memory_info()
        except psutil.Error:
            return
        main = info.rss
        self.peak_main_anon = max(self.peak_main_anon, info.rss - getattr(info, "shared", 0))
        total = main
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        self.peak_main = max(self.peak_main, main)
        self.peak_tree = max(self.peak_tree, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_tree_mb(self) -> float:
        return round(self.peak_tree / 1e6, 1)

    @property
    def peak_main_mb(self) -> float:
        return round(self.peak_main / 1e6, 1)

    @property
    def peak_main_anon_mb(self) -> float:
        return round(self.peak_main_anon / 1e6, 1)


_SAMPLER_CODE = """
import json, signal, sys, time, psutil
pid, out = int(sys.argv[1]), sys.argv[2]
proc = psutil.Process(pid)
peak = {"rss": 0, "anon": 0}
def done(*_):
    open(out, "w").write(json.dumps(peak)); sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    try:
        m = proc.memory_info()
    except psutil.Error:
        done()
    peak["rss"] = max(peak["rss"], m.rss); peak["anon"] = max(peak["anon"], m.rss - m.shared)
    time.sleep(0.2)
"""


class ExternalRssSampler:
    """Peak RSS of this process, sampled from another process.

    Needed around calls that hold the GIL for their whole duration, which starves an
    in-process sampling thread: qdrant_edge's ``EdgeShard.optimize()`` is one (checked: a
    10 ms ticker thread got 1 tick in a 10.7 s optimize).
    """

    def __enter__(self) -> "ExternalRssSampler":
        import subprocess
        import tempfile

        self.out = tempfile.mktemp(suffix=".json", dir="/tmp")
        self.proc = subprocess.Popen([sys.executable, "-c", _SAMPLER_CODE, str(os.getpid()), self.out])
        time.sleep(0.3)  # let it start sampling
        return self

    def __exit__(self, *exc: Any) -> None:
        import json as _json

        self.proc.terminate()
        self.proc.wait()
        try:
            with open(self.out, encoding="utf-8") as fh:
                peak = _json.load(fh)
            os.unlink(self.out)
        except (OSError, ValueError):
            peak = {"rss": 0, "anon": 0}
        self.peak_mb = round(peak["rss"] / 1e6, 1)
        self.peak_anon_mb = round(peak["anon"] / 1e6, 1)


def load1() -> float:
    """1-minute load average: this machine is shared, so each phase records it."""
    return round(os.getloadavg()[0], 2)


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
