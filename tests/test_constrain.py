"""Constrained replies (issue 10, small models): with the minimal tool set each request carries
a ``response_format`` JSON schema of the calls the model may make now, built from what it
was shown; asserted on the schema itself (with ``jsonschema``, as a sampler would read it)
and on what the fake server received."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from docmem.agent.citations import verify_quote
from docmem.agent.constrain import (MAX_SENTENCES, QUOTE_WORDS, TEXT_CHARS, Relevance, attributed, judged, next_page,
                                    quoted_answer, quotes, reminder, reply_schema, sentences, settled, unsupported)
from docmem.agent.toolsets import MINIMAL
from docmem.cli.main import cli
from docmem.llm import openai as llm_openai
from docmem.llm.openai import OpenAIProcessor
from docmem.protocols import ToolCall
from tests.agent_helpers import build_corpus, current_turn
from tests.fake_openai import FakeOpenAI

TOOLS = {t.name: t for t in MINIMAL}
VALVE = ("The alpha valve opens at 3 bar. It closes again below 2 bar, after a delay of ten seconds.\n\n"
         "Maintenance: replace the seal every 400 hours.")
PUMP = "The beta pump starts when the tank is half empty; it stops when the float switch trips."


def _valid(schema: dict[str, Any], call: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(call, schema)
    except jsonschema.ValidationError:
        return False
    return True


def _answer_args(schema: dict[str, Any]) -> dict[str, Any]:
    answer = next(o for o in schema["anyOf"] if o["properties"]["name"]["const"] == "answer")
    return answer["properties"]["arguments"]


def _citable(schema: dict[str, Any]) -> list[str]:
    """The chunks an answer may name: by id, or (a key lookup) by a quote of one of them."""
    properties = _answer_args(schema)["properties"]
    if "chunk_id" in properties:
        return properties["chunk_id"]["enum"]
    return [o["properties"]["chunk_id"]["const"] for o in properties["citations"]["items"]["anyOf"]]


def test_the_schema_admits_only_real_functions_and_chunks_seen():
    schema = reply_schema(TOOLS, {"valve-1": VALVE, "pump-2": PUMP})
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {"name": "answer", "arguments": {"answer": "At 3 bar.", "chunk_id": "valve-1", "not_found": False}}
    assert _valid(schema, good)
    assert _valid(schema, {"name": "archival_search", "arguments": {"query": "seal interval"}})
    assert not _valid(schema, {"name": "archival_search", "arguments": {"query": "seal", "page": 2}})  # next_page does
    assert _valid(schema, {"name": "open_document", "arguments": {"chunk_id": "pump-2"}})
    assert _valid(schema, {"name": "answer", "arguments": {"answer": "Not there.", "chunk_id": "pump-2",
                                                           "not_found": True}})
    bad = [
        {"name": "search", "arguments": {"query": "valve"}},  # the made-up name small models use
        {"name": "archival_search", "arguments": {"query": "valve", "type": "object"}},  # schema word copied in
        {"name": "open_document", "arguments": {"chunk_id": "12345"}},  # never shown
        {"name": "open_document", "arguments": {"chunk_id": "pump-2", "direction": "next"}},  # skips the hit
        {"name": "answer", "arguments": {**good["arguments"], "chunk_id": "12345"}},  # never shown
        {"name": "answer", "arguments": {**good["arguments"], "citations": []}},  # docmem finds the quotes
        {"name": "answer", "arguments": {**good["arguments"], "answer": "At 3 bar. " * 50}},  # copies on and on
    ]
    assert [_valid(schema, call) for call in bad] == [False] * len(bad)
    # the function just called is not offered again; a search is, when the last showed nothing new
    names = lambda s: {o["properties"]["name"]["const"] for o in s["anyOf"]}  # noqa: E731
    assert names(reply_schema(TOOLS, {"valve-1": VALVE}, last="archival_search")) == {"open_document", "answer"}
    assert names(reply_schema(TOOLS, {"valve-1": VALVE}, last="archival_search", searched_anew=False)) == set(TOOLS)
    assert names(reply_schema(TOOLS, {"valve-1": VALVE}, last="open_document")) == {"archival_search", "answer"}
    assert names(reply_schema(TOOLS, {"valve-1": VALVE}, last="answer")) == set(TOOLS)
    assert names(reply_schema(TOOLS, {"valve-1": VALVE}, final=True)) == {"answer"}  # the budget's last step
    # a chunk already read whole is not offered to open again; it can still be cited
    reread = reply_schema(TOOLS, {"valve-1": VALVE, "pump-2": PUMP}, last="archival_search", read={"valve-1"})
    assert not _valid(reread, {"name": "open_document", "arguments": {"chunk_id": "valve-1"}})
    assert _valid(reread, {"name": "open_document", "arguments": {"chunk_id": "pump-2"}})
    assert _valid(reread, good)
    # nothing seen yet: nothing to open or name, and an answer can only abstain
    empty = reply_schema(TOOLS, {})
    assert not _valid(empty, {"name": "open_document", "arguments": {"chunk_id": "valve-1"}})
    assert not _valid(empty, good) and _valid(empty, {"name": "answer", "arguments": {
        "answer": "Not found.", "not_found": True}})


def test_a_key_lookup_may_cite_only_chunks_that_hold_the_key():
    """In nested-kv the 0.5B was shown the key's pair as hit [1] and cited another pair, 6 of 6."""
    key, other = "2a56dfdd-773f-4260-8e35-f4e407379579", "948cd7ac-5e0a-4efd-a765-6221b6da76cf"
    seen = {"p1-0": f"Key-value pair: key = {key}, value = 465888e9", "p2-0": f"Key-value pair: key = {other}, value = 8c97"}

    def citable(keys: list[str]) -> set[str]:
        return set(_citable(reply_schema(TOOLS, seen, question=f"What is the value of key {key}?", keys=keys)))

    assert citable([key]) == {"p1-0"}
    only = reply_schema(TOOLS, seen, question=f"What is the value of key {key}?", keys=[key])
    assert list(_answer_args(only)["properties"]) == ["citations", "answer", "not_found"]  # the quote first
    quote = _answer_args(only)["properties"]["citations"]["items"]["anyOf"][0]["properties"]["quote"]["enum"][0]
    assert quote == f"key = {key}, value = 465888e9"  # picked from the key's own pair, then the answer written
    call = ToolCall("c", "answer", json.dumps({"citations": [{"quote": quote, "chunk_id": "p1-0"}],
                                               "answer": "465888e9", "not_found": False}))
    assert json.loads(attributed(call, seen, "?").arguments) == {
        "text": "465888e9", "not_found": False, "citations": [{"quote": quote, "chunk_id": "p1-0"}]}
    assert citable([key, other]) == {"p1-0", "p2-0"}  # it searched the next key: that pair too
    assert citable(["c0ffee1234-none"]) == {"p1-0", "p2-0"}  # no chunk holds it: everything shown


