"""Settings, in layers: defaults < config.toml in the data home < DOCMEM_* env < flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from docmem.errors import DocmemError


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "docmem"


@dataclass(frozen=True)
class Settings:
    home: Path = default_home()
    corpus: str = "default"
    embedder: str = "bundled"
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    # None: the corpus keeps the chunking it was built with (200/30 for a new corpus).
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None
    # dbsf | rrf[:k[:bm25_weight,dense_weight]] | bm25 | dense; chosen on NQ, see docmem.search
    fusion: str = "dbsf"
    # Results ranked per query; "of N" says N+ when capped. 100 keeps hybrid p50 under 5 ms at
    # 1M chunks (500: ~8 ms) with the same NQ recall (bench/README.md).
    candidates: int = 100
    page_size: int = 5
    # LLM (used by ask / chat)
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    context_window: int = 8192

    @property
    def corpora_dir(self) -> Path:
        return self.home / "corpora"


_ENV_OVERRIDES = {
    "qdrant_url": "QDRANT_URL",
    "qdrant_api_key": "QDRANT_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
}


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if name == "home":
        return Path(value).expanduser()
    if "int" in str(kind) and not isinstance(value, int):
        try:
            return int(value)
        except ValueError:
            raise DocmemError(f"setting {name} must be a whole number, got {value!r}") from None
    return value


def load_settings(**flags: Any) -> Settings:
    """Merge the layers; a flag of None means "not given"."""
    settings = Settings()
    home = flags.get("home") or os.environ.get("DOCMEM_HOME")
    if home:
        settings = replace(settings, home=Path(home).expanduser())
    names = {f.name for f in fields(Settings)}
    config_file = settings.home / "config.toml"
    layers: list[dict[str, Any]] = []
    if config_file.exists():
        try:
            layers.append(tomllib.loads(config_file.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise DocmemError(f"cannot read {config_file}: {exc}") from None
    env: dict[str, Any] = {}
    for name in names:
        if (value := os.environ.get(f"DOCMEM_{name.upper()}")) is not None:
            env[name] = value
        elif name in _ENV_OVERRIDES and (value := os.environ.get(_ENV_OVERRIDES[name])):
            env[name] = value
    layers.append(env)
    layers.append({k: v for k, v in flags.items() if v is not None})
    for layer in layers:
        unknown = set(layer) - names
        if unknown:
            raise DocmemError(f"unknown setting(s) {', '.join(sorted(unknown))} in config")
        settings = replace(settings, **{k: _coerce(k, v) for k, v in layer.items()})
    return settings
