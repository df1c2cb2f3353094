"""Plot hit@5 and hit@10 per question set from the last `retrieval_quality.py --quick` run.

    .venv/bin/python bench/plot_retrieval.py      # writes docs/retrieval-sets.png

Reads bench/out/retrieval_quality-quick.json; draws, for each set (the paraphrase set, its
check sets and NQ), one bar per ranking, with issue 12's held-out targets as lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RANKINGS = [("dense", "dense alone", "#9e9e9e"), ("dbsf", "dbsf (former default)", "#f4a261"),
            ("sections", "sections (default)", "#2a6f97")]
TARGETS = {"r@5": 0.90, "r@10": 0.96}


def main() -> None:
    data = json.loads((ROOT / "bench" / "out" / "retrieval_quality-quick.json").read_text())
    para, nq = data["paraphrase"], data["nq"]
    checks = [name for name in para["sets"] if name != "main"]
    sets = [("main (all)", lambda r: para[r], para["questions"]),
            ("main HTML", lambda r: para["main_html"][r], para["html_questions"]),
            *((name, lambda r, name=name: para[name][r], para["sets"][name]) for name in checks),
            ("NQ (r@k)", lambda r: nq[r], data["questions"])]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    width = 0.8 / len(RANKINGS)
    for ax, k in zip(axes, ("r@5", "r@10")):
        for j, (ranking, label, colour) in enumerate(RANKINGS):
            xs = [i + (j - (len(RANKINGS) - 1) / 2) * width for i in range(len(sets))]
            ax.bar(xs, [get(ranking)[k] for _, get, _ in sets], width, label=label, color=colour)
        ax.axhline(TARGETS[k], color="#c1121f", linestyle="--", linewidth=1,
                   label="issue 12's held-out target (0.90 / 0.96)")
        ax.set_xticks(range(len(sets)), [f"{name}\n{n} q" for name, _, n in sets], fontsize=8)
        ax.set_ylim(0.5, 1.0)
        ax.set_title(f"hit@{k[2:]}: a chunk of the gold section in the top {k[2:]}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [label.replace(" 0.90", "") for label in labels], loc="lower center", ncol=4, fontsize=8,
               frameon=False)
    fig.suptitle(f"docmem search, bundled MiniLM-L6 (int8), {para['build']['points']} chunks "
                 f"(bench/retrieval_quality.py --quick)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out = ROOT / "docs" / "retrieval-sets.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
