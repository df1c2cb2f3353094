"""``docmem``: the entry point. Commands live in their own modules.

Lazy imports: ``docmem --help``, every ``docmem CMD --help`` and ``docmem corpora`` must stay
under 0.3 s (bench/cli_startup.py; tests/test_cli.py checks what they import). So a command
module imports at its top only click, rich and light docmem modules (config, errors, schema,
store.corpus); anything heavy (numpy, qdrant_edge, fastembed, openai, tiktoken, textual,
matplotlib, ingest, the agent) is imported inside the command function that needs it. A
service layer taking over the commands keeps the same rule for what the CLI imports.
"""

from __future__ import annotations

import click

from docmem import __version__
from docmem.cli.common import configure_logging
from docmem.cli.ask_cmd import ask, sessions
from docmem.cli.chat_cmd import chat
from docmem.cli.corpora_cmd import corpora
from docmem.cli.eval_cmd import eval_group
from docmem.cli.ingest_cmd import ingest
from docmem.cli.mcp_cmd import mcp
from docmem.cli.search_cmd import search
from docmem.cli.serve_cmd import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(), default=None, envvar="DOCMEM_HOME",
              help="Data home (corpora, sessions, config.toml). Default: ~/.local/share/docmem.")
@click.option("-v", "--verbose", count=True,
              help="-v: docmem's own debug lines on stderr; -vv: every library's too (HTTP, PDF...).")
@click.version_option(__version__, "-V", "--version", prog_name="docmem")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: int) -> None:
    """Answer questions about large document collections, with checkable citations."""
    configure_logging(verbose)
    ctx.obj = {"home": home} if home else {}


cli.add_command(ingest)
cli.add_command(search)
cli.add_command(corpora)
cli.add_command(ask)
cli.add_command(sessions)
cli.add_command(eval_group)
cli.add_command(chat)
cli.add_command(serve)
cli.add_command(mcp)
