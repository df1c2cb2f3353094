"""``docmem eval``: the MemGPT paper's two experiments, on any OpenAI-compatible model.

| module        | what                                                                  |
|---------------|-----------------------------------------------------------------------|
| ``nested_kv`` | nested key-value retrieval: the recipe, the prompts, the score, the run |
| ``doc_qa``    | NQ-Open document QA: pool, retrieval, token-truncated fixed context     |
| ``harness``   | metering every LLM call, the budget, asking docmem or the baseline      |
| ``corpora``   | cached eval corpora under ``<data home>/eval/`` (ingest handed in)      |
| ``report``    | results JSONL -> summary rows -> the terminal table                     |
| ``plot``      | the figures (matplotlib, Agg)                                           |
| ``stats``     | Wilson score intervals                                                  |
"""