def test_chunks_whose_sentences_share_the_question_s_words_come_first():
    schema = reply_schema(TOOLS, {"pump-2": PUMP, "valve-1": VALVE}, question="How often is the seal replaced?")
    assert list(_answer_args(schema)["properties"]) == ["answer", "chunk_id", "not_found"]  # say, name, judge
    assert _citable(schema) == ["valve-1", "pump-2"]
    doubtful = reply_schema(TOOLS, {"valve-1": VALVE}, question="Who won the World Cup?", doubtful=True)
    assert list(_answer_args(doubtful)["properties"]) == ["not_found", "answer", "chunk_id"]


def _attributed(text: str, named: str, seen: dict[str, str], question: str = "When does the valve open?",
                **extra: Any) -> dict[str, Any]:
    arguments = {"answer": text, "chunk_id": named, "not_found": False, **extra}
    call = attributed(ToolCall("c", "answer", json.dumps(arguments)), seen, question)
    return json.loads(call.arguments)


def test_docmem_quotes_the_sentence_that_holds_the_answer():
    """The claim is the model's; docmem finds where the documents say it, and quotes it verbatim."""
    seen = {"valve-1": VALVE, "pump-2": PUMP}
    out = _attributed("At 3 bar.", "valve-1", seen)
    assert out == {"text": "At 3 bar.", "not_found": False,
                   "citations": [{"chunk_id": "valve-1", "quote": "The alpha valve opens at 3 bar."}]}
    # it named the wrong chunk: the one that holds its words is cited instead
    assert _attributed("every 400 hours", "pump-2", seen, "How often is the seal replaced?")["citations"] == [
        {"chunk_id": "valve-1", "quote": "replace the seal every 400 hours."}]
    # its words span two sentences: both are cited
    both = _attributed("It opens at 3 bar and closes below 2 bar.", "valve-1", seen)["citations"]
    assert [c["quote"] for c in both] == ["The alpha valve opens at 3 bar.",
                                         "It closes again below 2 bar, after a delay of ten seconds."]
    # symbols and short commands, as written
    manual = {"r-1": "To quit R, type q() at the prompt; the session may be saved.",
              "rst-1": "Use two asterisks for strong emphasis: **bold** text, one for *italics*."}
    assert _attributed("q()", "rst-1", manual, "Which command quits R?")["citations"][0]["chunk_id"] == "r-1"
    assert "**bold**" in _attributed("**bold**", "rst-1", manual, "How is bold marked?")["citations"][0]["quote"]
    # deep in a long sentence: the quote is a window of it around the answer, and verifies
    long = {"l-1": " ".join(f"w{n}" for n in range(50)) + " the limit is 16384 bytes " + " ".join(["z"] * 20) + "."}
    quote = _attributed("16384", "l-1", long, "What is the limit?")["citations"][0]["quote"]
    assert "16384" in quote and len(quote.split()) <= QUOTE_WORDS and verify_quote(quote, long["l-1"]).ok
    # nothing seen says it: the named chunk's sentence closest to the question, so the answer is refused
    made_up = _attributed("Port 5432.", "pump-2", seen, "What is the default TCP port of a PostgreSQL server?")
    assert made_up["citations"][0]["chunk_id"] == "pump-2"
    assert unsupported(ToolCall("c", "answer", json.dumps(made_up)), seen,
                       "What is the default TCP port of a PostgreSQL server?").startswith("FAILED: nothing your answer")
    # an abstention cites nothing; an answer written in the tool's own form is left as it is
    assert _attributed("Not in the manual.", "valve-1", seen, not_found=True)["citations"] == []
    plain = ToolCall("c", "answer", json.dumps({"text": "At 3 bar.", "citations": []}))
    assert attributed(plain, seen, "When?") is plain


