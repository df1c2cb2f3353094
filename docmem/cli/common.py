"""What every command shares: settings from the layers, errors as one line, logging."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

import click

from docmem.config import Settings, load_settings
from docmem.display import printable
from docmem.errors import DocmemError

F = TypeVar("F", bound=Callable[..., Any])


def shown(text: object, lines: bool = False) -> str:
    """A user-controlled string (path, heading, reason, document or model text) for a Rich
    markup string: control characters replaced and ``[...]`` escaped, so ``q[/q].xyz`` prints
    as itself and an ESC sequence in a document never reaches the terminal."""
    from rich.markup import escape

    return escape(printable(str(text), lines))


def settings_from(ctx: click.Context, **flags: Any) -> Settings:
    base = ctx.obj or {}
    return load_settings(**{**base, **flags})


def user_errors(fn: F) -> F:
    """Turn DocmemError into click's one-line error (exit 1); bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DocmemError as exc:  # it may quote a path, a server's reply or a document
            raise click.ClickException(printable(str(exc), lines=True)) from exc

    return wrapper  # type: ignore[return-value]


def corpus_option(fn: F) -> F:
    return click.option("--corpus", "-c", default=None, help="Corpus name (default: 'default').")(fn)


def qdrant_options(fn: F) -> F:
    fn = click.option("--qdrant-api-key", default=None, envvar="QDRANT_API_KEY",
                      help="API key for --qdrant-url.")(fn)
    return click.option("--qdrant-url", default=None, envvar="QDRANT_URL",
                        help="Qdrant server/cluster URL (default: embedded Qdrant Edge).")(fn)


def configure_logging(verbose: int) -> None:
    """-v shows docmem's (and ingest's) debug lines, -vv every library's; none: warnings only."""
    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        for ours in ("docmem", "ingest"):
            logging.getLogger(ours).setLevel(logging.DEBUG)
    if verbose < 2:
        for noisy in ("pypdf", "httpx", "httpx2", "unstructured"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
