"""``docmem chat``: the Textual TUI over the paging agent (``make_app`` builds it)."""

from docmem.tui.app import ChatApp, make_app

__all__ = ["ChatApp", "make_app"]
