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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            main = self.proc.memory_info().rss
        except psutil.Error:
            return
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


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
