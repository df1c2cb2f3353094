"""docmem's Python API: ``connect()`` gives a ``Service`` (see ``docmem.api.protocol``).

    from docmem.api import connect

    with connect(corpus="papers") as docmem:
        page = docmem.search("attention heads", page=1)
        print(page.header())
"""

from __future__ import annotations

from typing import Any

from docmem.api.protocol import CorpusView, IngestJob, Service
from docmem.schema import CorpusInfo, IngestOptions, JobEvent, ReadPage, SearchPage

__all__ = ["CorpusInfo", "CorpusView", "IngestJob", "IngestOptions", "JobEvent", "ReadPage",
           "SearchPage", "Service", "connect"]


def connect(settings: Any = None, **flags: Any) -> Any:
    """The service for a data home: ``settings`` (a ``docmem.config.Settings``), or flags as
    the CLI takes them (``home=``, ``corpus=``, ``model=``, ...) over config.toml and env."""
    from docmem.api.owner import Docmem
    from docmem.config import load_settings

    return Docmem(settings if settings is not None else load_settings(**flags))
