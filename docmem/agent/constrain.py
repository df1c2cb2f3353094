"""Constrained replies: the next message as a JSON schema the server's sampler must follow.

A small model given the minimal tool set still loses most questions to the *form* of its
reply (bench/real_model_findings.md): prose before a call, made-up function names, schema
words copied in as values, a chunk id it never saw, a "quote" that is the question or the
last error message. ``tool_choice: "required"`` does not prevent any of it in llama.cpp (its
grammar lets free text come first). A ``response_format`` JSON schema does: llama.cpp,
vLLM, Ollama and LM Studio turn it into a grammar for the whole reply, from its first
token. The schema is made for each step from what the model has seen in this question:
``open_document`` takes only a chunk id it was shown, and an ``answer`` cites such a chunk
with a sentence of that chunk, so every citation it can write is verifiable. What it says
in ``text``, which chunk it picks and whether it abstains stay its own.

The schema only constrains sampling; the reply is still read, validated and verified like
any call written as text (``textcalls``), so a server that ignores it changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Collection, Mapping, Sequence

from docmem.agent.functions import State
from docmem.agent.tools import Tool
from docmem.embedders import DenseEmbedder
from docmem.protocols import ToolCall
from docmem.search import identifiers, shares_identifier

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
MAX_CHUNKS = 8  # chunks an answer may cite (those closest to the question) or open (the latest)
MAX_CANDIDATES = 40  # chunks seen in this question that are weighed for citing (the latest)
# Quotable sentences per chunk, closest to the question first. Not fewer: over the first search
# of bench/real_model's 20 answerable questions, the answer's sentence was among the first 4 of
# a chunk in 9 cases, among all its sentences in 11 (the embedder ranks sentences poorly).
MAX_SENTENCES = 12
QUOTE_WORDS = 30  # a longer sentence is offered as its first words (still verbatim)
MIN_QUOTE_CHARS = 12
MAX_CITATIONS = 2
# The answer's own words, in characters: a short answer (docmem finds the sentences that say
# it). Over the first page of hits the 0.5B's answers under 200 characters named the answer in
# 13 of 20 questions; a longer text is where it copies sentences.
TEXT_CHARS = 240

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n|\n(?=\s*[-*•\d])")
_WORD = re.compile(r"[^\W_]{3,}")
_COMMON = frozenset("the and for are was were what which who whom whose when where why how does did "
                    "can could should would will with from that this these those into than then there "
                    "their they them its has have had not but all any each some such only also more "
                    "most other about after before between under over default".split())


def active(mode: str, tool_set: str) -> bool:
    """``auto``: with the minimal tool set, the one small models get."""
    return mode == "on" or (mode == "auto" and tool_set == "minimal")


def terms(text: str) -> frozenset[str]:
    """Content words, cut to five letters (a cheap stem: "checkpoints" meets "checkpoint")."""
    return frozenset(w[:5] for w in _WORD.findall(text.casefold()) if w not in _COMMON)


def sentences(text: str) -> list[str]:
    """Sentences of a chunk an answer may quote: whole sentences, or the first words of long
    ones, whitespace collapsed (verification normalises whitespace the same way)."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        words = piece.split()
        quote = " ".join(words[:QUOTE_WORDS])
        if len(words) >= 3 and len(quote) >= MIN_QUOTE_CHARS and quote not in out:
            out.append(quote)
    return out


