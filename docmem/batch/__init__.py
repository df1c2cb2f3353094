"""Batch questions: a file of questions in, a file of cited answers out, resumably.

    questions.py  read plain text, JSONL or CSV question files; stable question ids
    answers.py    the answers JSONL (the source of truth): one record per question,
                  appended and fsynced one by one, compacted atomically
    state.py      the corpus state a record belongs to, and which answers went stale
    reports.py    CSV and Markdown, regenerated from the records
    runner.py     the plan (what to run, what to skip, what is stale) and the worker threads

The CLI (``docmem ask --questions``) renders the runner's progress events; tests collect them.
"""

from docmem.batch.runner import Batch, BatchOptions, BatchProgress, BatchSummary

__all__ = ["Batch", "BatchOptions", "BatchProgress", "BatchSummary"]
