"""`GET /metrics` through prometheus_client: the alert counters, `responder_build_info`, the
standard process metrics, and figures read from the timeline and the alert queue at scrape time.

Counters live in memory and start at zero with the process, as Prometheus counters may; incident,
alert-state and step figures come from the database through a custom collector, so they survive
restarts and two scrapes never disagree with the timeline.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from responder.intake.store import AlertStore
    from responder.timeline import Timeline

STEP_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# Counters without their `_created` series: nothing reads them, and they double the output.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The server's registry: in-memory counters, build info, process metrics, database figures."""

    def __init__(self) -> None:
        from responder import __version__

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "responder_alerts_received", "Alerts parsed from authenticated requests.", ["source"], registry=r
        )
        self.deduplicated = Counter(
            "responder_alerts_deduplicated",
            "Alerts that repeated an alert already taken.",
            ["source"],
            registry=r,
        )
        self.rejected = Counter(
            "responder_alerts_rejected",
            "Requests or alerts refused (auth, too_large, bad_json, bad_shape, bad_input, unavailable).",
            ["source", "reason"],
            registry=r,
        )
        self.results = Counter(
            "responder_alert_results", "What became of each alert taken.", ["source", "result"], registry=r
        )
        self.no_action = Counter(
            "responder_alerts_no_action",
            "Alerts taken but needing no action, by why (host_event: a Falco event for the host, not a container).",
            ["source", "reason"],
            registry=r,
        )
        self.intake_warnings = Counter(
            "responder_intake_warnings",
            "Notifications whose sender said it left alerts out (Alertmanager truncatedAlerts) or sent none.",
            ["source"],
            registry=r,
        )
        Info(
            "responder_build", "The responder that answers: its version and what it runs on.", registry=r
        ).info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "ansible_core": _version("ansible-core"),
                "ansible_runner": _version("ansible-runner"),
            }
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._state = _StateCollector()
        r.register(self._state)

    def count_received(self, source: str, n: int = 1) -> None:
        """Alerts parsed from authenticated requests."""
        self.received.labels(source).inc(n)

    def count_result(self, source: str, result: str) -> None:
        """What became of an alert taken (queued, duplicate, ...)."""
        self.results.labels(source, result).inc()
        if result == "duplicate":
            self.deduplicated.labels(source).inc()

    def count_no_action(self, source: str, reason: str) -> None:
        """An alert that needs no action, by why."""
        self.no_action.labels(source, reason).inc()

    def count_intake_warning(self, source: str) -> None:
        """A notification that said it left alerts out."""
        self.intake_warnings.labels(source).inc()

    def count_rejected(self, source: str, reason: str) -> None:
        """A request or alert refused, by why."""
        self.rejected.labels(source, reason).inc()

    def render(self, timeline: Timeline, store: AlertStore, busy_workers: int, draining: bool) -> str:
        """The exposition text (format 0.0.4). Called on the event loop, one scrape at a time."""
        self._state.source = (timeline, store, busy_workers, draining)
        try:
            return generate_latest(self.registry).decode("utf-8")
        finally:
            self._state.source = None


class _StateCollector(Collector):
    """Figures read through their owners at scrape time: incidents, alerts, workers, steps."""

    def __init__(self) -> None:
        self.source: tuple[Timeline, AlertStore, int, bool] | None = None

    def describe(self) -> list[Metric]:
        return []  # collected only during a scrape (render), never at registration

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        timeline, store, busy, draining = self.source
        incidents = GaugeMetricFamily(
            "responder_incidents", "Incidents on the timeline by status.", labels=["status"]
        )
        for status, n in timeline.status_counts().items():
            incidents.add_metric([status], n)
        yield incidents
        states = store.counts()
        yield GaugeMetricFamily(
            "responder_alerts_queued", "Alerts waiting for a worker.", value=states.get("queued", 0)
        )
        alerts = GaugeMetricFamily(
            "responder_alerts",
            "Alerts on the timeline by state (failed: the run could not start; see server/alert-<id>.log).",
            labels=["state"],
        )
        for state, n in sorted(states.items()):
            alerts.add_metric([state], n)
        yield alerts
        yield GaugeMetricFamily(
            "responder_workers_busy", "Worker processes running a playbook now.", value=busy
        )
        yield GaugeMetricFamily(
            "responder_draining", "1 while the server shuts down and takes no new work.", value=int(draining)
        )
        yield _step_histogram(timeline)


def _step_histogram(timeline: Timeline) -> HistogramMetricFamily:
    by_step: dict[str, list[float]] = {}
    for step_id, started, finished in timeline.finished_step_spans():
        try:
            seconds = (_time(finished) - _time(started)).total_seconds()
        except (TypeError, ValueError):
            continue
        by_step.setdefault(step_id, []).append(max(0.0, seconds))
    family = HistogramMetricFamily(
        "responder_step_duration_seconds",
        "Wall time of finished playbook steps, by step id.",
        labels=["step"],
    )
    for step_id in sorted(by_step):
        values = by_step[step_id]
        buckets: list[tuple[str, Any]] = [(str(b), sum(1 for v in values if v <= b)) for b in STEP_BUCKETS]
        buckets.append(("+Inf", len(values)))
        family.add_metric([step_id], buckets, sum(values))
    return family


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
