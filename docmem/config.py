"""Settings, in layers: defaults < config.toml in the data home < DOCMEM_* env < flags."""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from docmem.errors import DocmemError

log = logging.getLogger(__name__)


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
    # Per-file budget of an ingest worker: seconds (plus one per MB of the file) and memory.
    file_timeout: int = 120
    file_memory_mb: int = 4096
    # sections[:FUSION] | dbsf | rrf[:k[:bm25_weight,dense_weight]] | bm25 | dense; chosen on a
    # paraphrase set and NQ together, see docmem.search and bench/README.md
    fusion: str = "sections"
    # Results ranked per query; "of N" says N+ when capped. 100 keeps hybrid p50 under 5 ms at
    # 1M chunks (500: ~8 ms) with the same NQ recall (bench/README.md).
    candidates: int = 100
    page_size: int = 5
    # LLM (used by ask / chat)
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    context_window: int = 8192
    # Seconds of silence accepted from the LLM server (waiting in its queue, reading the prompt
    # before the first token, between tokens): a model that is producing tokens is never cut
    # off. 120: the 2,100-token first prompt took 59-91 s to read with Qwen2.5-0.5B on 2 busy
    # cores. A silent call is retried once; a call and its retries end within ``deadline``
    # (default 3 x timeout).
    timeout: float = 120.0
    deadline: float | None = None
    # The reply's cap, sent on every call; None: the reply reserve of the context window.
    max_tokens: int | None = None
    tool_choice: str = "required"  # "auto" for servers that reject it (found and remembered)
    stream: bool = True  # stream every call (false: one JSON reply; no per-token timeout)
    # Functions offered to the model: full | minimal (search, read, answer) | auto (minimal
    # below 6k tokens of window); see docmem.agent.toolsets.
    tools: str = "auto"
    # docmem runs archival_search(query=<the question>) before the model's first step: on | off
    # | auto (on with the minimal tool set): a small model then only has to refine
    # (bench/real_model_findings.md, finding 7); see Agent._searches_first for the full set.
    first_search: str = "auto"
    # Each reply must follow a JSON schema of the calls the model may make now (sent as
    # response_format; llama.cpp, vLLM, Ollama, LM Studio sample by it): on | off | auto (on
    # with the minimal tool set). See docmem.agent.constrain.
    constrain: str = "auto"
    note_tokens: int = 1000  # the largest note archival_insert accepts
    # Not a setting: whether any layer named the corpus. When none did and 'default' does not
    # exist, commands that read a corpus use the only one there is (docmem.store.corpus).
    corpus_given: bool = False

    @property
    def reply_tokens(self) -> int:
        """``max_tokens``, or the reserve the agent keeps free for the reply."""
        return self.max_tokens or reply_reserve(self.context_window, self.tools)

    @property
    def corpora_dir(self) -> Path:
        return self.home / "corpora"


AUTO_MINIMAL_BELOW = 6000  # tools = auto offers the minimal set below this window (agent.toolsets)
MINIMAL_REPLY_TOKENS = 384  # any call of the minimal set fits (an answer with three short quotes ~250)


def reply_reserve(window: int, tools: str = "full") -> int:
    """Tokens of the window kept for the model's reply: 1/8, within 384..4096; 384 with the
    minimal tool set, which serves small models: one rambled to its cap, 1,024 tokens at
    3.8 tok/s = 272 s, with no call in it (bench/real_model_findings.md, finding 3)."""
    if tools == "minimal" or (tools == "auto" and window < AUTO_MINIMAL_BELOW):
        return MINIMAL_REPLY_TOKENS
    return min(4096, max(384, window // 8))


_ENV_OVERRIDES = {
    "qdrant_url": "QDRANT_URL",
    "qdrant_api_key": "QDRANT_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
}


def _coerce(name: str, value: Any) -> Any:
    kind = str({f.name: f.type for f in fields(Settings)}[name])
    if name == "home":
        return Path(value).expanduser()
    if "bool" in kind and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text not in _BOOLEANS:
            raise DocmemError(f"setting {name} must be true or false, got {value!r}")
        value = _BOOLEANS[text]
    elif "float" in kind and not isinstance(value, (int, float)):
        try:
            value = float(value)
        except ValueError:
            raise DocmemError(f"setting {name} must be a number of seconds, got {value!r}") from None
    elif "int" in kind and not isinstance(value, int):
        try:
            value = int(value)
        except ValueError:
            raise DocmemError(f"setting {name} must be a whole number, got {value!r}") from None
    if name in _POSITIVE and not value > 0:
        raise DocmemError(f"setting {name} must be positive, got {value!r}")
    if name == "tool_choice" and value not in ("required", "auto"):
        raise DocmemError(f"setting tool_choice must be required or auto, got {value!r}")
    if name in ("first_search", "constrain") and value not in ("auto", "on", "off"):
        raise DocmemError(f"setting {name} must be auto, on or off, got {value!r}")
    if name == "base_url" and value:
        _check_url(name, str(value))
    return value


def _check_url(name: str, value: str) -> None:
    """A typo in an endpoint is named here, not as a traceback from the HTTP client (``http://[::1``)
    or as five rounds of "cannot connect" (``localhost:8080/v1``, no scheme)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (parsing the port is what raises)
    except ValueError as exc:
        raise DocmemError(f"setting {name} {value!r} is not a URL ({exc}): e.g. http://localhost:11434/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DocmemError(f"setting {name} {value!r} is not an http(s) URL: e.g. http://localhost:11434/v1")


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_POSITIVE = {"timeout", "deadline", "max_tokens"}


def load_settings(**flags: Any) -> Settings:
    """Merge the layers; a flag of None means "not given"."""
    settings = Settings()
    home = flags.get("home") or os.environ.get("DOCMEM_HOME")
    if home:
        settings = replace(settings, home=Path(home).expanduser())
    names = {f.name for f in fields(Settings)} - {"corpus_given"}
    config_file = settings.home / "config.toml"
    layers: list[dict[str, Any]] = []
    if config_file.exists():
        try:
            layers.append(tomllib.loads(config_file.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise DocmemError(f"cannot read {config_file}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise DocmemError(f"cannot read {config_file}: not UTF-8 text (byte {exc.start})") from None
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
    if any("corpus" in layer for layer in layers):
        settings = replace(settings, corpus_given=True)
    secret = {"api_key", "qdrant_api_key"}
    log.debug("settings from %s (%s), env %s, flags %s; home %s", config_file,
              "read" if config_file.exists() else "absent", sorted(env),
              {k: ("***" if k in secret else v) for k, v in layers[-1].items()}, settings.home)
    return settings
