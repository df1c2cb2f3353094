"""CSV and Markdown from the answer records (the JSONL stays the source of truth).

Both are regenerated whole from the records and written atomically, so they can be
refreshed during a run and a kill never leaves half a file; the next run rewrites them.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from docmem.batch.answers import Record, write_atomic

KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".md": "markdown", ".markdown": "markdown"}


def output_kind(path: Path) -> str:
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown output format; use .jsonl, .csv or .md")
    return kind


@dataclass(frozen=True)
class ReportInfo:
    title: str  # the questions file
    corpus: str
    state: str
    answers_file: str


def write_report(path: Path, records: Sequence[Record], info: ReportInfo) -> None:
    kind = output_kind(path)
    if kind == "csv":
        write_atomic(path, render_csv(records))
    elif kind == "markdown":
        write_atomic(path, render_markdown(records, info))
    else:
        raise ValueError(f"{path}: the JSONL is written by the runner, not here")


# -- CSV --------------------------------------------------------------------------------

_CSV_HEAD = ["id", "question"]
_CSV_TAIL = ["status", "answer", "citations", "files", "verified", "error", "warning", "steps",
             "tokens_in", "tokens_out", "seconds", "model", "corpus", "corpus_state", "checked_state",
             "stale", "finished"]


def render_csv(records: Sequence[Record]) -> str:
    """One row per question; citations flattened to text; input fields as their own columns."""
    extra: list[str] = []
    for record in records:
        for key in record.get("fields") or {}:
            if key not in extra:
                extra.append(key)
    reserved = set(_CSV_HEAD) | set(_CSV_TAIL)
    columns = _CSV_HEAD + [f"input.{k}" if k in reserved else k for k in extra] + _CSV_TAIL
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        cites = r.get("citations") or []
        fields = r.get("fields") or {}
        row: list[Any] = [r.get("id"), r.get("question")]
        row += [_cell(fields.get(k)) for k in extra]
        row += [
            r.get("status"), r.get("answer"),
            "\n".join(f"[{c.get('n', i)}] {_where(c)} ({c.get('chunk_id')}): \"{c.get('quote')}\""
                      f"{'' if c.get('verified') else ' NOT VERIFIED'}" for i, c in enumerate(cites, start=1)),
            "; ".join(dict.fromkeys(_where(c) for c in cites)),
            f"{sum(bool(c.get('verified')) for c in cites)}/{len(cites)}",
            r.get("error") or "", r.get("warning") or "", r.get("steps"), r.get("tokens_in"),
            r.get("tokens_out"), r.get("seconds"), r.get("model"), r.get("corpus"),
            r.get("corpus_state"), r.get("checked_state"),
            "; ".join((r.get("stale") or {}).get("reasons") or []), r.get("finished"),
        ]
        writer.writerow([_inert(v) for v in row])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def _inert(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (=, +, -, @ first) gets a leading quote: answers
    quote documents, and documents can carry anything (OWASP's advice for CSV exports)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _where(c: dict[str, Any]) -> str:
    return (c.get("path") or "?") + (f" p.{c['page']}" if c.get("page") is not None else "")


# -- Markdown ---------------------------------------------------------------------------

_MARKERS = re.compile(r"\\\[(\d+(?:\s*,\s*\d+)*)\\\](?!\()")  # "[1]" as _md leaves it: "\[1\]"
_SEARCHED = re.compile(r"\n\nSearched: .*?; (\d+) passages seen\.\s*$", re.S)


def render_markdown(records: Sequence[Record], info: ReportInfo) -> str:
    """A report a person can read and share: summary, answers with footnotes, abstentions,
    failures."""
    answered = [(n, r) for n, r in enumerate(records, start=1) if r.get("status") == "answered"]
    unverified = [(n, r) for n, r in enumerate(records, start=1) if r.get("status") == "unverified"]
    abstained = [(n, r) for n, r in enumerate(records, start=1) if r.get("status") == "abstained"]
    failed = [(n, r) for n, r in enumerate(records, start=1)
              if r.get("status") not in ("answered", "unverified", "abstained")]
    cites = [c for r in records for c in r.get("citations") or []]
    verified = sum(bool(c.get("verified")) for c in cites)
    models = sorted({str(r.get("model")) for r in records if r.get("model")})
    tokens_in = sum(int(r.get("tokens_in") or 0) for r in records)
    tokens_out = sum(int(r.get("tokens_out") or 0) for r in records)
    seconds = sum(float(r.get("seconds") or 0) for r in records)
    lines = [
        f"# Answers: {info.title}",
        "",
        f"Corpus `{info.corpus}` (state `{info.state}`), model {', '.join(f'`{m}`' for m in models) or '?'}; "
        f"generated {time.strftime('%Y-%m-%d %H:%M')} from `{info.answers_file}`.",
        "",
        "| | |",
        "|---|---:|",
        f"| questions | {len(records)} |",
        f"| answered | {len(answered)} |",
        f"| unverified (no verified citation) | {len(unverified)} |",
        f"| abstained (not found in the corpus) | {len(abstained)} |",
        f"| failed | {len(failed)} |",
        f"| citations verified | {verified} of {len(cites)} |",
        f"| tokens in / out | {tokens_in:,} / {tokens_out:,} |",
        f"| time (sum over questions) | {_duration(seconds)} |",
        "",
        "## Summary",
        "",
        "| # | question | status | sources |",
        "|---:|---|---|---|",
    ]
    for n, r in enumerate(records, start=1):
        sources = "; ".join(dict.fromkeys(_where(c) for c in r.get("citations") or []))
        lines.append(f"| [{n}](#q{n}) | {_table(r.get('question', ''))} | {r.get('status')} | "
                     f"{_table(sources) or '–'} |")
    if answered:
        lines += ["", "## Answers"]
        for n, r in answered:
            lines += _answer_section(n, r)
    if unverified:
        lines += ["", "## Unverified replies", "",
                  "The model replied without a verified citation: treat these as unsupported."]
        for n, r in unverified:
            lines += _answer_section(n, r)
    if abstained:
        lines += ["", "## Abstentions", "",
                  "The agent searched and did not find these in the corpus."]
        for n, r in abstained:
            lines += _abstention_section(n, r)
    if failed:
        lines += ["", "## Failures", "", "Re-run the same command to ask these again."]
        for n, r in failed:
            lines += ["", f'<a id="q{n}"></a>', "", f"### {n}. {_inline(r.get('question', ''))}", "",
                      f"Error: {_md(_inline(r.get('error') or 'unknown error'))}"]
    return "\n".join(lines) + "\n"


def _answer_section(n: int, r: Record) -> list[str]:
    cites = r.get("citations") or []
    text = (r.get("answer") or "").strip()
    used: set[int] = set()

    def footnotes(match: re.Match[str]) -> str:
        numbers = [int(x) for x in re.split(r"\s*,\s*", match.group(1))]
        if not all(1 <= k <= len(cites) for k in numbers):
            return match.group(0)
        used.update(numbers)
        return "".join(f"[^q{n}-{k}]" for k in numbers)

    text = _MARKERS.sub(footnotes, _md(text))
    unused = [k for k in range(1, len(cites) + 1) if k not in used]
    if unused:  # every source gets a marker, or Markdown drops its footnote
        text += " " + "".join(f"[^q{n}-{k}]" for k in unused)
    out = ["", f'<a id="q{n}"></a>', "", f"### {n}. {_inline(r.get('question', ''))}", "", text]
    if r.get("warning"):
        out += ["", f"> ⚠ {_md(_inline(r['warning']))}"]
    if r.get("stale"):
        out += ["", f"_Re-answered after the corpus changed: {'; '.join(r['stale'].get('reasons') or [])}._"]
    out.append("")
    for k, c in enumerate(cites, start=1):
        check = "✓ verified" if c.get("verified") else f"✗ NOT verified: {c.get('reason') or ''}"
        out.append(f"[^q{n}-{k}]: **{_md(_where(c))}**: “{_inline(c.get('quote', ''))}” "
                   f"(chunk `{_inline(c.get('chunk_id', '')).replace('`', '')}`, {_md(check)})")
    return out


def _abstention_section(n: int, r: Record) -> list[str]:
    text = (r.get("answer") or "").strip()
    seen = None
    match = _SEARCHED.search("\n\n" + text if text.startswith("Searched: ") else text)
    if match and r.get("searches"):
        text, seen = text[:match.start()].strip(), match.group(1)
    out = ["", f'<a id="q{n}"></a>', "", f"### {n}. {_inline(r.get('question', ''))}", ""]
    if text:
        out += [_md(text), ""]
    searches = r.get("searches") or []
    if searches:
        out.append("Searched:" if seen is None else f"Searched ({seen} passages seen):")
        out.append("")
        for s in searches:
            where = f" in `{_inline(s['path']).replace('`', '')}`" if s.get("path") else ""
            total = f"{s.get('total')}{'+' if s.get('capped') else ''}"
            out.append(f"- “{_inline(str(s.get('query', '')))}”{where}, page {s.get('page')}: {total} results")
    else:
        out.append("Nothing was searched.")
    return out


def _table(text: str) -> str:
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    """One line of text as Markdown shows it literally (``_md``)."""
    return _md(" ".join(str(text).split()))


_ACTIVE = re.compile(r"[\\`*_\[\]<>&!]")


def _md(text: str) -> str:
    """Text from documents, the model or the user, inert in Markdown: a quote or an answer can
    carry ``<img src=x onerror=...>``, ``![](https://tracker/...)`` or ``[click](javascript:...)``
    from a hostile document, and a report is opened in renderers that run them. HTML is
    escaped as entities, link, image, code and emphasis syntax with a backslash; answer
    markers ``[1]`` become footnotes afterwards."""
    def escape(match: re.Match[str]) -> str:
        c = match.group(0)
        return {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(c, "\\" + c)
    return _ACTIVE.sub(escape, str(text))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
