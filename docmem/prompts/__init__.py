"""Prompts are data: loaded from package files, never long strings in code."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load(name: str) -> str:
    return (resources.files("docmem.prompts") / f"{name}.md").read_text(encoding="utf-8")
