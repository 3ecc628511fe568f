"""How much evidence is being written right now: the bytes in an incident's `.partial` files and
the rate they grow at, for the progress line during a long export or fetch.

A module on a host reports only when it ends, so this watches the files themselves: the host's
export as it is written when the host is this machine (local connection), and on every
connection the controller's copy as it arrives. Over SSH the export itself is out of sight until
the fetch starts; the progress line then shows elapsed time only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from responder.sizes import human_size


class EvidenceWatch:
    """Samples `<root>/<incident>/[<host>/]*.partial` under each root, without following links."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = tuple(roots)
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None

    def _bytes(self, incident_id: str) -> int | None:
        total, seen = 0, False
        for root in self.roots:
            base = root / incident_id
            for directory in (base, *_subdirectories(base)):
                try:
                    entries = list(os.scandir(directory))
                except OSError:
                    continue
                for entry in entries:
                    if entry.name.endswith(".partial") and entry.is_file(follow_symlinks=False):
                        try:
                            total += entry.stat(follow_symlinks=False).st_size
                            seen = True
                        except OSError:
                            continue
        return total if seen else None

    def describe(self, incident_id: str, now: float | None = None) -> str:
        """ "1.2 GiB written, 310.0 MiB/s" while evidence is being written; "" otherwise."""
        now = time.monotonic() if now is None else now
        size = self._bytes(incident_id)
        if size is None:
            self._last, self._rate = None, None
            return ""
        if self._last is not None and now > self._last[0] and size >= self._last[1]:
            self._rate = (size - self._last[1]) / (now - self._last[0])
        elif self._last is not None:  # one file became evidence and the next began: start over
            self._rate = None
        self._last = (now, size)
        rate = f", {human_size(int(self._rate))}/s" if self._rate is not None else ""
        return f"{human_size(size)} written{rate}"


def _subdirectories(base: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
