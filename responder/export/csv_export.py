"""CSV with a stable header; cells a spreadsheet would run as formulas are defused."""

from __future__ import annotations

import csv
from typing import IO

from responder.export.summary import Summary
from responder.timeline import Timeline

HEADER = ["incident_id", "seq", "timestamp_utc", "kind", "step", "host", "actor", "message", "data"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """OWASP CSV injection: a leading =, +, -, @, tab or CR makes spreadsheets evaluate the cell."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """One CSV row per event, formula-safe."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    incident_id = summary.incident.id
    safe_id = cell(incident_id)
    for seq, ts, kind, step, host, actor, message, data in timeline.raw_events(incident_id):
        writer.writerow(
            (safe_id, seq, ts, cell(kind), cell(step), cell(host), cell(actor), cell(message), cell(data))
        )
