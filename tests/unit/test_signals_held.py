"""A worker interrupted mid-run puts the incident on record as interrupted even when more
signals arrive meanwhile: they are held back, not lost, until it is written."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from responder.service import signals_held


def test_signals_wait_until_the_record_is_written_then_arrive() -> None:
    seen: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(KeyboardInterrupt), signals_held():
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal, halfway through
            os.kill(os.getpid(), signal.SIGTERM)
            seen.append("recorded")  # reached: the bookkeeping is not cut short
        assert seen == ["recorded"]
    finally:
        signal.signal(signal.SIGTERM, previous)
