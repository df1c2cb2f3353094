"""Prompt tokens of docmem's fixed prefix, full tool set vs minimal (issue 10.2).

Counts what every LLM call carries before any question: the system prompt and the tool
schemas, with the tokenizers docmem ships (cl100k_base, o200k_base). A real model's own
tokenizer differs by a few percent; the ratio is what matters.

    .venv/bin/python bench/tool_schemas.py
"""

from __future__ import annotations

import json

from docmem import prompts
from docmem.agent.functions import TOOLS
from docmem.agent.toolsets import MINIMAL
from docmem.tokens import TokenCounter


def main() -> None:
    rows = []
    for model, label in (("gpt-4", "cl100k_base"), ("gpt-4o", "o200k_base")):
        counter = TokenCounter(model)
        for name, tools, system in (("full", TOOLS, "system"), ("minimal", MINIMAL, "system_minimal")):
            schemas = counter.count(json.dumps([t.schema() for t in tools], separators=(",", ":")))
            rows.append((label, name, len(tools), counter.count(prompts.load(system)), schemas))
    print(f"{'tokenizer':<12} {'tools':<8} {'functions':>9} {'system':>7} {'schemas':>8} {'prefix':>7}")
    for label, name, n, system, schemas in rows:
        print(f"{label:<12} {name:<8} {n:>9} {system:>7} {schemas:>8} {system + schemas:>7}")


if __name__ == "__main__":
    main()
