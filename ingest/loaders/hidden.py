"""Elements that a page's own ``<style>`` blocks hide.

Text a browser does not show is not indexed (a reader could not check a citation of it, and it
is where a hostile page hides instructions for the model). An inline ``style`` is read by the
loader's XPath; this reads the rules of the page's ``<style>`` blocks, as a browser would, with
tinycss2 (parsing) and cssselect (matching, through lxml). Only rules that hide at all times are
taken: a rule inside ``@media`` or ``@supports`` hides on some screens only, and a selector with
a pseudo-class (``:hover``, ``:not([open])``, ``::before``) hides in some states only. A page
that hides ``html`` or ``body`` until a script shows it (an "anti-flicker" snippet) keeps its
text. External stylesheets are not read: generators put their hiding rules there, for tabs and
collapsed answers a reader opens, which must stay text.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

_HIDING = {("display", "none"), ("visibility", "hidden"), ("visibility", "collapse")}
_ZERO = re.compile(r"(?:0+\.?0*|\.0+)(?:px|em|rem|pt|%)?")
_WHOLE_PAGE = {"html", "head", "body"}


def hidden_by_style_blocks(root: Any) -> list[Any]:
    """The elements of ``root`` (an lxml tree) that a top-level rule of one of its ``<style>``
    blocks hides; [] when tinycss2 or cssselect is missing."""
    styles = [style.text for style in root.iter("style") if style.text and style.text.strip()]
    if not styles:
        return []
    try:
        import tinycss2
        from cssselect import SelectorError
        from lxml.cssselect import CSSSelector
    except ImportError as exc:
        logger.debug("style blocks not read: %s", exc)
        return []
    found: list[Any] = []
    for css in styles:
        for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
            if rule.type != "qualified-rule" or not _hides(rule.content):
                continue
            selector = tinycss2.serialize(rule.prelude).strip()
            if ":" in selector:
                continue
            try:
                matched = CSSSelector(selector)(root)
            except (SelectorError, ValueError) as exc:  # a selector lxml cannot express
                logger.debug("style rule %r not matched: %s", selector[:80], exc)
                continue
            found += [e for e in matched if e.tag not in _WHOLE_PAGE and e.get("role") != "tabpanel"]
    return found


def _hides(content: Any) -> bool:
    import tinycss2

    for declaration in tinycss2.parse_declaration_list(content, skip_comments=True, skip_whitespace=True):
        if declaration.type != "declaration":
            continue
        name = declaration.lower_name
        value = " ".join(tinycss2.serialize(declaration.value).lower().split())
        if (name, value) in _HIDING or (name in ("font-size", "opacity") and _ZERO.fullmatch(value)):
            return True
    return False