class Relevance:
    """How close a sentence is to the question: the corpus's dense embedder (cosine, each
    sentence embedded once per agent), else shared content words. A constrained 0.5B cited a
    section heading that shared the question's words, and the chunk's first line, where the
    answer was three sentences on: only the sentences closest to the question are offered."""

    def __init__(self, embedder: DenseEmbedder | None) -> None:
        self.embedder = embedder
        self.vectors: dict[str, list[float]] = {}

    def cosines(self, question: str, texts: Sequence[str]) -> list[float] | None:
        """Plain cosines to the question, or None without an embedder (or when it failed)."""
        if self.embedder is None or not question.strip():
            return None
        try:
            missing = [t for t in dict.fromkeys((question, *texts)) if t not in self.vectors]
            if missing:
                self.vectors.update(zip(missing, self.embedder.embed(missing)))
        except Exception as exc:  # noqa: BLE001 (a remote embedder down must not end the question)
            log.warning("ranking sentences by words: the embedder failed (%s)", exc)
            self.embedder = None
            return None
        q = self.vectors[question]
        return [sum(a * b for a, b in zip(q, self.vectors[t])) for t in texts]

    def scores(self, question: str, texts: Sequence[str]) -> list[float]:
        cosines = self.cosines(question, texts)
        if cosines is not None:
            return [c - _heading(t) for c, t in zip(cosines, texts)]
        asked = terms(question)
        return [len(asked & terms(t)) / (len(asked) or 1) - _heading(t) for t in texts]


def _heading(text: str) -> float:
    """A line with no sentence punctuation (a heading, a table cell) is a poor quote."""
    return 0.0 if re.search(r"[.!?;:,]", text) else 0.2


def quotes(text: str, question: str = "", relevance: Relevance | None = None) -> list[str]:
    """The ``MAX_SENTENCES`` sentences of a chunk closest to ``question``, closest first."""
    found = sentences(text)
    return _closest(found, dict(zip(found, (relevance or Relevance(None)).scores(question, found))))


def _closest(found: list[str], score: Mapping[str, float]) -> list[str]:
    """``found`` (distinct sentences) by ``score``, best first, the first ``MAX_SENTENCES``;
    stable: chunk order among equals."""
    return sorted(found, key=lambda s: -score[s])[:MAX_SENTENCES]


def reply_schema(tools: Mapping[str, Tool], seen: Mapping[str, str], last: str | None = None,
                 read: Collection[str] = (), searched_anew: bool = True, question: str = "",
                 final: bool = False, relevance: Relevance | None = None, doubtful: bool = False,
                 keys: Collection[str] = (), refused: Collection[str] = ()) -> dict[str, Any]:
    """One JSON object ``{"name": ..., "arguments": {...}}`` calling one of ``tools``.

    ``seen``: chunk id -> text, in the order shown during this question. ``last``: the
    function of the call just made, which is not offered again (a 0.5B model, constrained,
    repeated docmem's first search word for word until the loop stopped it); a search is,
    when the last one showed nothing new (``searched_anew`` False). ``read``: chunks already
    shown whole, which are not offered to open again (the 0.5B re-opened the chunk holding
    the answer after every search, until its step budget ran out). ``final``: the last step
    of the budget, which can only answer (or abstain): an answer, even "not found", says
    what was searched; running out of steps says nothing. ``doubtful``: no search of this
    question came close in meaning, and the answer asks first whether it was not found.
    ``keys``: identifiers of the question and of the searches made (``docmem.search.identifiers``);
    when chunks shown hold one, only those may be cited (see ``citable``). ``refused``: chunks
    cited by an answer refused as unsupported, which are not offered again (the 1.5B sent the
    refused answer again, word for word, until the loop stopped it, in 4 of 25 questions)."""
    options = []
    for name, tool in tools.items():
        if final and name != "answer" and "answer" in tools:
            continue
        if name == last and name != "answer" and (name != "archival_search" or searched_anew):
            continue
        parameters = tool.schema()["function"]["parameters"]
        arguments = _strict(parameters)
        if name == "open_document":
            unread = [cid for cid in seen if cid not in read][-MAX_CHUNKS:]
            if not unread:
                continue  # nothing (new) to open: search, or answer
            # The chunk itself and what follows it (the default direction): a constrained 0.5B
            # wrote "next" every time, skipping the hit it meant to read. The chunks shown
            # become ids it can open, so it can still read on.
            arguments["properties"] = {"chunk_id": {"enum": unread}}
        elif name == "archival_search":
            # A query only: the 1.5B asked for page 2 of new queries (the best hits unseen); a
            # query made again is given its next page (``next_page``).
            arguments["properties"] = {"query": arguments["properties"]["query"]}
        elif name == "answer":
            holding, keyed = citable(seen, refused, keys)
            arguments = _answer(holding, question, relevance or Relevance(None), doubtful, cite_first=keyed)
        options.append({"type": "object", "properties": {"name": {"const": name}, "arguments": arguments},
                        "required": ["name", "arguments"], "additionalProperties": False})
    return {"anyOf": options}


