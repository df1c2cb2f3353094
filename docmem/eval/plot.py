"""The figures, in the manner of the MemGPT paper's: accuracy against nesting level (nested
KV) and against the number of retrieved documents K (doc-QA), one line per system (and
model), shaded 95% Wilson intervals, the model name and the date in the title.

matplotlib (the ``plot`` extra) is imported here only, with the Agg backend: no display.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from docmem.errors import DocmemError
from docmem.eval.report import TASK_TITLES, Row, Run

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
_SYSTEM_COLORS = {"docmem": "#1f77b4", "baseline": "#e6550d"}
_STYLE = {"docmem": {"linestyle": "-", "marker": "o"}, "baseline": {"linestyle": "--", "marker": "s"}}
_NAMES = {"docmem": "docmem (paging agent)", "baseline": "fixed-context baseline"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DocmemError("plots need matplotlib: pip install 'docmem[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _title(runs: list[Run], rows: list[Row]) -> tuple[str, str]:
    models = sorted({r.model for r in rows}) or sorted({r.model for r in runs})
    dates = sorted({str(r.header.get("date", ""))[:10] for r in runs})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    head = runs[0].header
    details = []
    if runs[0].task == "nested-kv":
        details.append(f"{head.get('pairs')} UUID pairs, {head.get('samples')} samples per level")
    else:
        details.append(f"{head.get('questions')} NQ-Open questions, {head.get('pool')} passages in the corpus")
    details.append(f"docmem context {head.get('window')} tokens, baseline {head.get('baseline_window')}")
    details.append("shaded: 95% Wilson interval")
    labels = sorted({str(r.header["label"]) for r in runs if r.header.get("label")})
    title = f"{TASK_TITLES[runs[0].task]} — {', '.join(models)} — {when}"
    if labels:
        title += f"\n{'; '.join(labels)}"
    return title, " · ".join(details)


def _series(rows: list[Row]) -> list[tuple[str, str, str, list[Row]]]:
    """(model, system, colour, rows) per line: docmem first. One model: a colour per system;
    several: a colour per model, and the line style tells the system."""
    grouped: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        grouped.setdefault((row.model, row.system), []).append(row)
    models = sorted({m for m, _ in grouped})
    out = []
    for (model, system), points in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] != "docmem")):
        if len(models) == 1:
            colour = _SYSTEM_COLORS.get(system, _COLORS[-1])
        else:
            colour = _COLORS[models.index(model) % len(_COLORS)]
        out.append((model, system, colour, points))
    return out


def _band_alpha(series: list[Any]) -> float:
    """Intervals stay readable when several lines overlap."""
    return 0.12 if len(series) <= 2 else 0.05


def _label(model: str, system: str, many_models: bool) -> str:
    name = _NAMES.get(system, system)
    return f"{name} · {model}" if many_models else name


def plot(runs: list[Run], rows: list[Row], path: Path) -> Path:
    """Draw the task's figure to ``path`` (PNG)."""
    plt = _pyplot()
    task = runs[0].task
    fig, ax = plt.subplots(figsize=(8.5, 5.6), dpi=130)
    try:
        if task == "nested-kv":
            _nested_kv(ax, rows)
        else:
            _doc_qa(ax, rows)
        title, details = _title(runs, rows)
        source = runs[0].path.name if len(runs) == 1 else f"{len(runs)} results files"
        ax.set_title(title, fontsize=11.5, loc="left")
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: f"{v:.0%}"))
        ax.set_ylabel("accuracy")
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        # The legend goes below the axes: inside, wherever it sits, some result can run under it.
        handles, labels = ax.get_legend_handles_labels()
        ncol = 2 if len(labels) > 3 else 1
        legend_in = 0.12 + 0.19 * -(-len(labels) // ncol)
        footer_in = 0.3
        height = 5.6 + legend_in
        fig.set_size_inches(8.5, height)
        fig.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.01, footer_in / height), ncol=ncol,
                   fontsize=8, frameon=False, borderaxespad=0.2, columnspacing=1.5)
        fig.text(0.01, 0.18 / height, details, fontsize=7.5, color="#555555")
        fig.text(0.01, 0.045 / height, f"docmem eval · {source} · drawn {datetime.now():%Y-%m-%d %H:%M}",
                 fontsize=7, color="#888888")
        fig.tight_layout(rect=(0, (footer_in + legend_in) / height, 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _nested_kv(ax: Any, rows: list[Row]) -> None:
    series = _series(rows)
    many = len({s[0] for s in series}) > 1
    levels = sorted({r.x for r in rows if r.x is not None})
    for model, system, color, points in series:
        points.sort(key=lambda r: r.x)
        xs = [r.x for r in points]
        ys = [r.accuracy.value for r in points]
        lo = [r.accuracy.interval[0] for r in points]
        hi = [r.accuracy.interval[1] for r in points]
        label = _label(model, system, many)
        unfit = sum(r.did_not_fit for r in points)
        if unfit:
            label += f" ({unfit} prompts did not fit: scored wrong)"
        ax.plot(xs, ys, color=color, label=label, linewidth=2, markersize=6, zorder=3 if system == "docmem" else 2,
                **_STYLE.get(system, {}))
        ax.fill_between(xs, lo, hi, color=color, alpha=_band_alpha(series), linewidth=0)
    ax.set_xticks(levels)
    ax.set_xlabel("nesting level (lookups after the first)")
    if levels:
        ax.set_xlim(min(levels) - 0.15, max(levels) + 0.15)


def _doc_qa(ax: Any, rows: list[Row]) -> None:
    series = _series(rows)
    many = len({s[0] for s in series}) > 1
    ks = sorted({r.x for r in rows if r.x is not None})
    span = (min(ks) / 1.25, max(ks) * 1.25) if ks else (0.8, 1.25)
    for model, system, color, points in series:
        label = _label(model, system, many)
        style = _STYLE.get(system, {})
        if system == "docmem":  # one measurement, not a function of K: a flat line over the axis
            row = points[0]
            lo, hi = row.accuracy.interval
            ax.hlines(row.accuracy.value, *span, colors=color, linewidth=2, linestyles=style["linestyle"],
                      label=f"{label}: pages the whole corpus, not limited by K (n={row.n})")
            ax.fill_between(span, [lo, lo], [hi, hi], color=color, alpha=_band_alpha(series), linewidth=0)
            ax.hlines(row.retrieval.value, *span, colors=color, linewidth=1.2, linestyles=":",
                      label=f"{label}: gold passage among those it read")
            continue
        points.sort(key=lambda r: r.x)
        xs = [r.x for r in points]
        ax.plot(xs, [r.accuracy.value for r in points], color=color, linewidth=2, markersize=6,
                label=f"{label}: top-K passages in one prompt", **style)
        ax.fill_between(xs, [r.accuracy.interval[0] for r in points], [r.accuracy.interval[1] for r in points],
                        color=color, alpha=_band_alpha(series), linewidth=0)
        ax.plot(xs, [r.retrieval.value for r in points], color=color, linewidth=1.2, linestyle=":",
                marker=".", label=f"{label}: gold passage in the top K")
    ax.set_xscale("log")
    ax.set_xlim(*span)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("documents retrieved (K), log scale")
