"""``docmem eval`` end to end: the real openai client against the fake server on 127.0.0.1,
driven by policies that use only what they were sent (tool results, or the prompt), so the
harness, the scoring, the table and the plots run for real."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from docmem.cli.main import cli
from docmem.eval import doc_qa, nested_kv
from docmem.eval.harness import Budget, Estimate, Prices
from docmem.eval.stats import wilson
from docmem.tokens import TokenCounter
from tests.agent_helpers import DATA, kv_policy, nested_kv as helper_nested_kv
from tests.fake_openai import FakeOpenAI

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JSON_PAIR = re.compile(r'"([0-9a-f-]{36})": "([0-9a-f-]{36})"')
_DOC = re.compile(r"Document \[(\d+)\]\(Title: ([^)]*)\) ([^\n]*)")
_HIT = re.compile(r"\[\d+\] chunk (\S+) \| [^\n]*\n([^\n]+)")


# -- policies: each reads only the request it was sent ----------------------------------------


def _to_reply(completion: Any) -> dict[str, Any]:
    return {"content": completion.text, "tool_calls": [
        {"name": c.name, "arguments": json.loads(c.arguments)} for c in completion.tool_calls]}


def kv_server_policy(body: dict[str, Any]) -> dict[str, Any]:
    """docmem: follow keys through archival search (tests' kv_policy). Baseline: read the pairs
    in the prompt and make at most two lookups, so it fails from nesting level 2 on."""
    messages = body["messages"]
    if body.get("tools"):
        return _to_reply(kv_policy(messages, body["tools"]))
    text = messages[-1]["content"]
    if "JSON data:" not in text:
        return {"content": "Summary: keys were looked up."}
    pairs = dict(_JSON_PAIR.findall(text))
    value = pairs[re.search(r'for this key: "([0-9a-f-]{36})"', text).group(1)]  # type: ignore[union-attr]
    value = pairs.get(value, value)
    return {"content": value}


def _judge(text: str) -> str:
    """A lenient judge: a response sharing any word with a gold answer is CORRECT."""
    gold = json.loads(re.search(r"Gold answers \(any one of them is correct\): (.*)", text).group(1))  # type: ignore[union-attr]
    response = text.split("Response to grade:", 1)[1].split("The response is correct if", 1)[0]
    words = {w for answer in gold for w in re.findall(r"\w{4,}", answer.lower())}
    return "CORRECT" if words & set(re.findall(r"\w+", response.lower())) else "INCORRECT"


def _overlap(question: str, text: str) -> int:
    words = set(re.findall(r"\w+", question.lower())) - {"the", "of", "a", "in", "is", "who", "what", "when"}
    return len(words & set(re.findall(r"\w+", text.lower())))


def qa_server_policy(body: dict[str, Any]) -> dict[str, Any]:
    """A crude reader: both systems answer with the passage sharing most words with the question,
    among those they were shown (the prompt's documents, or the agent's search results)."""
    messages = body["messages"]
    if "CORRECT or INCORRECT" in messages[-1]["content"] and not body.get("tools"):
        return {"content": _judge(messages[-1]["content"])}
    question = next(re.search(r"Question: (.*)", m["content"]).group(1)  # type: ignore[union-attr]
                    for m in messages if m["role"] == "user" and "Question: " in (m["content"] or ""))
    if not body.get("tools"):
        if "Document [" not in messages[-1]["content"]:
            return {"content": "Summary: one search so far."}
        docs = _DOC.findall(messages[-1]["content"])
        if not docs:
            return {"content": "INSUFFICIENT INFORMATION"}
        best = max(docs, key=lambda d: _overlap(question, d[1] + " " + d[2]))
        return {"content": best[2]}
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if not results:
        return {"tool_calls": [{"name": "archival_search", "arguments": {"query": question,
                                                                         "request_heartbeat": True}}]}
    hits = _HIT.findall(results[-1])
    if not hits:
        return {"tool_calls": [{"name": "answer", "arguments": {"text": "Not found.", "not_found": True}}]}
    chunk_id, passage = max(hits, key=lambda h: _overlap(question, h[1]))
    passage = passage.replace(" …[cut]", "")
    quote = passage[:80].rsplit(" ", 1)[0]
    return {"tool_calls": [{"name": "answer", "arguments": {
        "text": f"{passage} [1]", "citations": [{"chunk_id": chunk_id, "quote": quote}]}}]}


# -- helpers -------------------------------------------------------------------------------------


def _invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _records(out: Path) -> tuple[Path, list[dict[str, Any]]]:
    [path] = sorted(out.glob("*.jsonl"))
    return path, [json.loads(line) for line in path.read_text().splitlines()]


def _check_png(path: Path) -> None:
    from matplotlib import image

    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = image.imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600


# -- nested KV -----------------------------------------------------------------------------------


def test_nested_kv_end_to_end(tmp_path: Path):
    out = tmp_path / "out"
    with FakeOpenAI(model="gpt-4o-mini") as server:
        server.policy = kv_server_policy
        result = _invoke(["eval", "nested-kv", "--levels", "0-2", "--samples", "2", "--pairs", "40",
                          "--embedder", "none", "--seed", "3", "--model", server.model,
                          "--base-url", server.url, "--out", str(out)])
        requests = server.chat_requests
    path, records = _records(out)
    header, *results, end = records
    assert header["type"] == "run" and header["task"] == "nested-kv" and header["model"] == "gpt-4o-mini"
    assert header["levels"] == [0, 1, 2] and header["pairs"] == 40
    assert end["type"] == "end" and end["stopped"] is None and end["questions"] == 6
    assert len(results) == 12 and end["calls"] == len(requests)

    by = {(r["system"], r["level"], r["sample"]): r for r in results}
    for level in range(3):
        for sample in range(2):
            agent, base = by["docmem", level, sample], by["baseline", level, sample]
            assert agent["correct"] and agent["status"] == "answered" and agent["verified"]
            assert agent["steps"] == level + 3 and agent["searches"] == level + 2
            assert agent["tokens_in"] > 0 and agent["trace"]
            assert len(agent["chain"]) == level + 1 and agent["gold"] in agent["answer"]
            # The two-lookup baseline is right up to level 1, and the score catches it at 2.
            assert base["correct"] is (level < 2) and base["steps"] == 1 and base["calls"] == 1
            for record in (agent, base):
                trace = out / record["trace"]
                assert trace.exists() and trace.read_text().strip()
    steps = [json.loads(line)["type"] for line in (out / by["docmem", 2, 0]["trace"]).read_text().splitlines()]
    assert steps[-1] == "FinalStep" and steps.count("LLMStep") == 5
    # The baseline was sent every pair in one prompt; docmem was sent tools, never the pairs.
    baseline_prompts = [r["messages"][0]["content"] for r in requests if not r.get("tools")]
    assert len(baseline_prompts) == 6 and all(len(_JSON_PAIR.findall(p)) == 40 for p in baseline_prompts)
    assert all(len(_JSON_PAIR.findall(json.dumps(r["messages"]))) == 0 for r in requests if r.get("tools"))

    table = result.stdout
    assert "Nested key-value retrieval — gpt-4o-mini" in table
    assert re.search(r"docmem\s+│\s+2\s+│\s+2\s+│\s+1\.00 \[0\.34, 1\.00\]", table)
    assert re.search(r"baseline\s+│\s+2\s+│\s+2\s+│\s+0\.00 \[0\.00, 0\.66\]", table)
    plot = path.with_suffix(".png")
    assert f"plot:    {plot}" in table
    _check_png(plot)

    # `report` draws the same table and plot again from the file.
    again = _invoke(["eval", "report", str(path), "--plot", str(tmp_path / "again.png")])
    assert "baseline" in again.stdout and "1.00 [0.34, 1.00]" in again.stdout
    _check_png(tmp_path / "again.png")


def test_docmem_rows_count_tokens_when_the_server_sends_no_usage(tmp_path: Path):
    """llama-server sends no usage chunk for a stream docmem closes once the call is complete:
    the eval's docmem rows read 0 / 0 tokens per answer against a real 0.5B."""
    out = tmp_path / "out"
    with FakeOpenAI(model="gpt-4o-mini") as server:
        server.policy = lambda body: {**kv_server_policy(body), "usage": None}
        result = _invoke(["eval", "nested-kv", "--levels", "0", "--samples", "1", "--pairs", "10", "--embedder",
                          "none", "--systems", "docmem", "--model", server.model, "--base-url", server.url,
                          "--out", str(out)])
    assert result.exit_code == 0, result.output
    _path, records = _records(out)
    [row] = [r for r in records if r["type"] == "result"]
    assert row["correct"] and row["tokens_in"] > 500 and row["tokens_out"] > 0


def test_nested_kv_budget_bounds_and_dry_run(tmp_path: Path):
    with FakeOpenAI() as server:
        server.policy = kv_server_policy
        base = ["eval", "nested-kv", "--levels", "0-1", "--samples", "2", "--pairs", "20", "--systems", "baseline",
                "--model", server.model, "--base-url", server.url]
        _invoke([*base, "--max-questions", "1", "--out", str(tmp_path / "q")])
        _, records = _records(tmp_path / "q")
        assert [r["type"] for r in records] == ["run", "result", "end"]
        assert records[-1]["stopped"] == "--max-questions 1 reached"

        result = _invoke([*base, "--price-in", "1", "--max-cost", "0.000001", "--out", str(tmp_path / "c")])
        assert "stopped early: --max-cost $1e-06 reached" in result.stdout
        assert len(server.chat_requests) == 1  # only the --max-questions run called the model

        dry = _invoke(["eval", "nested-kv", "--levels", "0-2", "--samples", "2", "--pairs", "40", "--dry-run",
                       "--price-in", "0.15", "--price-out", "0.6"])
        assert len(server.chat_requests) == 1
    # docmem: level + 3 calls per instance (3 + 4 + 5) x 2 samples; the baseline 6: 30 in all.
    assert re.search(r"total\s+│\s+│\s+│\s+30\s+│", dry.stdout), dry.stdout
    assert "nothing was called" in dry.stdout
    failed = CliRunner().invoke(cli, ["eval", "nested-kv", "--max-cost", "1", "--dry-run"])
    assert failed.exit_code == 1 and "--max-cost needs prices" in failed.output


def test_run_stops_after_repeated_llm_failures(tmp_path: Path):
    with FakeOpenAI() as server:
        server.policy = lambda body: {"status": 401}
        result = CliRunner().invoke(cli, [
            "eval", "nested-kv", "--levels", "0-1", "--samples", "3", "--pairs", "10", "--systems", "baseline",
            "--model", server.model, "--base-url", server.url, "--out", str(tmp_path)])
        assert len(server.chat_requests) == 3
    assert result.exit_code == 1
    assert "stopped early: 3 LLM calls failed in a row; last: the LLM server rejected the API key" in result.stdout
    _, records = _records(tmp_path)
    results = [r for r in records if r["type"] == "result"]
    assert len(results) == 3 and all(r["status"] == "error" and not r["correct"] for r in results)


def test_nested_kv_recipe_and_score():
    # The shared data gives the paper's instances; generated ones are seeded and reproducible.
    params = nested_kv.KVParams(levels=(3,), pairs=140, samples=1, seed=0, data=DATA)
    inst = nested_kv.instance(params, 0, 3)
    assert len(inst.pairs) == 140 and len(inst.chain) == 4
    lookup = dict(inst.pairs)
    key, hops = inst.key, 0
    while lookup[key] in lookup:
        key, hops = lookup[key], hops + 1
    assert hops == 3 and lookup[key] == inst.gold and inst.gold not in lookup
    generated = nested_kv.KVParams(levels=(2,), pairs=50, samples=1, seed=7)
    assert nested_kv.instance(generated, 0, 2) == nested_kv.instance(generated, 0, 2)
    assert len({k for k, _ in nested_kv.instance(generated, 0, 2).pairs}) == 50
    # tests/agent_helpers builds on the same recipe.
    pairs, first, gold = helper_nested_kv(2, seed=1)
    assert dict(pairs)[dict(pairs)[dict(pairs)[first]]] == gold

    assert nested_kv.score(f"The value is {inst.gold}.", inst)
    assert nested_kv.score(f"{inst.chain[0]} -> {inst.chain[1]} -> {inst.chain[2]} -> {inst.chain[3]} -> "
                           f"{inst.gold.upper()}", inst)
    assert not nested_kv.score(f"{inst.gold} or maybe {inst.pairs[0][1] if inst.pairs[0][1] != inst.gold else 'x'}"
                               f" {inst.pairs[1][1]}", inst)
    assert not nested_kv.score(f"The value is {lookup[inst.key]}", inst)  # the first value: no credit


# -- doc-QA --------------------------------------------------------------------------------------------


def test_doc_qa_end_to_end(tmp_path: Path):
    out = tmp_path / "out"
    with FakeOpenAI(model="llama3.1") as server:
        server.policy = qa_server_policy
        result = _invoke(["eval", "doc-qa", "--docs", "1,5", "--questions", "5", "--pool", "40",
                          "--embedder", "none", "--data", str(DATA), "--model", server.model,
                          "--base-url", server.url, "--out", str(out), "--label", "fake server, scripted policy",
                          "--judge", "judge-model"])
        judged = [r for r in server.chat_requests if r["model"] == "judge-model"]
    path, records = _records(out)
    header, *results, end = records
    assert header["task"] == "doc-qa" and header["pool"] == 40 and header["questions"] == 5
    assert header["judge"] == "judge-model"
    assert end["stopped"] is None and len(results) == 15
    baseline = [r for r in results if r["system"] == "baseline"]
    agent = [r for r in results if r["system"] == "docmem"]
    assert sorted({r["k"] for r in baseline}) == [1, 5] and len(agent) == 5
    for r in results:
        assert r["match"] == doc_qa.contains_answer(r["answer"], r["gold"])
        # The judge sees only what the string match rejected, and its verdict decides those.
        assert (r["judge"] is not None) == (not r["match"] and r["status"] == "answered"
                                            and "INSUFFICIENT INFORMATION" not in r["answer"])
        assert r["correct"] == (r["match"] or r["judge"] is True)
        assert (out / r["trace"]).exists()
        if not r["answer_in_context"]:  # the crude reader can only echo what it was shown
            assert not r["match"]
    for r in agent:
        assert r["k"] is None and r["status"] == "answered" and r["verified"] and r["steps"] == 2
        assert r["docs_retrieved"] >= 1
    by_q = {(r["id"], r["k"]): r for r in baseline}
    for r in agent:
        one, five = by_q[r["id"], 1], by_q[r["id"], 5]
        # BM25 may rank fewer than K passages at all; every one ranked reaches the prompt.
        assert one["docs_in_context"] == one["docs_retrieved"] == 1
        assert five["docs_in_context"] == five["docs_retrieved"] <= 5 and not five["truncated"]
        assert five["gold_retrieved"] >= one["gold_retrieved"]  # top-1 is inside top-5
    assert any(r["gold_retrieved"] for r in results) and any(r["correct"] for r in results)
    assert len(judged) == sum(r["judge"] is not None for r in results) > 0
    assert all("JudgeCall" in (out / r["trace"]).read_text() for r in results if r["judge"] is not None)

    table = result.stdout
    assert "Multi-document QA (NQ-Open) — llama3.1" in table and "gold passage" in table
    assert "string match" in table  # with a judge, the table shows the match alone too
    assert re.search(r"docmem\s+│\s+all\s+│\s+5\s+│", table)
    assert re.search(r"baseline\s+│\s+5\s+│\s+5\s+│", table)
    _check_png(path.with_suffix(".png"))


def test_doc_qa_needs_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["eval", "doc-qa", "--dry-run", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "no nq-open-oracle.jsonl.gz at" in result.output
    dry = _invoke(["eval", "doc-qa", "--dry-run", "--data", str(DATA), "--n-questions", "4", "--docs", "1,100"])
    assert re.search(r"baseline\s+│\s+100\s+│\s+4\s+│\s+4\s+│", dry.stdout)


def test_doc_qa_data_ships_in_the_package_and_plans_as_json():
    """No --data: the packaged slice (the same questions and passages as ../shared/data)."""
    shipped, shared = doc_qa.load(doc_qa.PACKAGED_DATA), doc_qa.load(DATA / doc_qa.SHARED_FILE)
    assert len(shipped) == len(shared) == 2655
    assert [(i.question, i.answers, i.gold) for i in shipped] == [(i.question, i.answers, i.gold) for i in shared]
    assert (doc_qa.PACKAGED_DATA.parent / "LICENSE.lost-in-the-middle").exists()
    result = CliRunner().invoke(cli, ["eval", "doc-qa", "--dry-run", "--json", "--questions", "3", "--docs", "1,5"])
    assert result.exit_code == 0, result.output
    assert "use --n-questions" in result.stderr  # the old name still works, and says so
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and {(r["system"], r["x"], r["questions"]) for r in plan["plan"]} == \
        {("docmem", None, 3), ("baseline", 1, 3), ("baseline", 5, 3)}


def test_fixed_context_truncates_in_tokens():
    counter = TokenCounter("gpt-4o-mini")
    items = doc_qa.load(DATA / doc_qa.SHARED_FILE)[:30]
    passages = [i.gold for i in items]
    budget = 1500
    context = doc_qa.fixed_context(passages, items[0].question, budget, counter)
    prompt = doc_qa.prompt("qa_baseline", documents=context.text, question=items[0].question)
    assert counter.count(prompt) <= budget
    assert context.text.count("Document [") == 30 and len(context.included) == 30
    assert context.truncated > 0
    # With room for all, nothing is cut and short passages are whole.
    roomy = doc_qa.fixed_context(passages[:3], items[0].question, 4000, counter)
    assert roomy.truncated == 0 and all(" ".join(p.text.split()) in roomy.text for p in passages[:3])
    # Too many documents for even a few tokens each: the lowest ranked are dropped, never overflow.
    tight = doc_qa.fixed_context(passages, items[0].question, 400, counter)
    assert len(tight.included) < 30 and counter.count(
        doc_qa.prompt("qa_baseline", documents=tight.text, question=items[0].question)) <= 400


def test_answer_matching_and_wilson():
    assert doc_qa.contains_answer("The first prize went to Wilhelm Conrad Röntgen, in 1901.",
                                  ["Wilhelm Conrad Röntgen"])
    assert doc_qa.contains_answer("It opened on May 18, 2018", ["May 18, 2018"])
    assert not doc_qa.contains_answer("It opened in 20180", ["2018"])
    assert not doc_qa.contains_answer("INSUFFICIENT INFORMATION", ["the"])  # an answer of only an article
    assert wilson(0, 0) == (0.0, 1.0)
    assert [round(x, 4) for x in wilson(5, 10)] == [0.2366, 0.7634]
    assert [round(x, 4) for x in wilson(10, 10)] == [0.7225, 1.0]
    assert wilson(0, 10)[0] == 0.0


def test_budget_uses_measured_costs_once_known():
    budget = Budget(Prices(price_in=1.0, price_out=2.0), max_cost=0.01, max_questions=None)
    prior = Estimate(calls=3, tokens_in=3000, tokens_out=100)
    assert budget.expected("docmem", 2, prior) == pytest.approx(0.0032)
    assert budget.refuse(0.0032) is None
    budget.charge("docmem", 2, 5000, 500)  # $0.006: dearer than the estimate
    assert budget.expected("docmem", 2, prior) == pytest.approx(0.006)
    assert budget.expected("docmem", 4, prior) == pytest.approx(0.006)  # same system, other level
    assert "--max-cost $0.01 reached" in (budget.refuse(budget.expected("docmem", 2, prior)) or "")


def test_generated_pairs_are_uuid4():
    pairs = nested_kv.random_pairs(5, random.Random(1))
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", k)
               for pair in pairs for k in pair)
