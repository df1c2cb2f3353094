"""Shared fixtures: a private data home per test, and small real corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def docmem_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DOCMEM_HOME", str(home))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DOCMEM_MODEL", "QDRANT_URL", "DOCMEM_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def settings(docmem_home: Path):
    from docmem.config import load_settings

    return load_settings()


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_corpora"


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root
