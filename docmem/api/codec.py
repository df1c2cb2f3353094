"""JSON for the records a corpus proxy sends to its owner and back.

Only the dataclasses named here cross the socket (tagged with their name), and only the
methods in ``ALLOWED`` may be called: the wire carries data, never code (no pickle).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

from docmem.schema import Chunk
from docmem.store.base import FusionSpec, Scored, SparseVec, VectorQuery
from docmem.store.manifest import FileRecord

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Chunk, SparseVec, VectorQuery, FusionSpec, Scored,
                                                            FileRecord)}

# What a client may call on the owner's open corpus: the agent's reads, its notes (upsert of
# an agent note, forgetting a scope), the batch runner's and the TUI's reads, and the embedder
# (so the model is loaded once, in the owner). Document writes go through ingest jobs.
ALLOWED: dict[str, frozenset[str]] = {
    "store": frozenset({"count", "query", "candidates", "sections", "lacking_dense", "retrieve", "by_chunk_ids",
                        "neighbours", "on_page", "upsert",
                        "delete_scope"}),
    "manifest": frozenset({"get_meta", "get", "files", "paths", "totals"}),
    "embedder": frozenset({"embed", "embed_query"}),
}


def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _TYPES.get(name) is not type(value):
            raise TypeError(f"{name} does not cross the socket")
        return {"__t": name, **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__tuple": [encode(v) for v in value]}
    if isinstance(value, (list, types.GeneratorType)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "tolist"):  # numpy vectors from the embedder
        return value.tolist()
    raise TypeError(f"{type(value).__name__} does not cross the socket")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple" in value:
            return tuple(decode(v) for v in value["__tuple"])
        if "__t" in value:
            cls = _TYPES.get(value["__t"])
            if cls is None:
                raise ValueError(f"unknown record type {value['__t']!r}")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: decode(v) for k, v in value.items() if k in names})
        return {k: decode(v) for k, v in value.items()}
    return value
