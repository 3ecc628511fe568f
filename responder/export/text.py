"""Escaping for untrusted text (alert fields, container names, labels) in each output format."""

from __future__ import annotations

import html

# One translation table: raw HTML is live in most Markdown renderers, so & < > become entities;
# Markdown punctuation is backslash-escaped; line breaks would end a table row.
_MD_TABLE = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": " ", "\n": " "} | {c: "\\" + c for c in "\\`*_{}[]()#+!|~"}
)


def md(text: object) -> str:
    """Inline Markdown: no markup, no raw HTML, no line breaks that would end a table row."""
    return ("" if text is None else str(text)).translate(_MD_TABLE)


def md_code(text: object) -> str:
    """A hash or ID in a code span; backticks inside are impossible for those, but be safe."""
    value = "" if text is None else str(text).replace("`", "'")
    return f"`{value}`"


def h(text: object) -> str:
    """HTML-escape text (quotes included)."""
    return html.escape("" if text is None else str(text), quote=True)