def keys_of(question: str, searches: Sequence[Mapping[str, Any]]) -> list[str]:
    """The identifiers of the question and of the searches made for it."""
    return identifiers(" ".join([question, *(str(s["query"]) for s in searches)]))


def citable(seen: Mapping[str, str], refused: Collection[str],
            keys: Collection[str]) -> tuple[list[tuple[str, str]], bool]:
    """The chunks an answer may cite, and whether a key chose them. When chunks shown hold one
    of ``keys``, only those, refused or not (only a passage that names a key can say something
    about it: in ``docmem eval nested-kv`` the 0.5B was shown the key's pair as hit [1] and cited
    another pair's value, 6 times in 6; and, its answer refused, cited the other pair's chunk
    once the key's own was no longer offered). Else the latest ``MAX_CANDIDATES`` not cited by a
    refused answer (``reply_schema``)."""
    wanted = [k.casefold() for k in keys]
    holding = [(cid, text) for cid, text in seen.items() if any(k in text.casefold() for k in wanted)]
    if holding:
        return holding[-MAX_CANDIDATES:], True
    return [(cid, text) for cid, text in seen.items() if cid not in refused][-MAX_CANDIDATES:], False


def _answer(recent: list[tuple[str, str]], question: str, relevance: Relevance, doubtful: bool,
            cite_first: bool = False) -> dict[str, Any]:
    """A short answer, the chunk that says it, and whether it was not found; docmem then finds
    the sentence of the chunk that says it (``attributed``). The key is ``answer``, not the
    tool's ``text``: under a "text" key the 0.5B wrote out sentences of the hits. Asked for the
    answer alone, as ``{"answer": ..., "passage": N}`` over the first page of hits, the 0.5B
    named the answer in 13 of 20 questions; asked for verbatim quotes picked from lists of
    sentences, it copied a sentence near the answer and was right in 1
    (bench/real_model_findings.md, findings 28-29).
    The ``MAX_CHUNKS`` chunks whose best sentence is closest to the question may be named:
    by recency alone, the chunks of a wrong document the 0.5B had opened pushed the top
    search hit, which held the answer, out of the list. The text comes first; whether it was
    not found comes first when every search was far from the question (``doubtful``): asked
    last, the 0.5B always answered, also about the World Cup in a corpus of software manuals;
    asked first in general, it abstained on 2 of 4 questions whose answer it had just read.
    ``cite_first``: the key fixed which chunks may be cited, so a quote of one of them comes
    before the answer, picked from its sentences: writing the text first, the 0.5B gave another
    pair's value while citing the key's own pair (with the quote first, 3 of 3 at level 0 of
    nested-kv; with the chunk id first, 2 of 3, the third another pair's value)."""
    found = {cid: sentences(text) for cid, text in recent}
    flat = [s for group in found.values() for s in group]
    score = dict(zip(flat, relevance.scores(question, flat)))
    options = [(cid, max(score[s] for s in group)) for cid, group in found.items() if group]
    options.sort(key=lambda o: -o[1])
    ids = [cid for cid, _ in options[:MAX_CHUNKS]]
    properties: dict[str, Any] = {"answer": {"type": "string", "minLength": 1, "maxLength": TEXT_CHARS},
                                  "not_found": {"type": "boolean"}}
    if ids and cite_first:  # the key's own sentence, picked before the answer is written
        quotes_of = [{"type": "object", "required": ["quote", "chunk_id"], "additionalProperties": False,
                      "properties": {"quote": {"enum": _closest(found[cid], score)}, "chunk_id": {"const": cid}}}
                     for cid in ids]
        properties["citations"] = {"type": "array", "minItems": 1, "maxItems": 1, "items": {"anyOf": quotes_of}}
    elif ids:
        properties["chunk_id"] = {"enum": ids}
    order = (["not_found", "answer", "chunk_id", "citations"] if doubtful
             else ["citations", "answer", "not_found"] if cite_first else ["answer", "chunk_id", "not_found"])
    order = [k for k in order if k in properties]
    return {"type": "object", "properties": {k: properties[k] for k in order}, "required": order,
            "additionalProperties": False}


