"""A processor for unit tests, like simonw/llm's ``MockModel``: scripted replies, recorded requests.

    llm = ScriptedProcessor()
    llm.enqueue(call("archival_search", query="tariffs", request_heartbeat=True),
                lambda messages, tools: text(f"I saw {len(messages)} messages"))
    ...
    messages, tools = llm.history[0]      # what the model was sent
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections import deque
from typing import Any, Callable, Iterable, Union

from docmem.protocols import Completion, Message, ToolCall

__all__ = ["Policy", "Reply", "ScriptedProcessor", "call", "calls", "text"]

Policy = Callable[[list[Message], list[dict[str, Any]]], Completion]
Reply = Union[Completion, Policy, BaseException]

_PIECES = re.compile(r"\s*\S+\s*|\s+")


def text(s: str, *, finish_reason: str = "stop", tokens_in: int = 0,
         tokens_out: int = 0) -> Completion:
    """A plain text reply."""
    return Completion(text=s, finish_reason=finish_reason, tokens_in=tokens_in,
                      tokens_out=tokens_out)


def call(name: str, /, **arguments: Any) -> Completion:
    """A reply with one tool call (id ``call_0``); arguments are serialized with json.dumps."""
    return calls([(name, arguments)])


def calls(items: Iterable[tuple[str, dict[str, Any] | str]], *, content: str | None = None,
          tokens_in: int = 0, tokens_out: int = 0) -> Completion:
    """A reply with several tool calls ``[(name, arguments), ...]``, ids ``call_0``, ``call_1``...

    An arguments string is kept as is, to script malformed JSON.
    """
    tool_calls = [ToolCall(id=f"call_{n}", name=name,
                           arguments=args if isinstance(args, str) else json.dumps(args))
                  for n, (name, args) in enumerate(items)]
    return Completion(text=content, tool_calls=tool_calls, finish_reason="tool_calls",
                      tokens_in=tokens_in, tokens_out=tokens_out)


class ScriptedProcessor:
    """Replies from a queue (then from ``policy``), and records every request in ``history``.

    A reply is a ``Completion``; a callable ``(messages, tools) -> Completion`` that reads
    what it was sent; or an exception instance, which is raised. Text is passed to
    ``on_text`` word by word, as a stream would.
    """

    text = staticmethod(text)
    call = staticmethod(call)
    calls = staticmethod(calls)

    def __init__(self, *replies: Reply, policy: Policy | None = None,
                 model: str = "scripted") -> None:
        self.model = model
        self.policy = policy
        self.queue: deque[Reply] = deque(replies)
        self.history: list[tuple[list[Message], list[dict[str, Any]]]] = []
        self.schemas: list[dict[str, Any] | None] = []  # the reply schema of each request

    def enqueue(self, *replies: Reply) -> ScriptedProcessor:
        self.queue.extend(replies)
        return self

    @property
    def remaining(self) -> int:
        return len(self.queue)

    def complete(self, messages: list[Message], tools: list[dict[str, Any]],
                 on_text: Callable[[str], None] | None = None, *,
                 schema: dict[str, Any] | None = None) -> Completion:
        sent = (copy.deepcopy(messages), copy.deepcopy(tools))
        self.history.append(sent)
        self.schemas.append(copy.deepcopy(schema))
        if self.queue:
            reply: Reply = self.queue.popleft()
        elif self.policy is not None:
            reply = self.policy
        else:
            last = messages[-1] if messages else None
            raise AssertionError(
                f"ScriptedProcessor ran out of replies at request {len(self.history)}; "
                f"the last message sent was {_short(last)}"
            )
        if isinstance(reply, BaseException):
            raise reply
        if not isinstance(reply, Completion):
            reply = reply(copy.deepcopy(sent[0]), copy.deepcopy(sent[1]))
            if not isinstance(reply, Completion):
                raise AssertionError(f"a scripted policy returned {reply!r}, not a Completion")
        if on_text is not None and reply.text:
            read = ""
            for piece in _PIECES.findall(reply.text):
                read += piece
                if on_text(piece) is True:  # the caller stopped reading, as a closed stream does
                    return dataclasses.replace(reply, text=read, finish_reason=None)
        return reply


def _short(message: Any, limit: int = 300) -> str:
    text_ = json.dumps(message, default=str)
    return text_ if len(text_) <= limit else text_[:limit] + "..."
