"""Exceptions that carry a message meant for the user.

The CLI turns every ``DocmemError`` into a one-line ``click.ClickException``; anything
else is a bug and keeps its traceback.
"""


class DocmemError(Exception):
    """A failure the user can act on; the message says how."""


class CorpusInUse(DocmemError):
    """Another process holds the corpus open for writing."""


class CorpusNotFound(DocmemError):
    """The named corpus has never been ingested."""


class EmbedderMismatch(DocmemError):
    """The corpus was built with another embedder or dimension."""


class EmbedderUnavailable(DocmemError):
    """The embedder could not be loaded or called."""