def attributed(call: ToolCall, seen: Mapping[str, str], question: str,
               relevance: Relevance | None = None) -> ToolCall:
    """A constrained answer (text and a chunk id, ``_answer``) as an answer call with
    citations: the sentences, of the chunk named or else of another chunk seen in this
    question, that hold the most of the answer's own words (its whole text first, then the
    words the question does not already have), each quoted verbatim, up to
    ``MAX_CITATIONS``. When no sentence seen holds a word of it, the chunk's sentence closest
    to the question is cited, so the answer is refused as unsupported (``unsupported``). The
    claim is the model's; docmem only finds where the documents say it."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return call
    if call.name != "answer" or not isinstance(arguments, dict) or "answer" not in arguments:
        return call
    named = str(arguments.pop("chunk_id", "") or "")
    quoted = arguments.pop("citations", [])  # a key lookup's quote, picked from the chunk's sentences
    text = arguments.pop("answer")
    arguments = {"text": text, **arguments, "citations": [] if arguments.get("not_found") else quoted}
    if not arguments.get("not_found") and named in seen and not quoted:
        arguments["citations"] = _support(str(arguments.get("text") or ""), named, seen, question,
                                          relevance or Relevance(None))
    return ToolCall(call.id, call.name, json.dumps(arguments, ensure_ascii=False))


def settled(call: ToolCall, tool: Tool, question: str, queue: Sequence[Mapping[str, Any]], state: State,
            relevance: Relevance | None, floor: float) -> ToolCall:
    """A constrained answer as docmem runs it: cited (``attributed``) from the chunks it could
    name (not those of a refused answer; only those holding a key, ``citable``: in nested-kv
    the 0.5B gave another pair's value, which the other pair's chunk held); its text a real
    answer (``quoted_answer``: not a copy of the question or of what docmem last told it,
    ``queue`` and the ``reminder``: the 0.5B wrote the question and the reminder out as its
    answer); and docmem's abstention when nothing seen is near the question (``abstain_if_far``)."""
    told = [str(m.get("content") or "") for m in queue[-8:] if m.get("role") == "user"]
    told.append(reminder(question)["content"])
    usable = dict(citable(state.seen, state.refused, keys_of(question, state.searches))[0])
    call = quoted_answer(attributed(call, usable, question, relevance), tool, question, told)
    return abstain_if_far(call, state.seen, question, relevance, floor, state.searches)


def judged(call: ToolCall, state: State, question: str, relevance: Relevance | None,
           floor: float) -> tuple[ToolCall, str | None]:
    """``call`` and why it is refused (``unsupported``), or None; the chunks it cites are not
    offered again. Refused a second time in one question, the answer becomes docmem's
    abstention: the 0.5B sent the same unsupported answer after each refusal (a Node.js
    sentence for the JVM's heap flag, three times) until the step budget ended the question
    with no answer at all."""
    why = unsupported(call, state.seen, question, relevance, floor, state.searches)
    if why is None:
        return call, None
    if state.refused:
        text = "Not found in the documents: no answer given was supported by the passages found."
        return ToolCall(call.id, call.name, json.dumps({"text": text, "citations": [], "not_found": True})), None
    state.refused.update(cited_ids(call))
    return call, why


REMINDER = ("If the text above answers it, answer in a few words, with the chunk id that says it; "
            "if not, search with other words.")