def test_a_search_made_again_word_for_word_shows_the_next_page():
    searches = [{"query": "seal  interval", "page": 1, "path": None}, {"query": "seal interval", "page": 2, "path": None}]
    again = next_page(ToolCall("c1", "archival_search", '{"query": "seal interval"}'), searches)
    assert json.loads(again.arguments) == {"query": "seal interval", "page": 3} and again.id == "c1"
    other = ToolCall("c2", "archival_search", '{"query": "valve pressure"}')
    assert next_page(other, searches) is other
    filtered = ToolCall("c3", "archival_search", '{"query": "seal interval", "path": "*.pdf"}')
    assert next_page(filtered, searches) is filtered


def test_an_answer_whose_text_is_no_answer_answers_with_its_quotes():
    tool = TOOLS["answer"]
    description = tool.model.model_fields["text"].description
    cited = [{"chunk_id": "valve-1", "quote": "The alpha valve opens at 3 bar."}]

    alert = "[system alert] Memory 72% full. The oldest messages will be replaced by a summary: answer soon."

    def text_of(text, **extra):  # type: ignore[no-untyped-def]
        arguments = {"citations": cited, "text": text, "not_found": False, **extra}
        call = quoted_answer(ToolCall("c", "answer", json.dumps(arguments)), tool, "When does the valve open?", [alert])
        return json.loads(call.arguments)["text"]

    quoted = "\u201cThe alpha valve opens at 3 bar.\u201d [1]"
    assert text_of(description) == quoted and text_of(" ") == quoted and text_of("When does the valve open?") == quoted
    assert text_of("The oldest messages will be replaced by a summary: answer soon.") == quoted  # the alert copied
    assert text_of("At 3 bar [1].") == "At 3 bar [1]."  # its own words stay
    assert text_of(description, not_found=True) == "Not found in the documents."  # an abstention, said plainly
    assert text_of("Not in these manuals.", not_found=True) == "Not in these manuals."


