"""docmem's seams, in one page: every part that can be swapped is named here.

| seam           | protocol          | implementations                                          |
|----------------|-------------------|----------------------------------------------------------|
| LLM processor  | ``Processor``     | ``llm.openai.OpenAIProcessor`` (any OpenAI-compatible     |
|                |                   | server), ``llm.scripted.ScriptedProcessor`` (tests)      |
| archival store | ``ArchivalStore`` | ``store.edge.EdgeStore`` (embedded, default),            |
|                |                   | ``store.server.ServerStore`` (Qdrant server / cluster)   |
| dense embedder | ``DenseEmbedder`` | ``embedders.BundledEmbedder`` (offline MiniLM),          |
|                |                   | ``embedders.OpenAIEmbedder``; BM25 is always on          |
| token counter  | ``TokenCounter``  | ``tokens.TokenCounter`` (tiktoken, offline)              |
| loader         | ``Loader``        | ``ingest.loaders`` by extension (pypdf, text, unstructured) |

Only ``llm/openai.py``, ``embedders.py`` and ``store/`` import network clients; the rest
takes them as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from docmem.embedders import DenseEmbedder
from docmem.errors import DocmemError
from docmem.store.base import ArchivalStore
from docmem.tokens import TokenCounter

__all__ = [
    "ArchivalStore", "Completion", "ContextLengthExceeded", "DenseEmbedder", "LLMError",
    "LLMNotConfigured", "Loader", "Message", "Processor", "TokenCounter", "ToolCall",
]

# A chat message in the OpenAI Chat Completions shape (role, content, tool_calls, ...).
Message = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text, exactly as the model produced it


@dataclass(frozen=True)
class Completion:
    text: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # prompt tokens the server reused from its cache (0: none, or not reported)


class LLMError(DocmemError):
    """The LLM could not be reached or refused after retries; the session stays intact."""


class LLMNotConfigured(LLMError):
    """No model/endpoint/key: the message says what to set."""


class ContextLengthExceeded(LLMError):
    """The server says the prompt is too long: the agent flushes its queue and retries once."""


class Processor(Protocol):
    """The CPU of the virtual-context machine: main context in, text and/or calls out."""

    model: str

    def complete(self, messages: list[Message], tools: list[dict[str, Any]],
                 on_text: Callable[[str], None] | None = None, *,
                 schema: dict[str, Any] | None = None) -> Completion:
        """One LLM call. ``on_text`` receives streamed text deltas when given; when it returns
        True, reading stops there (the stream is closed) and what arrived is the reply.
        ``schema``: a JSON schema the whole reply must follow (``agent.constrain``), sent as
        ``response_format``; a server that rejects it is asked without it."""
        ...


class Loader(Protocol):
    def __call__(self, path: Path) -> Any:
        """Return an ``ingest.document.Document`` or raise ``ingest.document.LoadError``."""
        ...