def reminder(question: str) -> dict[str, str]:
    """The question again, after what was shown, sent with each constrained step (not kept in
    the queue). The 0.5B named the answer in 9-10 of 20 questions with it, 6 without it:
    the question is otherwise above the hits it reads, and it copied their sentences."""
    return {"role": "user", "content": f"Question: {' '.join(question.split())[:TEXT_CHARS * 2]}\n{REMINDER}"}


_EDGE = "\"'“”‘’`.,;:!?()[]{}"
_SMALL = frozenset("is a an of to in on at by it as be or if so do no".split())


def _tokens(text: str) -> list[str]:
    """Words of an answer as written (``16384``, ``**bold**``, ``json_extract``), edge
    punctuation off; short or common words dropped."""
    out = []
    for raw in text.casefold().split():
        word = raw.strip(_EDGE)
        if word and word not in _COMMON and word not in _SMALL and (len(word) > 1 or word.isdigit()):
            out.append(word)
    return list(dict.fromkeys(out))


def _holds(sentence: str, word: str) -> bool:
    if re.fullmatch(r"\w+", word):
        return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", sentence) is not None
    return word in sentence


def _support(text: str, named: str, seen: Mapping[str, str], question: str,
             relevance: Relevance) -> list[dict[str, str]]:
    """The citations of ``attributed``: the sentence holding the most of the answer's words
    (the named chunk's on a tie), and a second one if it holds words the first lacks."""
    whole = " ".join(text.casefold().split()).strip("\"'\u201c\u201d\u2018\u2019.,;:!? ")
    asked = set(_tokens(question))
    words = _tokens(text)
    new = [w for w in words if w not in asked] or words

    def held(sentence: str) -> set[str]:
        low = " ".join(sentence.casefold().split())
        return {w for w in new if _holds(low, w)} | ({"\0whole"} if len(whole) >= 2 and _holds(low, whole) else set())

    pieces = [(cid, piece) for cid in [named, *(c for c in seen if c != named)]
              for piece in _SENTENCE_END.split(seen[cid]) if len(piece.split()) >= 3]
    scored = [(len(h) + (len(new) + 1) * ("\0whole" in h), cid == named, cid, piece, h)
              for cid, piece in pieces for h in [held(piece)]]
    best = max(scored, key=lambda s: (s[0], s[1]), default=None)
    if best is None or best[0] == 0:
        fallback = quotes(seen[named], question, relevance)
        return [{"chunk_id": named, "quote": fallback[0]}] if fallback else []
    chosen = [best]
    covered = best[4]
    more = [(len(s[4] - covered), s) for s in scored if s is not best and s[4] - covered]
    if more and MAX_CITATIONS > 1:
        chosen.append(max(more, key=lambda m: m[0])[1])
    chosen.sort(key=scored.index)  # in the order the documents say it
    return [{"chunk_id": cid, "quote": _window(piece, h)} for _, _, cid, piece, h in chosen]


def _window(piece: str, held: set[str]) -> str:
    """The sentence, or ``QUOTE_WORDS`` of its words from a little before the first word of the
    answer it holds (a long sentence: the words are verbatim either way)."""
    words = piece.split()
    if len(words) <= QUOTE_WORDS:
        return " ".join(words)
    low = [w.casefold() for w in words]
    at = next((i for i, w in enumerate(low) if any(h in w for h in held if h != "\0whole")), 0)
    start = max(0, min(at - 5, len(words) - QUOTE_WORDS))
    return " ".join(words[start:start + QUOTE_WORDS])