def test_an_answer_its_citations_do_not_support_is_refused():
    seen = {"valve-1": VALVE, "pump-2": PUMP}
    question = "What is the default TCP port of a PostgreSQL server?"

    def why(text, chunk="pump-2", **extra):  # type: ignore[no-untyped-def]
        arguments = {"text": text, "citations": [{"quote": "x", "chunk_id": chunk}], "not_found": False, **extra}
        return unsupported(ToolCall("c", "answer", json.dumps(arguments)), seen, question)

    assert why("The default TCP port of a PostgreSQL server is 5432.").startswith("FAILED: nothing your answer")
    assert why("It starts when the tank is half empty [1].") is None  # its words are in the chunk
    assert why("The TCP port of a PostgreSQL server.") is None  # only the question's words: not judged here
    assert why("5432", not_found=True) is None and why("5432", chunk="unseen-9") is None

    class Embedder:  # the pump is far from the question; the valve close to it
        def embed(self, texts):  # type: ignore[no-untyped-def]
            return [[1.0, 0.0] if "pressure" in t else [0.0, 1.0] if "pump" in t else [0.8, 0.6] for t in texts]

    def why_far(chunk: str) -> str | None:
        arguments = {"text": "It starts when the tank is half empty and opens at 3 bar [1].", "not_found": False,
                     "citations": [{"quote": "The beta pump starts when the tank is half empty", "chunk_id": chunk}]}
        return unsupported(ToolCall("c", "answer", json.dumps(arguments)), seen, "At what pressure?",
                           Relevance(Embedder()), 0.35, [{"hits": ["valve-1", "pump-2"]}, {"hits": []}])

    refused = why_far("pump-2")
    assert refused.startswith("FAILED: the chunks you cite are not about the question (closest similarity 0.00)")
    assert refused.endswith("The best match of your last search is chunk valve-1.")  # where to look instead
    top_cited = {"text": "Germany won.", "citations": [{"quote": "x", "chunk_id": "valve-1"}], "not_found": False}
    assert unsupported(ToolCall("c", "answer", json.dumps(top_cited)), seen, question, None, 0.0,
                       [{"hits": ["valve-1", "pump-2"]}]).endswith("if the documents do not say it.")  # no hint
    # a key lookup: the cited chunk holds the question's key, so it is on topic whatever its cosine
    key = "3f9a4beb-5401-4d1b-9c03-24541baa5cca"
    arguments = {"text": "It is 42.", "citations": [{"quote": "pump key =", "chunk_id": "pump-2"}], "not_found": False}

    def why_key(chunk_text: str) -> str | None:  # the stand-in puts this chunk at cosine 0 to the question
        return unsupported(ToolCall("c", "answer", json.dumps(arguments)), {"pump-2": chunk_text},
                           f"At what pressure is key {key}?", Relevance(Embedder()), 0.35)

    assert why_key(f"pump key = {key}, value = 42") is None
    assert why_key("pump key = 1746f89a-b7b4-4e98-8e77-58c261a9aac7, value = 42").startswith("FAILED: the chunks")
    assert why_far("valve-1") is None  # cosine 0.8 to the question


