"""Markdown laid out for a post-incident review (NIST SP 800-61 §3.4, RFC 3227 custody).

The layout lives in `templates/report.md.j2`; this module only hands it the summary and the
event stream."""

from __future__ import annotations

from typing import IO

from responder.export import render
from responder.export.summary import Summary
from responder.timeline import Timeline


def write(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """The review report in Markdown."""
    render.stream("md", "report.md.j2", out, summary=summary, events=timeline.raw_events(summary.incident.id))