def next_page(call: ToolCall, searches: list[dict[str, Any]]) -> ToolCall:
    """A search made again, word for word, is read as "more of that": the next page not yet
    shown (constrained, the 0.5B re-ran docmem's first search after reading a hit; the
    same page again would only be refused as a repeat)."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return call
    if not isinstance(arguments, dict) or arguments.get("path"):
        return call
    query = " ".join(str(arguments.get("query", "")).split())
    pages = [s["page"] for s in searches if " ".join(s["query"].split()) == query and not s.get("path")]
    page = arguments.get("page", 1)
    if page not in pages:
        return call
    arguments["page"] = max(pages) + 1
    return ToolCall(call.id, call.name, json.dumps(arguments, ensure_ascii=False))


def _strict(parameters: dict[str, Any]) -> dict[str, Any]:
    """The tool's own parameters with no extra keys allowed (the sampler then cannot write
    ``"type": "object"`` into the arguments, as small models do)."""
    properties = {k: dict(v) for k, v in parameters.get("properties", {}).items()}
    for spec in properties.values():
        spec.pop("description", None)  # the model read them in the tool list; not sampled
        spec.pop("default", None)
    return {"type": "object", "properties": properties, "required": list(parameters.get("required", [])),
            "additionalProperties": False}


def quoted_answer(call: ToolCall, tool: Tool, question: str, prompts: Sequence[str] = ()) -> ToolCall:
    """An answer with citations whose text is no answer (empty, the question again, the
    parameter's description copied as its value, or a copy of what docmem told it:
    ``prompts``, such as the memory-pressure alert) answers with its quotes, in quotation
    marks with their markers: the sentences are what it cites, verified like any quote, and
    say what it found in the documents' own words. At its last step the constrained 0.5B
    cited "... when the WAL file is more than 1000 pages long" and wrote "The answer, with
    [1] markers." as its text: refused, the question ended without an answer. An abstention
    with such a text says "Not found in the documents." (the 0.5B sent the description with
    ``not_found: true`` until the loop stopped it as a repeat)."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return call
    if call.name != "answer" or not isinstance(arguments, dict):
        return call
    field = tool.model.model_fields.get("text")
    stand_ins = [question, field.description if field and field.description else "", *prompts]
    if not _no_answer(str(arguments.get("text") or ""), stand_ins):
        return call
    citations = arguments.get("citations")
    if arguments.get("not_found") is True:
        arguments["text"] = "Not found in the documents."
        return ToolCall(call.id, call.name, json.dumps(arguments, ensure_ascii=False))
    if not isinstance(citations, list) or not citations or not all(
            isinstance(c, dict) and isinstance(c.get("quote"), str) for c in citations):
        return call
    arguments["text"] = " ".join(f"\u201c{c['quote']}\u201d [{n}]" for n, c in enumerate(citations, 1))
    return ToolCall(call.id, call.name, json.dumps(arguments, ensure_ascii=False))


def _no_answer(text: str, stand_ins: list[str]) -> bool:
    words = _bare(text)
    return not words or any(words == _bare(s) or (len(words) >= 12 and words in _bare(s)) for s in stand_ins if s)


def _bare(text: str) -> str:
    return " ".join(re.sub(r"\[\d+\]", " ", text).split()).casefold().strip(" .,?!")


