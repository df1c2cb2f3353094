"""Offline token counting with tiktoken.

tiktoken downloads its BPE files on first use, which fails on an offline machine. The two
encodings docmem needs ship inside the package (taken from litellm's wheel, verified
against the sha256 that tiktoken itself checks), so no network is ever needed.
"""

from __future__ import annotations

import functools
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

# The same hashes and special tokens as tiktoken_ext.openai_public.
_ENCODINGS = {
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        "special": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        "special": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
}

# Model-name prefixes whose tokenizer is known; anything else is counted with cl100k.
_MODEL_PREFIXES = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
)

DEFAULT_ENCODING = "cl100k_base"


@functools.cache
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """Build an encoding from the bundled BPE file; never touches the network."""
    spec = _ENCODINGS[name]
    path = resources.files("docmem") / "data" / "tiktoken" / f"{name}.tiktoken"
    with resources.as_file(path) as real_path:
        ranks = load_tiktoken_bpe(str(real_path), expected_hash=spec["sha256"])
    return tiktoken.Encoding(
        name=name, pat_str=spec["pat_str"], mergeable_ranks=ranks, special_tokens=spec["special"]
    )


def encoding_for_model(model: str | None) -> tiktoken.Encoding:
    """The model's own encoding where known; cl100k (a fair estimate for open models) otherwise."""
    name = (model or "").split("/")[-1].lower()
    for prefix, encoding in _MODEL_PREFIXES:
        if name.startswith(prefix):
            return get_encoding(encoding)
    return get_encoding(DEFAULT_ENCODING)


@functools.lru_cache(maxsize=16384)
def _count_cached(encoding: str, text: str) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


class TokenCounter:
    """Counts tokens of text for one model; the only place docmem measures length."""

    def __init__(self, model: str | None = None) -> None:
        self.encoding = encoding_for_model(model)

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def count_cached(self, text: str) -> int:
        """For text that is counted again and again (queued messages, before every call):
        a 128k-token context is re-measured in microseconds instead of tens of milliseconds."""
        return _count_cached(self.encoding.name, text)

    def tail(self, text: str, max_tokens: int) -> str:
        """The end of text holding at most max_tokens, on a token boundary."""
        ids = self.encoding.encode(text, disallowed_special=())
        if len(ids) <= max_tokens:
            return text
        return self.encoding.decode(ids[-max_tokens:])

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut text to at most max_tokens, on a token boundary."""
        ids = self.encoding.encode(text, disallowed_special=())
        if len(ids) <= max_tokens:
            return text
        return self.encoding.decode(ids[:max_tokens])
