"""One self-contained HTML file (inline CSS and SVG, no scripts, no external assets) with the
review content and a visual timeline: one lane per step, bars for durations, marks for decisions.

The layout lives in `templates/report.html.j2` (autoescaped); this module works out the chart's
geometry, which is arithmetic rather than markup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from responder.export import render
from responder.export.json_export import _epoch_micros
from responder.export.summary import Summary
from responder.timeline import Timeline

_COLORS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "host_unreachable": "#ef6c00",
    "config_error": "#6a1b9a",
    "timed_out": "#ad1457",
    "interrupted": "#5d4037",
    "skipped": "#9e9e9e",
    "not_run": "#bdbdbd",
}


@dataclass(frozen=True)
class Lane:
    """One step's bar: where it starts, how wide, what it came to."""

    step_id: str
    action: str
    outcome: str
    color: str
    y: int
    x: float
    width: float
    label_x: float
    seconds: float


@dataclass(frozen=True)
class Mark:
    """A decision (approval asked, granted, denied) as a vertical line at its moment."""

    x: float
    message: str


@dataclass
class Chart:
    """The visual timeline's geometry, in SVG user units."""

    width: int = 1000
    label_width: int = 180
    lane_height: int = 28
    height: int = 0
    total: float = 0.0
    lanes: list[Lane] = field(default_factory=list)
    decisions: list[Mark] = field(default_factory=list)

    @property
    def bar_height(self) -> int:
        """Bars leave a gap between lanes."""
        return self.lane_height - 8


def chart(summary: Summary) -> Chart | None:
    """Lay out one lane per step that started, on a shared time axis; None when nothing ran."""
    spans = [s for s in summary.steps.values() if s.started]
    if not spans or not summary.first_ts:
        return None
    start = _epoch_micros(summary.first_ts)
    end = max(_epoch_micros(summary.last_ts), start + 1)
    layout = Chart()
    layout.height = layout.lane_height * (len(spans) + 1) + 30
    layout.total = (end - start) / 1e6
    scale = (layout.width - layout.label_width - 160) / (end - start)  # room right for the label
    for i, span in enumerate(spans):
        began = _epoch_micros(span.started or summary.first_ts)
        ended = _epoch_micros(span.finished or summary.last_ts)
        x0 = layout.label_width + (began - start) * scale
        x1 = layout.label_width + (ended - start) * scale
        layout.lanes.append(
            Lane(
                step_id=span.step_id,
                action=span.action,
                outcome=span.outcome,
                color=_COLORS.get(span.outcome, "#757575"),
                y=20 + i * layout.lane_height,
                x=x0,
                width=max(x1 - x0, 2),
                label_x=max(x1, x0 + 2) + 4,
                seconds=(ended - began) / 1e6,
            )
        )
    for decision in summary.decisions:
        x = layout.label_width + (_epoch_micros(decision["ts"]) - start) * scale
        layout.decisions.append(Mark(x, str(decision["message"])))
    return layout


def write(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """The review report as one offline HTML file, with a visual timeline."""
    render.stream(
        "html",
        "report.html.j2",
        out,
        summary=summary,
        chart=chart(summary),
        events=timeline.raw_events(summary.incident.id),
    )