def _cited(call: ToolCall, seen: Mapping[str, str]) -> list[str] | None:
    """The texts of the chunks an answer cites, when it is an answer (not an abstention) and
    every chunk it cites was shown in this question; else None (verification says what is wrong)."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return None
    if call.name != "answer" or not isinstance(arguments, dict) or arguments.get("not_found"):
        return None
    cited = [c.get("chunk_id") for c in arguments.get("citations") or [] if isinstance(c, dict)]
    texts = [seen[c] for c in cited if c in seen]
    return texts if texts and len(texts) == len(cited) else None


def off_topic(call: ToolCall, seen: Mapping[str, str], question: str, relevance: Relevance | None,
              floor: float) -> float | None:
    """The closest cosine of an answer's cited chunks, or of its quotes, to the question, when
    it is under ``floor`` (docmem.agent.functions.WEAK_MATCH): a passage that far from the question does
    not answer it. The 1.5B answered "Alice won the 2018 FIFA World Cup." citing Alice in
    Wonderland (cosine 0.22) and "78" for ethanol's boiling point; on the paraphrase sets 2 of
    84 answerable questions had no passage over 0.35. None when close enough, not an answer,
    or without an embedder. The quotes count too: the email that said "I'll bring the Tenniel
    illustrations on Thursday" was mostly a quoted chapter of Alice (cosine 0.29 to the
    question; the sentence 0.35)."""
    texts = _cited(call, seen)
    if not texts or shares_identifier(question, texts):  # an exact key is on topic, whatever its cosine
        return None
    quoted = [str(c.get("quote") or "") for c in json.loads(call.arguments).get("citations") or []
              if isinstance(c, dict)]
    cosines = relevance.cosines(question, texts + [q for q in quoted if q]) if relevance is not None else None
    return max(cosines) if cosines and max(cosines) < floor else None


def abstain_if_far(call: ToolCall, seen: Mapping[str, str], question: str, relevance: Relevance | None,
                   floor: float, searches: Sequence[Mapping[str, Any]]) -> ToolCall:
    """``call`` as docmem's abstention when the chunks it cites are far from the question
    (``off_topic``) and no search of the question came close either (``doubtful``): neither the
    search nor the citation says the documents cover it."""
    far = off_topic(call, seen, question, relevance, floor)
    if far is None or not doubtful(searches):
        return call
    text = f"Not found in the documents: no passage found is close in meaning to the question (closest {far:.2f})."
    return ToolCall(call.id, call.name, json.dumps({"text": text, "citations": [], "not_found": True}))


def doubtful(searches: Sequence[Mapping[str, Any]]) -> bool:
    """No search of this question came close in meaning (docmem.agent.functions.WEAK_MATCH)."""
    return bool(searches) and all(s.get("weak") for s in searches)


def unsupported(call: ToolCall, seen: Mapping[str, str], question: str, relevance: Relevance | None = None,
                floor: float = 0.0, searches: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """Why an answer is refused though its quotes verify: no word of its text (beyond the
    question's) is in the chunks it cites, or they are all far from the question in meaning
    (``off_topic``). A grammar makes every quote real, not relevant: the 1.5B answered "The
    default TCP port of a PostgreSQL server is 5432" from its own knowledge, citing a Node.js
    stream sentence it was offered. None when it is supported, an abstention, or not an answer."""
    texts = _cited(call, seen)
    if texts is None:
        return None
    claimed = terms(str(json.loads(call.arguments).get("text") or "")) - terms(question)
    if claimed and not claimed & terms(" ".join(texts)):
        return ("FAILED: nothing your answer says is in the chunks it cites, so they do not support it. "
                "Answer with what a cited sentence says, or answer not_found: true if the documents do not say it."
                + _best_hit_hint(call, searches))
    far = off_topic(call, seen, question, relevance, floor)
    if far is not None:
        return (f"FAILED: the chunks you cite are not about the question (closest similarity {far:.2f}), so "
                "they do not answer it. Cite a passage about it, or answer not_found: true."
                + _best_hit_hint(call, searches))
    return None


def cited_ids(call: ToolCall) -> set[str]:
    """The chunk ids an answer call cites (none when its arguments do not parse)."""
    try:
        citations = json.loads(call.arguments or "{}").get("citations") or []
    except (json.JSONDecodeError, AttributeError):
        return set()
    return {str(c["chunk_id"]) for c in citations if isinstance(c, dict) and c.get("chunk_id")}


def _best_hit_hint(call: ToolCall, searches: Sequence[Mapping[str, Any]]) -> str:
    """The last search's best hit, when the answer does not cite it: the 1.5B wrote the right
    answer citing the wrong chunk of the right file, was refused, and abstained instead of
    citing the chunk that said it. The ranking, not the cosine: for a key lookup the cosine
    pointed the 0.5B at another key's pair, and on paraphrases the ranking beats it at hit@1."""
    cited = cited_ids(call)
    ranked = next((s.get("hits") for s in reversed(searches) if s.get("hits")), None) or []
    return f" The best match of your last search is chunk {ranked[0]}." if ranked and ranked[0] not in cited else ""
