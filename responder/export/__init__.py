"""Post-incident export of one incident's timeline: Markdown, HTML, JSON, JSONL (Timesketch), CSV.

Every exporter streams: a first pass over the events builds a bounded summary (per step and per
host, never per event), a second pass writes the rows. Memory stays flat as the timeline grows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from responder.export import csv_export, html_export, json_export, markdown_export
from responder.export.summary import Summary, summarize
from responder.timeline import Timeline

Writer = Callable[[Timeline, Summary, IO[str]], None]

# One explicit mapping; adding a format means adding a module and a line here.
FORMATS: dict[str, Writer] = {
    "md": markdown_export.write,
    "html": html_export.write,
    "json": json_export.write_json,
    "jsonl": json_export.write_jsonl,
    "csv": csv_export.write,
}

MEDIA_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}


def export(timeline: Timeline, incident_id: str, fmt: str, out: IO[str]) -> None:
    """Write incident `incident_id` to `out` in format `fmt` (a key of FORMATS)."""
    summary = summarize(timeline, incident_id)
    FORMATS[fmt](timeline, summary, out)
