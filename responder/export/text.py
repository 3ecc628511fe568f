"""Markdown escaping for untrusted text (alert fields, container names, labels).

HTML needs no helper here: the HTML report's Jinja2 environment autoescapes."""

from __future__ import annotations

# One translation table: raw HTML is live in most Markdown renderers, so & < > become entities;
# Markdown punctuation is backslash-escaped; line breaks would end a table row.
_MD_TABLE = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": " ", "\n": " "} | {c: "\\" + c for c in "\\`*_{}[]()#+!|~"}
)


def md(text: object) -> str:
    """Inline Markdown: no markup, no raw HTML, no line breaks that would end a table row."""
    return ("" if text is None else str(text)).translate(_MD_TABLE)
