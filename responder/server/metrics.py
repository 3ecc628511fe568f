"""Prometheus text exposition (format 0.0.4) for `GET /metrics`.

Counters live in memory and start at zero with the process, as Prometheus counters may; incident
and step figures are read from the timeline at scrape time, so they survive restarts.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from responder.intake.store import AlertStore
    from responder.timeline import Timeline

STEP_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """In-memory counters for /metrics (they start at zero with the process, as counters may)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()  # by source
        self.deduplicated: Counter[str] = Counter()  # by source
        self.rejected: Counter[tuple[str, str]] = Counter()  # by (source, reason)
        self.results: Counter[tuple[str, str]] = Counter()  # by (source, result)
        self.no_action: Counter[tuple[str, str]] = Counter()  # by (source, reason code)
        self.intake_warnings: Counter[str] = Counter()  # by source

    def count_received(self, source: str, n: int = 1) -> None:
        """Alerts parsed from authenticated requests."""
        with self._lock:
            self.received[source] += n

    def count_result(self, source: str, result: str) -> None:
        """What became of an alert taken (queued, duplicate, ...)."""
        with self._lock:
            self.results[(source, result)] += 1
            if result == "duplicate":
                self.deduplicated[source] += 1

    def count_no_action(self, source: str, reason: str) -> None:
        """An alert that needs no action, by why."""
        with self._lock:
            self.no_action[(source, reason)] += 1

    def count_intake_warning(self, source: str) -> None:
        """A notification that said it left alerts out."""
        with self._lock:
            self.intake_warnings[source] += 1

    def count_rejected(self, source: str, reason: str) -> None:
        """A request or alert refused, by why."""
        with self._lock:
            self.rejected[(source, reason)] += 1

    def render(self, timeline: Timeline, store: AlertStore, busy_workers: int, draining: bool) -> str:
        """The exposition text: in-memory counters, then figures read through their owners."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            received, dedup = dict(self.received), dict(self.deduplicated)
            rejected, results = dict(self.rejected), dict(self.results)
            no_action, warnings = dict(self.no_action), dict(self.intake_warnings)
        family("responder_alerts_received_total", "counter", "Alerts parsed from authenticated requests.")
        for source, n in sorted(received.items()):
            lines.append(f'responder_alerts_received_total{{source="{source}"}} {n}')
        family(
            "responder_alerts_deduplicated_total", "counter", "Alerts that repeated an alert already taken."
        )
        for source, n in sorted(dedup.items()):
            lines.append(f'responder_alerts_deduplicated_total{{source="{source}"}} {n}')
        family(
            "responder_alerts_rejected_total",
            "counter",
            "Requests or alerts refused (auth, too_large, bad_json, bad_shape, bad_input, unavailable).",
        )
        for (source, reason), n in sorted(rejected.items()):
            lines.append(f'responder_alerts_rejected_total{{source="{source}",reason="{reason}"}} {n}')
        family("responder_alert_results_total", "counter", "What became of each alert taken.")
        for (source, result), n in sorted(results.items()):
            lines.append(f'responder_alert_results_total{{source="{source}",result="{result}"}} {n}')
        family(
            "responder_alerts_no_action_total",
            "counter",
            "Alerts taken but needing no action, by why (host_event: a Falco event for the host, not a container).",
        )
        for (source, reason), n in sorted(no_action.items()):
            lines.append(f'responder_alerts_no_action_total{{source="{source}",reason="{reason}"}} {n}')
        family(
            "responder_intake_warnings_total",
            "counter",
            "Notifications whose sender said it left alerts out (Alertmanager truncatedAlerts) or sent none.",
        )
        for source, n in sorted(warnings.items()):
            lines.append(f'responder_intake_warnings_total{{source="{source}"}} {n}')
        family("responder_incidents", "gauge", "Incidents on the timeline by status.")
        for status, n in timeline.status_counts().items():
            lines.append(f'responder_incidents{{status="{status}"}} {n}')
        family("responder_alerts_queued", "gauge", "Alerts waiting for a worker.")
        states = store.counts()
        lines.append(f"responder_alerts_queued {states.get('queued', 0)}")
        family(
            "responder_alerts",
            "gauge",
            "Alerts on the timeline by state (failed: the run could not start; see server/alert-<id>.log).",
        )
        for state, n in sorted(states.items()):
            lines.append(f'responder_alerts{{state="{state}"}} {n}')
        family("responder_workers_busy", "gauge", "Worker processes running a playbook now.")
        lines.append(f"responder_workers_busy {busy_workers}")
        family("responder_draining", "gauge", "1 while the server shuts down and takes no new work.")
        lines.append(f"responder_draining {int(draining)}")
        self._step_histogram(timeline, lines)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _step_histogram(timeline: Timeline, lines: list[str]) -> None:
        by_step: dict[str, list[float]] = {}
        for step_id, started, finished in timeline.finished_step_spans():
            try:
                seconds = (_time(finished) - _time(started)).total_seconds()
            except (TypeError, ValueError):
                continue
            by_step.setdefault(step_id, []).append(max(0.0, seconds))
        name = "responder_step_duration_seconds"
        lines.append(f"# HELP {name} Wall time of finished playbook steps, by step id.")
        lines.append(f"# TYPE {name} histogram")
        for step_id in sorted(by_step):
            values = by_step[step_id]
            label = step_id.replace("\\", "\\\\").replace('"', '\\"')
            for bound in STEP_BUCKETS:
                count = sum(1 for v in values if v <= bound)
                lines.append(f'{name}_bucket{{step="{label}",le="{bound}"}} {count}')
            lines.append(f'{name}_bucket{{step="{label}",le="+Inf"}} {len(values)}')
            lines.append(f'{name}_sum{{step="{label}"}} {sum(values):.6f}')
            lines.append(f'{name}_count{{step="{label}"}} {len(values)}')


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
