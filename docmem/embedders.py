"""Sparse (BM25) and dense embedders.

BM25 comes from Qdrant Edge's built-in model (no download, same vectors for both
backends). Dense vectors come by default from all-MiniLM-L6-v2 (int8 ONNX) shipped inside
this package and run by fastembed with ``specific_model_path``, so no model is ever
downloaded. ``openai:MODEL`` calls any OpenAI-compatible ``/v1/embeddings``; ``none``
keeps a corpus BM25-only.
"""

from __future__ import annotations

import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Protocol, Sequence

from docmem.errors import EmbedderUnavailable
from docmem.store.base import SparseVec
from docmem.threads import signals_to_main

log = logging.getLogger(__name__)

BUNDLED = "bundled"
BUNDLED_NAME = "local/all-MiniLM-L6-v2"
BUNDLED_DIM = 384
BUNDLED_MAX_TOKENS = 256  # MiniLM reads at most this many wordpieces


class DenseEmbedder(Protocol):
    spec: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


@functools.cache
def _bm25():  # type: ignore[no-untyped-def]
    import qdrant_edge as qe

    return qe.Bm25(qe.Bm25Config(language="english"))


def bm25_document(text: str) -> SparseVec:
    v = _bm25().embed_document(text)
    return SparseVec(list(v.indices), list(v.values))


def bm25_query(text: str) -> SparseVec:
    v = _bm25().embed_query(text)
    return SparseVec(list(v.indices), list(v.values))


def bundled_model_path() -> Path:
    return Path(str(resources.files("docmem") / "models" / "all-MiniLM-L6-v2-onnx-int8"))


def _session_without_spinning(threads: int):  # type: ignore[no-untyped-def]
    """fastembed's session, but with onnxruntime's worker threads sleeping between calls.

    By default they spin (busy-wait) around each run; on a shared, busy machine an owner that
    embeds a client's query then burns the cores the client needs to send and read: search
    through the owner added 3.8-4.2 ms at p50 at load 12 (12.2 ms at load 19) against 0.9-1.1 ms
    without spinning; at load 3-5 both add 0.7-0.9 ms. In-process search and the batch fill's
    rate are unchanged (bench/README.md section 5). fastembed does not expose the option,
    hence its session replaced (~0.1 s)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(bundled_model_path() / "model.onnx"), sess_options=options,
                                providers=["CPUExecutionProvider"])


class BundledEmbedder:
    """all-MiniLM-L6-v2 int8 from package data; every core through onnxruntime's threads.

    One text a run (``batch_size`` 1): the int8 model quantizes its activations per run, so in a
    batch a text's vector depended on the other texts in it (a re-ingest moved ranks by a
    question or two), and a batch is padded to its longest text. One at a time, the vector of a
    text is always the same, as a query's is, and the fill ran faster, not slower (bench/README.md,
    section 3f: 115 against 85 chunks/s on sample_corpora); retrieval is the same within a
    question or two."""

    spec = BUNDLED
    dim = BUNDLED_DIM

    def __init__(self, threads: int | None = None, batch_size: int = 1) -> None:
        try:
            from fastembed import TextEmbedding
            from fastembed.common.model_description import ModelSource, PoolingType
        except ImportError as exc:
            raise EmbedderUnavailable(f"fastembed is not installed ({exc}); use --embedder none") from exc
        known = {m["model"] for m in TextEmbedding.list_supported_models()}
        if BUNDLED_NAME not in known:
            TextEmbedding.add_custom_model(
                model=BUNDLED_NAME, pooling=PoolingType.MEAN, normalization=True,
                sources=ModelSource(hf="sentence-transformers/all-MiniLM-L6-v2"), dim=BUNDLED_DIM,
                model_file="model.onnx", license="apache-2.0",
            )
        self.batch_size = batch_size
        threads = threads or os.cpu_count() or 1
        with signals_to_main():  # onnxruntime's thread pools start here
            self.model = TextEmbedding(model_name=BUNDLED_NAME, specific_model_path=str(bundled_model_path()),
                                       threads=threads, cuda=False)
            self.model.model.model = _session_without_spinning(threads)  # type: ignore[attr-defined]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [v.tolist() for v in self.model.embed(list(texts), batch_size=self.batch_size)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


class OpenAIEmbedder:
    """Any OpenAI-compatible /v1/embeddings endpoint, batched."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 batch_size: int = 64) -> None:
        import openai

        self.spec = f"openai:{model}"
        self.model = model
        self.batch_size = batch_size
        key = api_key or os.environ.get("OPENAI_API_KEY")
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not key and not url:
            raise EmbedderUnavailable(
                f"--embedder {self.spec} needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local server"
            )
        self.client = openai.OpenAI(api_key=key or "not-needed", base_url=url, max_retries=3)
        self.dim = len(self.embed_query("dimension probe"))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            try:
                response = self.client.embeddings.create(model=self.model, input=batch)
            except openai.OpenAIError as exc:
                raise EmbedderUnavailable(f"embedding with {self.spec} failed: {exc}") from exc
            out.extend(d.embedding for d in sorted(response.data, key=lambda d: d.index))
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


def make_embedder(spec: str, base_url: str | None = None, api_key: str | None = None) -> DenseEmbedder | None:
    """``bundled`` | ``openai:MODEL`` | ``none`` -> an embedder, or None for BM25 only."""
    if spec in ("none", ""):
        return None
    if spec in (BUNDLED, "local", BUNDLED_NAME):
        return BundledEmbedder()
    if spec.startswith("openai:") and len(spec) > len("openai:"):
        return OpenAIEmbedder(spec.split(":", 1)[1], base_url=base_url, api_key=api_key)
    raise EmbedderUnavailable(f"unknown embedder '{spec}': use bundled, openai:MODEL or none")


def embedder_dim(spec: str) -> int | None:
    """The dimension for a spec without loading a model, where it is known up front."""
    if spec in ("none", ""):
        return None
    if spec in (BUNDLED, "local", BUNDLED_NAME):
        return BUNDLED_DIM
    return -1  # must be probed
