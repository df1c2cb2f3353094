"""Regenerate the two example plots of docs/eval.md (eval-nested-kv.png, eval-doc-qa.png).

    .venv/bin/python docs/make_eval_plots.py

They come from ``docmem eval`` run for real (CLI, corpus, agent, the ``openai`` client over a
socket) against the tests' fake OpenAI-compatible server and its scripted policies, in a
throwaway data home: they show what the plots look like, not how any model performs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LABEL = "fake server, scripted policy (not a real model)"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    home = Path(tempfile.mkdtemp(prefix="docmem-eval-plots-"))
    os.environ["DOCMEM_HOME"] = str(home)
    from click.testing import CliRunner

    from docmem.cli.main import cli
    from tests.agent_helpers import DATA
    from tests.fake_openai import FakeOpenAI
    from tests.test_eval import kv_server_policy, qa_server_policy

    runs = {
        "eval-nested-kv.png": (kv_server_policy, "gpt-4o-mini", [
            "eval", "nested-kv", "--levels", "0-4", "--samples", "10", "--pairs", "140", "--seed", "1"]),
        "eval-doc-qa.png": (qa_server_policy, "llama3.1", [
            "eval", "doc-qa", "--docs", "1,5,10,20,50", "--n-questions", "30", "--pool", "600",
            "--data", str(DATA)]),
    }
    try:
        for name, (policy, model, args) in runs.items():
            out = home / name.removesuffix(".png")
            with FakeOpenAI(model=model) as server:
                server.policy = policy
                result = CliRunner().invoke(cli, [*args, "--model", model, "--base-url", server.url,
                                                  "--out", str(out), "--label", LABEL], catch_exceptions=False)
            print(result.stdout)
            if result.exit_code != 0:
                raise SystemExit(f"{name}: docmem eval exited {result.exit_code}")
            (plot,) = out.glob("*.png")
            shutil.copyfile(plot, DOCS / name)
            print(f"wrote {DOCS / name}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
