"""Main context: system instructions, working context, and the FIFO queue with its summary.

The three tiers are assembled into the messages of every LLM call and measured in
tokens first; their sum (plus the tool schemas and a reserve for the reply) never
exceeds the window. ``units()`` keeps a function call and its results together, so an
eviction never leaves a result without its call.

The messages are ordered from what never changes to what changes every step: the system
instructions (servers render the tool schemas with them), then one memory message with the
working context and the summary, then the queue. A server that caches the longest common
prompt prefix (llama.cpp, vLLM, OpenAI) then re-reads only what a step added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from docmem.protocols import Message
from docmem.tokens import TokenCounter

MESSAGE_OVERHEAD = 4  # tokens a chat format spends per message (role, separators)


@dataclass
class Usage:
    """Token use of the main context by tier, against the window."""

    system: int
    working: int
    summary: int
    queue: int
    tools: int
    window: int
    reserve: int

    @property
    def total(self) -> int:
        return self.system + self.working + self.summary + self.queue + self.tools

    @property
    def budget(self) -> int:
        """What the prompt may use: the window less the reply's reserve."""
        return self.window - self.reserve

    @property
    def fraction(self) -> float:
        return self.total / self.budget if self.budget > 0 else 1.0

    def as_dict(self) -> dict[str, int]:
        return {"system": self.system, "working": self.working, "summary": self.summary,
                "queue": self.queue, "tools": self.tools, "total": self.total,
                "window": self.window, "reserve": self.reserve}


@dataclass
class MainContext:
    system: str
    working_budget: int
    working: str = ""
    summary: str = ""
    hidden: int = 0  # messages evicted so far (still in recall)
    queue: list[Message] = field(default_factory=list)
    warned: bool = False

    # -- the tiers as the model sees them -------------------------------------

    def system_message(self) -> Message:
        """The same in every call of every session: the longest prefix a server can cache."""
        return {"role": "system", "content": self.system}

    def memory_message(self, counter: TokenCounter) -> Message:
        """Working context, then the summary of evicted messages: what changes between steps."""
        used = counter.count_cached(self.working)
        text = f"[memory]\n## Working context ({used}/{self.working_budget} tokens)\n{self.working or '(empty)'}"
        if self.summary:  # no count that changes every step here: this message is a cached prefix
            text += (f"\n\n## Summary: {self.hidden} earlier messages are hidden (evicted to recall "
                     f"storage; conversation_search reads them)\n{self.summary}")
        return {"role": "user", "content": text}

    def summary_message(self) -> Message | None:
        """The summary part of the memory message, measured on its own (None when empty)."""
        if not self.summary:
            return None
        return {"role": "user", "content": (
            f"## Summary: {self.hidden} earlier messages are hidden (evicted to recall storage; "
            f"conversation_search reads them)\n{self.summary}")}

    def messages(self, counter: TokenCounter) -> list[Message]:
        """What one LLM call is sent; the memory message only once there is something in it."""
        memory = [self.memory_message(counter)] if self.working or self.summary else []
        return [self.system_message(), *memory, *self.queue]

    # -- measuring --------------------------------------------------------------

    def usage(self, counter: TokenCounter, tools: list[dict[str, Any]], window: int, reserve: int) -> Usage:
        summary = self.summary_message()
        return Usage(
            system=message_tokens(counter, {"role": "system", "content": self.system}) + 12,
            working=counter.count_cached(self.working) + MESSAGE_OVERHEAD + 16,
            summary=message_tokens(counter, summary) if summary else 0,
            queue=sum(message_tokens(counter, m) for m in self.queue),
            tools=counter.count_cached(json.dumps(tools, separators=(",", ":"))) if tools else 0,
            window=window,
            reserve=reserve,
        )

    # -- eviction ---------------------------------------------------------------

    def units(self) -> list[list[Message]]:
        """The queue cut where it can be cut: a call and its results are one unit."""
        out: list[list[Message]] = []
        for message in self.queue:
            if message.get("role") == "tool" and out:
                out[-1].append(message)
            else:
                out.append([message])
        return out

    def evict(self, counter: TokenCounter, fraction: float = 0.5) -> list[Message]:
        """Remove the oldest units holding about ``fraction`` of the queue's tokens."""
        units = self.units()
        total = sum(message_tokens(counter, m) for m in self.queue)
        evicted: list[Message] = []
        freed = 0
        while len(units) > 1 and freed < total * fraction:
            unit = units.pop(0)
            evicted.extend(unit)
            freed += sum(message_tokens(counter, m) for m in unit)
        self.queue = [m for unit in units for m in unit]
        self.hidden += len(evicted)
        return evicted

    # -- persistence -------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"working": self.working, "summary": self.summary, "hidden": self.hidden,
                "queue": self.queue, "warned": self.warned}

    def restore(self, state: dict[str, Any]) -> None:
        self.working = state.get("working", "")
        self.summary = state.get("summary", "")
        self.hidden = int(state.get("hidden", 0))
        self.queue = list(state.get("queue", []))
        self.warned = bool(state.get("warned", False))


def message_tokens(counter: TokenCounter, message: Message) -> int:
    n = MESSAGE_OVERHEAD + counter.count_cached(message.get("content") or "")
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {})
        n += 8 + counter.count_cached(fn.get("name", "")) + counter.count_cached(fn.get("arguments", ""))
    return n


def render_messages(messages: list[Message]) -> str:
    """Messages as plain text, for the summarizer."""
    lines = []
    for m in messages:
        role = m.get("role")
        if m.get("content"):
            lines.append(f"{role}: {m['content']}")
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            lines.append(f"{role} called {fn.get('name')}({fn.get('arguments')})")
    return "\n".join(lines)
