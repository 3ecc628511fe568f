"""One streaming pass over an incident's events that keeps only what a review needs in bulk:
per-step spans, scope, decisions, evidence, notifications and what is still open."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from responder import fleet_view
from responder.outcomes import StepTally, tally_steps
from responder.timeline import EvidenceRecord, Incident, Timeline
from responder.vocabulary import EventKind, IncidentStatus

_DECODED = {
    EventKind.STEP_STARTED,
    EventKind.STEP_FINISHED,
    EventKind.APPROVAL_GRANTED,
    EventKind.APPROVAL_DENIED,
    EventKind.APPROVAL_REFUSED,
    EventKind.APPROVAL_REQUESTED,
    EventKind.INCIDENT_CLOSED,
    EventKind.INCIDENT_INTERRUPTED,
    EventKind.EVIDENCE_PROBLEM,
    EventKind.SECRET_ROTATED,
}


@dataclass
class StepSpan:
    """One step across the timeline: when it started and ended, its outcome per host."""

    step_id: str
    action: str = ""
    started: str | None = None
    finished: str | None = None
    outcome: str = "not_run"
    message: str = ""
    hosts: dict[str, str] = field(default_factory=dict)  # host -> outcome
    containers: list[dict[str, str]] = field(default_factory=list)  # a fleet step's, one row each
    in_effect: dict[str, str] = field(default_factory=dict)  # what it changed stays until release


@dataclass
class Container:
    """A container the incident acted on, with its image."""

    container_id: str
    host: str
    name: str = ""
    image: str = ""
    image_id: str = ""
    digests: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """What a review needs in bulk, from one pass over the events."""

    incident: Incident
    event_count: int = 0
    first_ts: str = ""
    last_ts: str = ""
    steps: dict[str, StepSpan] = field(default_factory=dict)
    hosts: set[str] = field(default_factory=set)
    containers: dict[tuple[str, str], Container] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[EvidenceRecord] = field(default_factory=list)
    secrets_rotated: list[dict[str, Any]] = field(default_factory=list)
    notifications: dict[str, int] = field(default_factory=dict)  # status -> count
    problems: list[str] = field(default_factory=list)

    @property
    def tally(self) -> StepTally:
        """What the steps came to: the same answer the closing event, Slack, the CLI and the API give."""
        return tally_steps((s.step_id, s.outcome) for s in self.steps.values())

    @property
    def open_items(self) -> list[str]:
        """What still needs someone: a waiting gate, failed steps, containment still in place
        (and how release undoes it), hash mismatches."""
        items: list[str] = []
        status = self.incident.status
        if status is IncidentStatus.AWAITING_APPROVAL:
            items.append(f"step {self.incident.next_step} is waiting for approval")
        elif status is IncidentStatus.RUNNING:
            items.append("the run had not finished when this export was made")
        for span in self.steps.values():
            if span.outcome not in ("succeeded", "skipped"):
                items.append(
                    f"step {span.step_id} ({span.action or 'action'}) ended {span.outcome}"
                    + (f": {span.message}" if span.message else "")
                )
        if status is not IncidentStatus.RELEASED:
            release = f"`responder release {self.incident.id} --reason ...`"
            for span in self.steps.values():
                if not span.in_effect:
                    continue
                changes = span.in_effect.get("changes") or "its change"
                undo = span.in_effect.get("undo")
                items.append(
                    f"step {span.step_id} ({span.action or 'action'}) is still in effect: {changes.rstrip('.')}. "
                    + (f"{release} undoes it: {undo.rstrip('.')}." if undo else "release does not undo it.")
                )
        for record in self.evidence:
            if record.sha256_controller != record.sha256_source:
                items.append(f"evidence {record.path} hash mismatch between source and controller")
        items.extend(self.problems)
        return items


def summarize(timeline: Timeline, incident_id: str) -> Summary:
    """One streaming pass over an incident's events."""
    incident = timeline.incident(incident_id)
    summary = Summary(incident=incident, evidence=timeline.evidence(incident_id))
    for _seq, ts, kind, step, host, actor, message, data_text in timeline.raw_events(incident_id):
        summary.event_count += 1
        if not summary.first_ts:
            summary.first_ts = ts
        summary.last_ts = ts
        if host:
            summary.hosts.add(host)
        if kind not in _DECODED and not kind.startswith("notification_"):
            continue
        data = json.loads(data_text)
        if kind.startswith("notification_"):
            status = str(data.get("status") or kind.removeprefix("notification_"))
            summary.notifications[status] = summary.notifications.get(status, 0) + 1
            continue
        span = summary.steps.setdefault(step, StepSpan(step)) if step else None
        if kind == EventKind.STEP_STARTED and span:
            span.started = ts
            span.action = str(data.get("action", ""))
        elif kind == EventKind.STEP_FINISHED and span:
            span.finished = ts
            span.outcome = str(data.get("outcome", ""))
            span.message = message.split(": ", 2)[-1] if ": " in message else ""
            span.in_effect = {k: str(v) for k, v in (data.get("in_effect") or {}).items()}
            for host_name, detail in (data.get("hosts") or {}).items():
                span.hosts[host_name] = str(detail.get("outcome", ""))
                summary.hosts.add(host_name)
            for host_name, outputs in (data.get("outputs") or {}).items():
                _scope(summary, host_name, outputs)
            span.containers = fleet_view.container_rows(data.get("outputs") or {})
        elif kind in (
            EventKind.APPROVAL_GRANTED,
            EventKind.APPROVAL_DENIED,
            EventKind.APPROVAL_REQUESTED,
            EventKind.APPROVAL_REFUSED,
        ):
            summary.decisions.append(
                {
                    "ts": ts,
                    "step": step,
                    "actor": actor,
                    "kind": kind,
                    "decision": data.get("decision", "requested"),
                    "reason": data.get("reason", ""),
                    "message": message,
                    "via": data.get("via") or {},  # a Slack decision: who, where, which message
                }
            )
        elif kind == EventKind.SECRET_ROTATED:
            # names and versions only: rotation events never carry values
            summary.secrets_rotated.append(
                {k: data.get(k) for k in ("name", "new_name", "version", "backend", "host")}
            )
        elif kind == EventKind.EVIDENCE_PROBLEM:
            summary.problems.append(message)
    for record in summary.evidence:
        if record.container_id:
            summary.containers.setdefault(
                (record.host, record.container_id), Container(record.container_id, record.host)
            )
    return summary


def _scope(summary: Summary, host: str, outputs: Any) -> None:
    if fleet_view.is_fleet(outputs):  # every container a fleet step acted on
        for entry in outputs["targets"].values():
            if isinstance(entry, dict) and entry.get("outcome") != "held":
                _scope(summary, host, entry.get("output"))
        return
    if not isinstance(outputs, dict) or not isinstance(outputs.get("container_id"), str):
        return
    key = (host, outputs["container_id"])
    container = summary.containers.setdefault(key, Container(outputs["container_id"], host))
    container.name = container.name or str(outputs.get("container_name") or "")
    container.image = container.image or str(outputs.get("image") or "")
    container.image_id = container.image_id or str(outputs.get("image_id") or "")
    for digest in outputs.get("image_digests") or []:
        if digest not in container.digests:
            container.digests.append(str(digest))
