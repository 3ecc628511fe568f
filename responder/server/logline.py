"""Log lines that an attacker cannot shape.

Request paths, headers and alert fields reach the server's log. A newline in one of them would
start a forged line (`... CRITICAL approved by admin`), and an escape sequence would repaint the
operator's terminal. Escaping at each call site misses the next one added, so the one formatter
every server log line passes through escapes the finished line: control characters (C0, DEL,
C1, and Unicode's line and paragraph separators) become visible `\\xNN` / `\\uNNNN` text, and a
traceback is folded onto the line it belongs to. A log line is always one line."""

from __future__ import annotations

import logging
import re

# C0 controls (tab included: it can pad a forged column), DEL, C1 controls, NEL's siblings the
# Unicode line and paragraph separators, and the bidirectional overrides that reorder text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """`text` with every control character written out: safe to put on one log line."""
    return _UNSAFE.sub(_visible, text)


class OneLineFormatter(logging.Formatter):
    """A Formatter whose output never spans lines nor carries terminal control characters."""

    def format(self, record: logging.LogRecord) -> str:
        """The record formatted as usual, then made one safe line."""
        return one_line(super().format(record))


def install(level: int = logging.INFO) -> None:
    """Route every log record of this process through the one-line formatter (stderr)."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
