"""Who may decide at an approval gate, and when a gate has what it needs.

Two rules on top of the gate itself, the same for the CLI, the API and Slack:
- no self-approval: whoever started an incident cannot approve its gates afterwards (their
  `run --approve STEP`, decided up front and visible on the timeline as theirs, is the one
  exception: the lone on-call engineer's explicit choice, and it counts once);
- a step with `approvals: N` waits for N different people; one person approving twice
  counts once.

People are told apart by the actor the timeline records: `alice@host` on the CLI (or `--as`),
the API client's configured name, `slack:<user id>`. One person acting through two channels
is two actors; a review that needs more should use one channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from responder import db
from responder.errors import ApprovalRefused, StateError
from responder.playbook.model import Playbook, Step
from responder.timeline import Event, Incident, Timeline, insert_event
from responder.vocabulary import EventKind, IncidentStatus


@dataclass(frozen=True)
class GateCount:
    """One gated step's approvals so far: who, in order, and how many it needs."""

    step: str
    needed: int
    approvers: tuple[str, ...]

    @property
    def satisfied(self) -> bool:
        """Enough different people approved."""
        return len(self.approvers) >= self.needed

    @property
    def missing(self) -> int:
        """How many more people must approve."""
        return max(self.needed - len(self.approvers), 0)


def approvers_by_step(events: Iterable[Event]) -> dict[str, list[str]]:
    """Distinct approvers per step, in the order they approved."""
    found: dict[str, list[str]] = {}
    for event in events:
        if event.kind == EventKind.APPROVAL_GRANTED and event.step:
            people = found.setdefault(event.step, [])
            if event.actor not in people:
                people.append(event.actor)
    return found


def approvers_in(conn: db.Connection, incident_id: str) -> dict[str, list[str]]:
    """The same, read inside a write transaction (so a check and its record are one step)."""
    rows = conn.execute(
        "SELECT step, actor FROM events WHERE incident_id=? AND kind=? ORDER BY seq",
        (incident_id, str(EventKind.APPROVAL_GRANTED)),
    ).fetchall()
    found: dict[str, list[str]] = {}
    for step, actor in rows:
        people = found.setdefault(str(step), [])
        if actor not in people:
            people.append(str(actor))
    return found


def count(step: Step, approvers: Iterable[str]) -> GateCount:
    """A step's gate: who approved it and how many it needs."""
    return GateCount(step.id, max(step.approvals, 1), tuple(approvers))


def refuse_unless_allowed(incident: Incident, gate: GateCount, actor: str) -> None:
    """Raise ApprovalRefused (with what would be right) when `actor` may not approve `gate`, and
    StateError when the gate has all it needs already (a double click, two people at once)."""
    if gate.satisfied:
        raise StateError(
            f"step {gate.step} of {incident.id} is already approved by {', '.join(gate.approvers)}"
        )
    if actor == incident.actor:
        raise ApprovalRefused(
            f"{actor} started incident {incident.id} and cannot approve its gates: "
            f"someone else must approve step {gate.step}"
        )
    if actor in gate.approvers:
        raise ApprovalRefused(
            f"{actor} already approved step {gate.step} of {incident.id}; it needs "
            f"{gate.missing} more approval(s) from someone else"
        )


def describe(gate: GateCount) -> str:
    """ "1 of 2 approvals (bob); waiting for 1 more person" for a gate that is not satisfied."""
    return (
        f"{len(gate.approvers)} of {gate.needed} approvals ({', '.join(gate.approvers)}); "
        f"waiting for {gate.missing} more {'person' if gate.missing == 1 else 'people'}"
    )


def decision_data(gate: GateCount, reason: str, via: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What an approval event carries: its place in the count, and where it came from (a Slack
    user, channel and message)."""
    return {
        "decision": "approved",
        "reason": reason,
        "approval": len(gate.approvers) + 1,
        "of": gate.needed,
        **({"via": dict(via)} if via else {}),
    }


def grant(
    timeline: Timeline,
    incident: Incident,
    playbook: Playbook,
    steps: list[str],
    actor: str,
    reason: str,
    via: Mapping[str, str] | None = None,
) -> list[Event]:
    """Check the rules for `actor` on each step's gate and write the approvals, in one write
    transaction: two approvers at once, or one person clicking twice, give one decision each."""
    written = []
    with timeline.transaction() as conn:
        so_far = approvers_in(conn, incident.id)
        gates = {s: count(playbook.step(s), so_far.get(s, [])) for s in steps}
        for gate in gates.values():
            refuse_unless_allowed(incident, gate, actor)
        for step_id, gate in gates.items():
            tally = f" ({len(gate.approvers) + 1} of {gate.needed})" if gate.needed > 1 else ""
            written.append(
                insert_event(
                    conn,
                    timeline.redactor,
                    incident.id,
                    EventKind.APPROVAL_GRANTED,
                    f"step {step_id} approved by {actor}{tally}" + (f": {reason}" if reason else ""),
                    step=step_id,
                    actor=actor,
                    data=decision_data(gate, reason, via),
                )
            )
    return written


def waiting(timeline: Timeline, incident: Incident, playbook: Playbook) -> GateCount | None:
    """The gate an incident waits at when it still needs more approvals (None: it may go on)."""
    if incident.status is not IncidentStatus.AWAITING_APPROVAL or not incident.next_step:
        return None
    step = playbook.step(incident.next_step)
    gate = count(step, approvers_by_step(timeline.events(incident.id)).get(step.id, []))
    return None if gate.satisfied else gate