def test_every_offered_quote_verifies_against_its_chunk():
    text = "Intro line\n\n" + VALVE + "\n- a list item that is long enough\n" + " ".join(["word"] * 60) + "."
    every = sentences(text)
    assert "The alpha valve opens at 3 bar." in every and len(every) >= 4
    assert all(verify_quote(q, text).ok for q in every)
    assert all(len(q.split()) <= QUOTE_WORDS for q in every)  # a long sentence is offered as its first words
    offered = quotes(text, "When does the valve open?")
    assert offered[0] == "The alpha valve opens at 3 bar." and len(offered) == min(len(every), MAX_SENTENCES)


def test_sentences_are_ranked_by_the_corpus_embedder_when_there_is_one():
    class Embedder:  # a stand-in that knows one topic: the point is the order and the batching
        calls: list[list[str]] = []

        def embed(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append(list(texts))
            return [[1.0, 0.0] if ("pressure" in t or "bar" in t) else [0.0, 1.0] for t in texts]

    relevance = Relevance(Embedder())
    schema = reply_schema(TOOLS, {"pump-2": PUMP, "valve-1": VALVE}, question="At what pressure?", relevance=relevance)
    assert _citable(schema) == ["valve-1", "pump-2"]
    assert quotes(VALVE, "At what pressure?", relevance)[0].endswith("at 3 bar.")
    reply_schema(TOOLS, {"pump-2": PUMP, "valve-1": VALVE}, question="At what pressure?", relevance=relevance)
    assert len(Embedder.calls) == 1  # each sentence (and the question) embedded once
    # the closest chunk stays citable however many were shown after it (a wrong document read)
    crowd = {"valve-1": VALVE, **{f"other-{n}": f"Unrelated text number {n} about gardens." for n in range(12)}}
    citable = _citable(reply_schema(TOOLS, crowd, question="At what pressure?", relevance=relevance))
    assert citable[0] == "valve-1" and len(citable) == 8


@pytest.fixture
def corpus_root(settings, tmp_path: Path) -> Path:
    build_corpus(settings, tmp_path / "docs", {"valve.txt": "Valves\n\n" + VALVE, "pump.txt": "Pumps\n\n" + PUMP})
    return tmp_path / "docs"


def _sampler(body: dict[str, Any]) -> dict[str, Any]:
    """A server that samples by the schema: the first chunk it may name, with a short answer,
    checked against the schema before it is sent, written as text as llama.cpp writes it."""
    if "response_format" not in body:
        return {"content": "Summary."}
    schema = body["response_format"]["json_schema"]["schema"]
    call = {"name": "answer", "arguments": {"answer": "At 3 bar.", "chunk_id": _citable(schema)[0], "not_found": False}}
    jsonschema.validate(call, schema)
    return {"content": json.dumps(call)}


def test_ask_with_the_minimal_set_sends_a_schema_of_what_the_first_search_showed(corpus_root):
    with FakeOpenAI() as server:
        server.policy = _sampler
        result = CliRunner().invoke(cli, ["ask", "When does the alpha valve open?", "--tools", "minimal",
                                          "--model", server.model, "--base-url", server.url, "--json"],
                                    catch_exceptions=False)
        requests = server.chat_requests
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "answered" and out["answer"] == "At 3 bar."
    assert [(c["quote"], c["verified"]) for c in out["citations"]] == [("The alpha valve opens at 3 bar.", True)]
    body = requests[0]
    assert body["tool_choice"] == "auto" and body["tools"]  # the template still describes the tools
    _question, turn = current_turn(body["messages"])
    shown = re.findall(r"\[\d+\] chunk (\S+) \|", next(m["content"] for m in turn if m["role"] == "tool"))
    options = {o["properties"]["name"]["const"]: o for o in body["response_format"]["json_schema"]["schema"]["anyOf"]}
    assert set(options) == {"answer"}  # not the search just made, and every hit was shown whole
    assert set(_citable(body["response_format"]["json_schema"]["schema"])) == set(shown)  # what it was shown
    # the question again, after the hits (the 0.5B read it above them and copied their sentences)
    assert body["messages"][-1] == {"role": "user", "content": (
        "Question: When does the alpha valve open?\nIf the text above answers it, answer in a few words, "
        "with the chunk id that says it; if not, search with other words.")}


def _shown(turn: list[dict[str, Any]]) -> dict[str, str]:
    """Chunk id -> text, as the search results of this turn listed them."""
    shown: dict[str, str] = {}
    for m in turn:
        if m["role"] == "tool":
            for cid, text in re.findall(r"\[\d+\] chunk (\S+) \|[^\n]*\n(.*?)(?=\n\n\[\d+\] chunk|\Z)",
                                        str(m["content"]), re.S):
                shown[cid] = text
    return shown


POEM = "The wind sang low over the heather. Summer roses fell upon the quiet garden wall."


def _citing(word: str, query: str | None = None):  # type: ignore[no-untyped-def]
    """A sampler that searches for ``query`` (or ``word``) until a chunk holding ``word`` may be
    named, then answers with that word, naming it; after a FAILED result, abstains."""
    def policy(body: dict[str, Any]) -> dict[str, Any]:
        _q, turn = current_turn(body["messages"])
        if any(m["role"] == "tool" and str(m["content"]).startswith("FAILED") for m in turn):
            return {"content": json.dumps({"name": "answer", "arguments": {"answer": "Not in them.", "not_found": True}})}
        shown = _shown(turn)
        offered = _answer_args(body["response_format"]["json_schema"]["schema"])["properties"]
        for cid in offered.get("chunk_id", {}).get("enum", []):
            if word in shown.get(cid, ""):
                return {"content": json.dumps({"name": "answer", "arguments": {
                    "answer": f"The {word}.", "chunk_id": cid, "not_found": False}})}
        return {"content": json.dumps({"name": "archival_search", "arguments": {"query": query or word}})}
    return policy


def test_an_answer_citing_a_passage_far_from_the_question_is_refused_or_abstains(settings, tmp_path):
    """The 1.5B answered "Alice won the 2018 FIFA World Cup." citing Alice in Wonderland: its
    words were in the chunk, its quote verified, and the passage had nothing to do with it."""
    build_corpus(settings, tmp_path / "docs", {"valve.txt": "Valves\n\n" + VALVE, "poem.txt": "Poem\n\n" + POEM},
                 embedder="bundled")
    with FakeOpenAI() as server:
        base = ["--tools", "minimal", "--model", server.model, "--base-url", server.url, "--json"]
        # a close passage was found, and the model cited the far one: refused, and it abstains
        server.policy = _citing("heather")
        refused = CliRunner().invoke(cli, ["ask", "When does the alpha valve open?", *base], catch_exceptions=False)
        last = server.chat_requests[-1]
        told = [m["content"] for m in current_turn(last["messages"])[1] if m["role"] == "tool"]
        after = last["response_format"]["json_schema"]["schema"]
        # nothing close was found at all, and the model answered from a passage anyway: docmem abstains
        n = len(server.chat_requests)
        server.policy = _citing("heather", "Which country won the World Cup by the garden wall?")
        far = CliRunner().invoke(cli, ["ask", "Which country won the 2018 FIFA World Cup?", *base],
                                 catch_exceptions=False)
        asked = len(server.chat_requests) - n
    assert json.loads(refused.stdout)["status"] == "abstained"
    assert told[-1].startswith("FAILED: the chunks you cite are not about the question")
    _q, turn = current_turn(last["messages"])
    named = [_shown(turn)[cid] for cid in _citable(after)]
    assert named and all("alpha valve" in t and "heather" not in t for t in named)  # the refused one is not offered
    assert sum(m["content"].startswith("Question: ") for m in last["messages"] if m["role"] == "user") == 1
    out = json.loads(far.stdout)
    assert out["status"] == "abstained" and asked == 2 and not out["citations"]  # searched, then "answered"
    assert out["answer"].startswith("Not found in the documents: no passage found is close in meaning")


def test_a_constrained_model_reads_a_page_best_last(corpus_root):
    """The constrained 0.5B cited a page's 4th or 5th hit in 6 of 10 questions, whatever held the
    answer: constrained, hits are listed from the last to the best, ranks and header unchanged."""
    with FakeOpenAI() as server:
        server.policy = lambda body: {"content": json.dumps({"name": "answer", "arguments": {
            "text": "Not known.", "citations": [], "not_found": True}})}
        for tools in ("minimal", "full"):
            CliRunner().invoke(cli, ["ask", "When do the valve and the pump start?", "--tools", tools,
                                     "--first-search", "on", "--model", server.model, "--base-url", server.url],
                               catch_exceptions=False)
        pages = [next(m["content"] for m in current_turn(b["messages"])[1] if m["role"] == "tool")
                 for b in server.chat_requests]
    constrained_page, plain_page = pages[0], pages[-1]
    assert re.findall(r"\[(\d+)\] chunk", constrained_page) == ["2", "1"]
    assert re.findall(r"\[(\d+)\] chunk", plain_page) == ["1", "2"]
    header = "Showing results 1-2 of 2 (page 1 of 1)"
    assert header in plain_page and header in constrained_page
    assert "hit [1] comes at the end" in constrained_page and "comes at the end" not in plain_page


def test_the_full_set_is_not_constrained_unless_asked(corpus_root):
    with FakeOpenAI() as server:
        server.policy = _sampler
        base = ["--model", server.model, "--base-url", server.url, "--tools", "full", "--first-search", "on"]
        on = CliRunner().invoke(cli, ["ask", "When does the alpha valve open?", "--constrain", "on", *base])
        constrained = list(server.chat_requests)
        server.policy = lambda body: {"tool_calls": [{"name": "answer", "arguments": {
            "text": "Not known.", "not_found": True}}]}
        off = CliRunner().invoke(cli, ["ask", "When does the alpha valve open?", *base])
        plain = server.chat_requests[len(constrained):]
    assert on.exit_code == 0 and off.exit_code == 0, (on.output, off.output)
    assert constrained and all("response_format" in b for b in constrained)
    assert plain and not any("response_format" in b for b in plain)
    assert all(b["tool_choice"] == "required" for b in plain)


REFUSED = {"status": 400, "error": {"message": "response_format type json_schema is not supported by this model",
                                    "type": "invalid_request_error", "code": 400}}


def test_a_server_that_rejects_the_schema_is_asked_without_it_once_and_for_good(monkeypatch, tmp_path):
    monkeypatch.setattr(llm_openai, "_QUIRKS", {})
    schema = reply_schema(TOOLS, {"valve-1": VALVE})
    messages = [{"role": "user", "content": "When?"}]
    tools = [t.schema() for t in MINIMAL]
    with FakeOpenAI() as server:
        server.enqueue(REFUSED, "first", "second")
        with OpenAIProcessor(server.model, server.url, None, max_retries=0,
                             quirks_path=tmp_path / "q.json") as llm:
            assert llm.complete(messages, tools, schema=schema).text == "first"
            assert llm.complete(messages, tools, schema=schema).text == "second"
            assert llm.quirks == {"response_format": "off"}
        sent = server.chat_requests
    assert ["response_format" in b for b in sent] == [True, False, False]
    assert [b["tool_choice"] for b in sent] == ["auto", "required", "required"]


def test_an_answer_refused_twice_in_a_question_becomes_docmem_s_abstention():
    """The 0.5B sent the same unsupported answer after each refusal until the step budget ended
    the question with no answer at all (3 of 25)."""
    from docmem.agent.functions import State

    state = State(None, None, None, None, seen={"valve-1": VALVE, "pump-2": PUMP})  # type: ignore[arg-type]
    question = "Which JVM flag sets the maximum heap size?"
    made_up = {"text": "setMaxListeners(5)", "not_found": False,
               "citations": [{"chunk_id": "pump-2", "quote": "The beta pump starts when the tank is half empty"}]}
    call = ToolCall("c", "answer", json.dumps(made_up))
    first, why = judged(call, state, question, None, 0.35)
    assert first is call and why.startswith("FAILED: nothing your answer says") and state.refused == {"pump-2"}
    again, why = judged(call, state, question, None, 0.35)
    assert why is None and json.loads(again.arguments) == {
        "text": "Not found in the documents: no answer given was supported by the passages found.",
        "citations": [], "not_found": True}
    supported = ToolCall("c", "answer", json.dumps({**made_up, "text": "When the tank is half empty."}))
    assert judged(supported, state, "When does the pump start?", None, 0.35) == (supported, None)


def test_a_copy_of_the_question_sent_again_is_no_answer():
    from docmem.agent.functions import State

    state = State(None, None, None, None, seen={"valve-1": VALVE})  # type: ignore[arg-type]
    question = "When does the alpha valve open?"
    copied = reminder(question)["content"].replace("Question: ", "")[:TEXT_CHARS]
    call = ToolCall("c", "answer", json.dumps({"answer": copied, "chunk_id": "valve-1", "not_found": False}))
    out = json.loads(settled(call, TOOLS["answer"], question, [], state, None, 0.35).arguments)
    assert out["text"] == "\u201cThe alpha valve opens at 3 bar.\u201d [1]"  # its evidence, in the documents' words
    assert out["citations"] == [{"chunk_id": "valve-1", "quote": "The alpha valve opens at 3 bar."}]


def test_a_key_lookup_is_cited_only_from_a_chunk_that_holds_the_key():
    """nested-kv: the 0.5B named the key's pair and wrote another pair's value, which that other
    pair's chunk held: the citation may not move there."""
    from docmem.agent.functions import State

    key, other = "2a56dfdd-773f-4260-8e35-f4e407379579", "fdd8a862-3bff-451b-b42c-2ff9ee9c2800"
    seen = {"p1-0": f"Key-value pair: key = {key}, value = 465888e9-98b2-48fb-9ffe-ce5a92a8e5a1",
            "p2-0": f"Key-value pair: key = {other}, value = bf07ece2-9461-41c5-96a8-b0617e3db5e4"}
    state = State(None, None, None, None, seen=seen, searches=[{"query": key}])  # type: ignore[arg-type]
    question = f"What is the value of key {key}?"

    def cited(value: str) -> list[dict[str, str]]:
        call = ToolCall("c", "answer", json.dumps({"chunk_id": "p1-0", "answer": value, "not_found": False}))
        return json.loads(settled(call, TOOLS["answer"], question, [], state, None, 0.35).arguments)["citations"]

    assert cited("465888e9-98b2-48fb-9ffe-ce5a92a8e5a1") == [
        {"chunk_id": "p1-0", "quote": f"key = {key}, value = 465888e9-98b2-48fb-9ffe-ce5a92a8e5a1"}]
    wrong = cited("bf07ece2-9461-41c5-96a8-b0617e3db5e4")
    assert [c["chunk_id"] for c in wrong] == ["p1-0"]  # not p2-0: so it is refused as unsupported
    answer = {"text": "bf07ece2-9461-41c5-96a8-b0617e3db5e4", "citations": wrong, "not_found": False}
    assert unsupported(ToolCall("c", "answer", json.dumps(answer)), seen, question).startswith("FAILED: nothing")
    state.refused.add("p1-0")  # refused, the key's own pair is still the only one it may cite
    assert [c["chunk_id"] for c in cited("bf07ece2-9461-41c5-96a8-b0617e3db5e4")] == ["p1-0"]
    schema = reply_schema(TOOLS, seen, question=question, keys=[key], refused=state.refused)
    assert _citable(schema) == ["p1-0"]
