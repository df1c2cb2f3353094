"""The heartbeat loop: events in, LLM calls, function calls, until an answer or a yield.

``Agent.run`` is a generator of typed steps, readable top to bottom: each turn checks
memory pressure (warn at ~70%, flush at 100%), calls the processor, executes its function
calls in order, and continues while a heartbeat was requested or a call failed. A step
budget and identical-call detection end runaway chains with a clear message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from pydantic import ValidationError

from docmem import prompts
from docmem.agent import constrain as constrained
from docmem.agent import textcalls
from docmem.agent.functions import NOTE_TOKENS, WEAK_MATCH, CitationResult, State
from docmem.agent.memory import MainContext, Usage, message_tokens, render_messages
from docmem.agent.recall import Recall
from docmem.agent.tools import HEARTBEAT, Tool, ToolError, error_text
from docmem.config import reply_reserve
from docmem.agent.toolsets import select
from docmem.errors import DocmemError
from docmem.llm.jsonfix import calls_so_far, repair_json_arguments
from docmem.protocols import Completion, ContextLengthExceeded, LLMError, Message, Processor, ToolCall
from docmem.search import identifiers
from docmem.store.corpus import Corpus
from docmem.tokens import TokenCounter

WARN_AT = 0.70
REPEAT_LIMIT = 3
PLAIN_TEXT_NUDGES = 2
EMPTY_REPLIES = 2  # an empty reply is re-prompted once, then the question ends with an error
FIRST_SEARCH = ("auto", "on", "off")
FIRST_QUERY_TOKENS = 64  # the question as the first query: a pasted page is not a query

# What a question ends as. Only ``answered`` carries verified citations; ``unverified`` is a
# plain-text reply the model never backed with a verified citation; ``abstained`` is an
# honest "not found" that lists what was searched.
STATUSES = ("answered", "unverified", "abstained", "error", "interrupted", "yielded")


# -- steps: what the loop yields, for the CLI, the TUI, the trace and the tests -------------


@dataclass(frozen=True)
class LLMStep:
    step: int
    usage: Usage
    tokens_in: int
    tokens_out: int
    seconds: float
    tokens_cached: int = 0  # prompt tokens the server reused from its prompt cache, as it reports them


@dataclass(frozen=True)
class CallStep:
    step: int
    name: str
    arguments: dict[str, Any] | None
    result: str
    ok: bool


@dataclass(frozen=True)
class MemoryStep:
    kind: str  # "warning" | "flush"
    detail: str
    evicted: int = 0
    hidden: int = 0


@dataclass(frozen=True)
class MessageStep:
    text: str  # send_message, or plain text from the model


@dataclass
class AnswerResult:
    status: str  # one of STATUSES
    answer: str
    citations: list[CitationResult] = field(default_factory=list)
    steps: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    searches: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["citations"] = [c.as_dict() for c in self.citations]
        return data


@dataclass(frozen=True)
class FinalStep:
    result: AnswerResult


Step = LLMStep | CallStep | MemoryStep | MessageStep | FinalStep


class Trace:
    """--trace FILE: every step as one JSON line."""

    def __init__(self, path: Path) -> None:
        # 0600 when new: a trace holds every prompt verbatim (documents, notes, questions).
        self.fh = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8")

    def write(self, step: Step) -> None:
        record: dict[str, Any] = {"type": type(step).__name__, "time": time.time()}
        for key, value in step.__dict__.items():
            if isinstance(value, Usage):
                value = value.as_dict()
            elif isinstance(value, AnswerResult):
                value = value.as_dict()
            record[key] = value
        self.fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class Agent:
    def __init__(self, processor: Processor, corpus: Corpus, recall: Recall, *, window: int,
                 model: str | None = None, max_steps: int = 24, page_size: int = 5,
                 working_budget: int | None = None, reserve: int | None = None,
                 on_text: Callable[[str], None] | None = None, notes_scope: str | None = None,
                 tools: str = "auto", note_tokens: int = NOTE_TOKENS, first_search: str = "auto",
                 constrain: str = "auto") -> None:
        """``notes_scope``: whose archival notes this agent reads and writes (default: its session).
        ``tools``: full | minimal | auto (minimal below a small window, see ``toolsets``).
        ``first_search``: on | off | auto (on with the minimal set): docmem runs
        ``archival_search(query=<the question>)`` itself before the first LLM call.
        ``constrain``: on | off | auto (on with the minimal set): each reply must follow a JSON
        schema of the calls it may make (``agent.constrain``)."""
        if first_search not in FIRST_SEARCH:
            raise DocmemError(f"unknown first_search {first_search!r}: use {', '.join(FIRST_SEARCH)}")
        if constrain not in constrained.MODES:
            raise DocmemError(f"unknown constrain {constrain!r}: use {', '.join(constrained.MODES)}")
        self.first_search = first_search
        self.processor = processor
        self.counter = TokenCounter(model or getattr(processor, "model", None))
        self.window = window
        # The reply reserve is the max_tokens the processor sends, so the prompt and the reply fit.
        self.reserve = reserve if reserve is not None else (
            getattr(processor, "max_tokens", None) or reply_reserve(window, tools))
        self.max_steps = max_steps
        self.on_text = on_text
        self.tool_set, offered = select(tools, window)
        self.constrained = constrained.active(constrain, self.tool_set)
        self.question = ""  # the user message being answered (ranks what a constrained answer may quote)
        self._relevance: constrained.Relevance | None = None
        self.tools: dict[str, Tool] = {t.name: t for t in offered}
        self.schemas = [t.schema() for t in offered]
        system = prompts.load("system_minimal" if self.tool_set == "minimal" else "system")
        self.ctx = MainContext(system=system, working_budget=working_budget or max(128, min(1024, window // 8)))
        self.recall = recall
        self.corpus = corpus
        self.state = State(corpus, self.ctx, recall, self.counter, page_size=page_size,
                           notes_scope=notes_scope or recall.session, note_tokens=note_tokens,
                           best_last=self.constrained)
        self.interrupt = threading.Event()
        self.tokens_in = self.tokens_out = 0
        fixed = self._usage()
        if fixed.system + fixed.tools + self.ctx.working_budget > 0.75 * fixed.budget:
            need = int((fixed.system + fixed.tools + self.ctx.working_budget) / 0.75) + self.reserve
            raise DocmemError(f"context window {window} is too small: the system instructions and function "
                              f"schemas alone take {fixed.system + fixed.tools} tokens; use at least {need}")
        state = recall.load_state()
        if state:
            self.ctx.restore(state)

    # -- the loop -------------------------------------------------------------------

    def run(self, text: str, *, chat: bool = False) -> Iterator[Step]:
        """Handle one user message; ``chat`` yields to the user when no heartbeat is asked."""
        state = self.state
        state.seen, state.read, state.searches, state.final, state.refused = {}, set(), [], None, set()
        self.question = text
        self.interrupt.clear()
        tokens_at_start = (self.tokens_in, self.tokens_out)
        self._push({"role": "user", "content": text})
        self.save()  # from here on, a kill loses at most the step in flight
        steps = nudges = repeats = empties = 0
        last_call: tuple[str, str] | None = None
        if self._searches_first(text):
            call = yield from self._first_search(text)
            last_call, repeats = (call.name, _canonical(call.arguments)), 1
        retried_overflow = False
        result: AnswerResult | None = None
        while result is None:
            if self.interrupt.is_set():
                self._push({"role": "user", "content": "[system] The user interrupted you. Stop and wait."})
                result = self._result("interrupted", "Interrupted by the user.", steps, tokens_at_start)
                break
            if steps >= self.max_steps:
                result = self._result("error", "", steps, tokens_at_start,
                                      error=f"stopped after {steps} steps without an answer (step budget)")
                break
            steps += 1
            yield from self._make_room()
            usage = self._usage()
            started = time.perf_counter()
            try:
                reader = self._reader(last_call)
                messages = self.ctx.messages(self.counter) + ([constrained.reminder(self.question)]
                                                               if self.constrained else [])
                completion = self.processor.complete(messages, self.schemas, reader,
                                                     schema=self._reply_schema(last_call, steps >= self.max_steps))
            except ContextLengthExceeded as exc:
                if retried_overflow:
                    result = self._result("error", "", steps, tokens_at_start, error=str(exc))
                    break
                retried_overflow = True
                yield from self._flush(reason="the server reported the context was too long")
                continue
            except LLMError as exc:
                result = self._result("error", "", steps, tokens_at_start, error=str(exc))
                break
            tokens_in, tokens_out = completion.tokens_in, completion.tokens_out
            if not tokens_in:  # the server sent no usage (some local servers do not): count it here
                tokens_in = usage.total
                tokens_out = tokens_out or self.counter.count(
                    (completion.text or "") + "".join(c.name + c.arguments for c in completion.tool_calls))
            self.tokens_in += tokens_in
            self.tokens_out += tokens_out
            yield LLMStep(steps, usage, tokens_in, tokens_out, time.perf_counter() - started,
                          completion.tokens_cached)
            if isinstance(reader, _CallWatch):
                completion = reader.cut(completion)
            written = textcalls.recover(completion)  # a message that is wholly a call, as text
            as_text = completion.text if written is not None else None
            if written is not None:
                completion = _without_echoes(written, last_call)
            self._push(_assistant_message(completion, self.counter, self.reserve))

            if not completion.tool_calls:
                text_reply = (completion.text or "").strip()
                if not text_reply:
                    empties += 1
                    if empties >= EMPTY_REPLIES:
                        result = self._result("error", "", steps, tokens_at_start, error=(
                            f"the model sent {empties} empty replies (no text and no function call)"))
                        break
                    self._push({"role": "user", "content": prompts.load("empty_reply").strip()})
                    self.save()
                    continue
                if chat:  # a conversational reply; after a search it is an answer that cites nothing
                    yield MessageStep(text_reply)
                    searched = bool(self.state.searches)
                    result = self._result("unverified" if searched else "yielded", text_reply, steps, tokens_at_start,
                                          error="the reply cites nothing; no citation was verified" if searched else None)
                    break
                nudges += 1
                if nudges > PLAIN_TEXT_NUDGES:
                    result = self._result("unverified", text_reply, steps, tokens_at_start,
                                          error="the model answered in plain text; no citation was verified")
                    break
                nudge = "text_with_call" if textcalls.mentions_call(text_reply) else "plain_text_nudge"
                self._push({"role": "user", "content": prompts.load(nudge).strip().format(
                    functions=", ".join(self.tools))})
                self.save()
                continue

            heartbeat = False
            for call in completion.tool_calls:
                if self.constrained and call.name == "archival_search":
                    call = constrained.next_page(call, self.state.searches)
                elif self.constrained and call.name == "answer":
                    call = constrained.settled(call, self.tools["answer"], self.question, self.ctx.queue, self.state,
                                               self._relevance, WEAK_MATCH)
                if self.state.final is not None or result is not None:  # every call gets its result
                    self._push_result(call, "Skipped: the answer was already given." if result is None
                                      else "Skipped: the chain was stopped.")
                    continue
                key = (call.name, _canonical(call.arguments))
                repeats = repeats + 1 if key == last_call else 1
                last_call = key
                if repeats >= REPEAT_LIMIT:
                    self._push_result(call, "FAILED: identical call repeated; chain stopped.")
                    result = self._result("error", "", steps, tokens_at_start, error=(
                        f"stopped: the model repeated the same call {call.name}({call.arguments}) "
                        f"{repeats} times"))
                    continue
                if repeats == 2:
                    output, ok, wants = ("FAILED: you just made this exact call; its result is above. "
                                         "Use it, or do something different."), False, True
                    arguments = None
                else:
                    call, why = (constrained.judged(call, self.state, self.question, self._relevance, WEAK_MATCH)
                                 if self.constrained else (call, None))
                    output, ok, wants, arguments = ((why, False, True, json.loads(call.arguments)) if why is not None
                                                    else self._execute(call, as_text))
                self._push_result(call, output)
                yield CallStep(steps, call.name, arguments, output, ok)
                heartbeat = heartbeat or wants or not ok
            if result is not None:
                break
            self.save()  # the step is complete: its calls, results and working-context edits
            if self.state.final is not None:
                final = self.state.final
                result = self._result(final.status, final.text, steps, tokens_at_start, citations=final.citations)
                break
            if not heartbeat:
                if chat:
                    result = self._result("yielded", "", steps, tokens_at_start)
                    break
                self._push({"role": "user", "content": (
                    "[heartbeat] The user is waiting for the answer: continue, then call answer.")})
        self.save()
        yield FinalStep(result)

    def ask(self, question: str, trace: Trace | None = None,
            on_step: Callable[[Step], None] | None = None) -> AnswerResult:
        final: AnswerResult | None = None
        for step in self.run(question):
            if trace:
                trace.write(step)
            if on_step:
                on_step(step)
            if isinstance(step, FinalStep):
                final = step.result
        assert final is not None
        return final

    def save(self) -> None:
        self.recall.save_state(self.corpus.name, self.ctx.state())

    def _reader(self, last: tuple[str, str] | None) -> _CallWatch | Callable[[str], None] | None:
        """What reads the streamed text: the front end's ``on_text``, and a watch that ends the
        read once the text is a whole call to a known function that is not the one just made
        (a small model otherwise rambles on to max_tokens after its call: 55-90 s a step on
        these cores, bench/real_model_findings.md, finding 10). No watch where the processor
        would not stream for it (``stream = false``)."""
        if not getattr(self.processor, "stream", True):
            return self.on_text
        return _CallWatch(self.on_text, frozenset(self.tools), last)

    def _reply_schema(self, last: tuple[str, str] | None, final: bool) -> dict[str, Any] | None:
        if not self.constrained:
            return None
        searches = self.state.searches
        if self._relevance is None:
            try:
                embedder = self.corpus.embedder if self.corpus.has_dense else None
            except DocmemError:  # it cannot load here: sentences are ranked by their words
                embedder = None
            self._relevance = constrained.Relevance(embedder)
        return constrained.reply_schema(self.tools, self.state.seen, last[0] if last else None, self.state.read,
                                        searched_anew=bool(searches and searches[-1]["new"]),
                                        question=self.question, final=final, relevance=self._relevance,
                                        doubtful=constrained.doubtful(searches),
                                        keys=constrained.keys_of(self.question, searches),
                                        refused=self.state.refused)

    # -- the first search, made by docmem ------------------------------------------------

    def _searches_first(self, text: str) -> bool:
        """Off by default for the full set: a capable model writes a better first query than
        the raw question (keywords, a path filter), and a page of hits for a poor one would
        stay in its queue, costing tokens at every later step, to save it one step."""
        if not text.strip() or "archival_search" not in self.tools or self.first_search == "off":
            return False
        return self.first_search == "on" or self.tool_set == "minimal"

    def _first_search(self, question: str) -> Generator[Step, None, ToolCall]:
        """Run ``archival_search(query=<the question>)`` as the model would, before its first
        step: a small model's hardest step is its first call (bench/real_model_findings.md,
        finding 7), and a large one saves a step. It goes through ``_execute`` (schema, note
        scope, page bound), and is queued and recorded as a call and its result, marked as docmem's.
        A question longer than ``FIRST_QUERY_TOKENS`` is searched by its identifiers, else by its
        end, where the ask usually is: cut to its start, ``docmem eval nested-kv``'s question lost
        the key it asks about, after three lines of instructions."""
        words = " ".join(question.split())
        query = words
        if self.counter.count(words) > FIRST_QUERY_TOKENS:
            query = " ".join(identifiers(words)) or _tail(words, FIRST_QUERY_TOKENS, self.counter)
            query = self.counter.truncate(query, FIRST_QUERY_TOKENS)
        call = ToolCall(f"docmem_search_{self.recall.count()}", "archival_search",  # unique in the session, and reproducible
                        json.dumps({"query": query}, ensure_ascii=False))
        self._push({"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]})
        output, ok, _wants, arguments = self._execute(call)
        self._push_result(call, prompts.load("first_search").strip() + "\n" + output)
        yield CallStep(0, call.name, arguments, output, ok)
        return call

    # -- one function call -------------------------------------------------------------

    def _execute(self, call: ToolCall, as_text: str | None = None) -> tuple[str, bool, bool, dict[str, Any] | None]:
        """(result text, ok, heartbeat requested, parsed arguments). ``as_text``: the text in
        which the model wrote the call; it is validated like any other, and refused if copied."""
        tool = self.tools.get(call.name)
        if tool is None:
            return textcalls.unknown_function(call.name, self.tools), False, True, None
        if ((as_text is not None or call.name in textcalls.WRITES)
                and textcalls.copied_from_results(call, self.ctx.queue, as_text)):
            return textcalls.COPIED, False, True, None
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            arguments = repair_json_arguments(call.arguments or "")
            if arguments is None:
                return (f"FAILED: arguments are not valid JSON ({exc.msg} at char {exc.pos}); send a JSON "
                        "object (if the reply was cut off, make it shorter: a quote needs only a few "
                        "words)."), False, True, None
        if not isinstance(arguments, dict):
            return "FAILED: arguments must be a JSON object.", False, True, None
        try:
            parsed = tool.parse(arguments)
        except ValidationError as exc:
            return f"FAILED: bad arguments for {call.name}: {error_text(exc)}", False, True, arguments
        except ToolError as exc:
            return f"FAILED: bad arguments for {call.name}: {exc}", False, True, arguments
        values = {k: getattr(parsed, k) for k in type(parsed).model_fields if k != HEARTBEAT}
        heartbeat = bool(getattr(parsed, HEARTBEAT, False))
        self.state.room = self._room()
        try:
            return tool.fn(self.state, **values), True, heartbeat, arguments
        except ToolError as exc:
            return f"FAILED: {exc}", False, True, arguments

    # -- memory pressure ----------------------------------------------------------------

    def _usage(self) -> Usage:
        return self.ctx.usage(self.counter, self.schemas, self.window, self.reserve)

    def _room(self) -> int:
        usage = self._usage()
        return max(120, min(self.window // 3, usage.budget - usage.total - 64))

    def _make_room(self) -> Iterator[Step]:
        usage = self._usage()
        if usage.total > usage.budget:
            yield from self._flush(reason=f"main context full ({usage.total}/{usage.budget} tokens)")
        elif usage.fraction >= WARN_AT and not self.ctx.warned:
            self.ctx.warned = True
            percent = round(usage.fraction * 100)
            alert = "memory_pressure" if "working_context_append" in self.tools else "memory_pressure_minimal"
            self._push({"role": "user", "content": prompts.load(alert).strip().format(percent=percent)})
            yield MemoryStep("warning", f"main context {percent}% full")

    def _flush(self, reason: str) -> Iterator[Step]:
        while True:
            before = len(self.ctx.queue)
            evicted = self.ctx.evict(self.counter, 0.5)
            if not evicted:
                break
            self.ctx.summary = self._summarize(self.ctx.summary, evicted)
            self.ctx.warned = False
            yield MemoryStep("flush", f"{reason}: evicted {len(evicted)} of {before} queued messages",
                             evicted=len(evicted), hidden=self.ctx.hidden)
            usage = self._usage()
            if usage.total <= usage.budget * WARN_AT:
                break
        self.save()

    def _summarize(self, previous: str, evicted: list[Message]) -> str:
        """A new recursive summary; in several calls if the evicted text would not fit one."""
        limit = max(64, min(1024, self.window // 6))
        system = prompts.load("summarize").format(max_tokens=limit)
        room = self.window - self.reserve - self.counter.count(system) - limit - 80
        summary = previous
        for part in self._parts(evicted, room - self.counter.count(previous)):
            request = [{"role": "system", "content": system}, {"role": "user", "content": (
                f"Previous summary:\n{summary or '(none)'}\n\nEvicted messages:\n{part}")}]
            try:
                reply: Completion = self.processor.complete(request, [], None)
            except LLMError:
                return (summary + f"\n({len(evicted)} messages evicted; no summary could be made)").strip()
            self.tokens_in += reply.tokens_in
            self.tokens_out += reply.tokens_out
            summary = self.counter.truncate((reply.text or "").strip(), limit)
        return summary

    def _parts(self, messages: list[Message], room: int) -> list[str]:
        room = max(room, 64)
        parts, current, used = [], [], 0
        for message in messages:
            text = self.counter.truncate(render_messages([message]), room // 2)
            tokens = self.counter.count(text)
            if current and used + tokens > room:
                parts.append("\n".join(current))
                current, used = [], 0
            current.append(text)
            used += tokens
        if current:
            parts.append("\n".join(current))
        return parts

    # -- bookkeeping -------------------------------------------------------------------

    def _push(self, message: Message) -> None:
        self.recall.append(message)  # recall first: nothing is ever only in the queue
        self.ctx.queue.append(message)

    def _push_result(self, call: ToolCall, output: str) -> None:
        self._push({"role": "tool", "tool_call_id": call.id, "content": output})

    def _result(self, status: str, text: str, steps: int, start: tuple[int, int], *,
                citations: list[CitationResult] | None = None, error: str | None = None) -> AnswerResult:
        return AnswerResult(status, text, citations or [], steps, self.tokens_in - start[0],
                            self.tokens_out - start[1], list(self.state.searches), error)

    def context_tokens(self) -> int:
        return sum(message_tokens(self.counter, m) for m in self.ctx.messages(self.counter))


def _assistant_message(completion: Completion, counter: TokenCounter, cap: int) -> Message:
    """The reply as it is queued. Arguments over ``cap`` tokens (a 5 MB note) are replaced by a
    placeholder: the call still runs (and fails on its own bound), but the queue, which must
    fit the window, does not carry them."""
    message: Message = {"role": "assistant", "content": completion.text or None}
    if completion.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _bounded(c.arguments, counter, cap)}}
            for c in completion.tool_calls
        ]
    return message


def _bounded(arguments: str, counter: TokenCounter, cap: int) -> str:
    if len(arguments) < cap or counter.count(arguments) <= cap:
        return arguments
    return json.dumps({"_cut": f"{counter.count(arguments)} tokens of arguments, not kept in the context"})


class _CallWatch:
    """``on_text`` that shows the text and returns True once it holds a whole new call."""

    def __init__(self, show: Callable[[str], None] | None, known: frozenset[str],
                 last: tuple[str, str] | None) -> None:
        self.show, self.known, self.last = show, known, last
        self.parts: list[str] = []
        self.end: int | None = None  # where the whole call ended, once the read was stopped

    def __call__(self, text: str) -> bool:
        if self.show is not None:
            self.show(text)
        self.parts.append(text)
        if not any(c in text for c in "}]>"):
            return False
        calls, end = calls_so_far("".join(self.parts))
        if any(c.name in self.known and (c.name, _canonical(c.arguments)) != self.last for c in calls):
            self.end = end
            return True
        return False

    def cut(self, completion: Completion) -> Completion:
        """The reply as far as its whole call: what came in the same piece after it is dropped."""
        if self.end is None or completion.tool_calls or not completion.text:
            return completion
        return dataclasses.replace(completion, text=completion.text[:self.end], finish_reason="stop")


def _without_echoes(completion: Completion, last: tuple[str, str] | None) -> Completion:
    """Several calls written as text (one a line): a call that is exactly the one executed
    just before it is dropped, not counted as a repeat (small models echo their previous
    call before the next; bench/real_model_findings.md, finding 8). A lone echo stays, and
    is answered as a repeat."""
    kept: list[ToolCall] = []
    for call in completion.tool_calls:
        key = (call.name, _canonical(call.arguments))
        if key != last:
            kept.append(call)
        last = key
    if len(kept) == len(completion.tool_calls) or not kept:
        return completion
    return dataclasses.replace(completion, tool_calls=kept)


def _tail(text: str, tokens: int, counter: TokenCounter) -> str:
    """The last words of ``text`` that fit in ``tokens``."""
    words = text.split()
    kept: list[str] = []
    while words and counter.count(" ".join([words[-1], *kept])) <= tokens:
        kept.insert(0, words.pop())
    return " ".join(kept)


def _canonical(arguments: str) -> str:
    try:
        data = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if isinstance(data, dict):
        data.pop(HEARTBEAT, None)
    return json.dumps(data, sort_keys=True)
