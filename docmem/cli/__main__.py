"""``python -m docmem.cli``: the same entry point as the ``docmem`` script."""

from docmem.cli.main import cli

cli()
