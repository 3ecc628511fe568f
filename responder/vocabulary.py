"""The timeline's vocabulary: every kind of event responder writes, in one place.

Event kinds are stored as text (the timeline, exports and the API carry them as strings, and a
StrEnum member is that string), but code names them through this enum, so that a typo is an
AttributeError rather than an event nobody listens to, and adding a kind is adding one line
here. Roles add kinds of their own through `timeline:` in meta/responder.yml; those are data,
not members."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    # an incident's life
    """Every kind of event responder itself writes on the timeline."""

    INCIDENT_OPENED = "incident_opened"
    INCIDENT_RESUMED = "incident_resumed"
    INCIDENT_BLOCKED = "incident_blocked"
    INCIDENT_CLOSED = "incident_closed"
    INCIDENT_INTERRUPTED = "incident_interrupted"
    INCIDENT_RELEASED = "incident_released"
    RUN_ABANDONED = "run_abandoned"
    DOCKER_UNAVAILABLE = "docker_unavailable"
    RELEASE_REQUESTED = "release_requested"
    RELEASE_FAILED = "release_failed"
    CONTAINER_RELEASED = "container_released"  # one container of a fleet incident
    # steps and what Ansible reported
    BATCH_STARTED = "batch_started"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_WARNING = "step_warning"
    TASK_RESULT = "task_result"
    # people
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_GRANTED = "approval_granted"
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_REFUSED = "approval_refused"  # someone not allowed to decide pressed a button
    # evidence
    EVIDENCE_RECORDED = "evidence_recorded"
    EVIDENCE_PROBLEM = "evidence_problem"
    EVIDENCE_QUARANTINED = "evidence_quarantined"
    EVIDENCE_VERIFIED = "evidence_verified"
    EVIDENCE_PRUNED = "evidence_pruned"  # files deleted on purpose (`evidence prune`); records stay
    # one container, several incidents
    CONTAINER_HELD = "container_held"
    CONTAINER_CLAIMED = "container_claimed"
    DUPLICATE_INCIDENT = "duplicate_incident"
    # alerts
    ALERT_REPEATED = "alert_repeated"
    ALERT_RESOLVED = "alert_resolved"
    ALERT_ATTACHED = "alert_attached"
    INTAKE_WARNING = "intake_warning"
    # Slack
    NOTIFICATION_SENT = "notification_sent"
    NOTIFICATION_FAILED = "notification_failed"
    # what a role declares: the shipped rotate_secrets names this one (exports list them)
    SECRET_ROTATED = "secret_rotated"  # noqa: S105 - an event name, not a password


class IncidentStatus(StrEnum):
    """Where an incident stands."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HOST_UNREACHABLE = "host_unreachable"
    CONFIG_ERROR = "config_error"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    DENIED = "denied"
    RELEASED = "released"
    TARGET_GONE = "target_gone"
    BLOCKED = "blocked"  # dockerd unreachable on a target: the run waits and retries


# Open: the incident still holds its container (lock, claims). Unattended: open with a run in
# progress rather than a person's decision pending; when its process is gone nobody finishes it.
OPEN_STATUSES = (IncidentStatus.RUNNING, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.BLOCKED)
UNATTENDED_STATUSES = (IncidentStatus.RUNNING, IncidentStatus.BLOCKED)


def sql_in(values: tuple[StrEnum, ...]) -> str:
    """`('a', 'b')` for `status IN ...`: enum values only, never input."""
    return "(" + ", ".join(f"'{v.value}'" for v in values) + ")"


OPEN_SQL = sql_in(OPEN_STATUSES)
UNATTENDED_SQL = sql_in(UNATTENDED_STATUSES)

__all__ = ["OPEN_SQL", "OPEN_STATUSES", "UNATTENDED_SQL", "EventKind", "IncidentStatus", "sql_in"]
