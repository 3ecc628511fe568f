"""Release: reversing containment, only ever on an explicit human or API request.

Each step that succeeded is undone by the action its role declares (meta/responder.yml undo:),
in reverse order and host by host, with arguments rendered over what the step recorded there
(planning.undo_plan). What another incident changed before this one took the container over is
not undone here: the operator is told which incident to release."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from responder.errors import StateError
from responder.execution.events import StepOutcome
from responder.params import SecretValues
from responder.planning import ReleaseTarget, earlier_incidents, undo_plan
from responder.recording import RunOutcome
from responder.targets import CONTAINER_REF
from responder.vocabulary import EventKind, IncidentStatus

if TYPE_CHECKING:
    from responder.engine import Engine


def release(
    engine: Engine,
    incident_id: str,
    actor: str,
    reason: str,
    container: str | None = None,
    via: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Reverse containment: run, in reverse order and host by host, the undo action each
    succeeded step's role declares. Only ever on an explicit human or API request. With
    `container`, only that container of a fleet incident: the incident stays as it is."""
    incident = engine.timeline.incident(incident_id)
    if incident.status in (IncidentStatus.RUNNING, IncidentStatus.RELEASED):
        raise StateError(
            f"incident {incident_id} is {incident.status}; release needs a finished or paused run"
        )
    if not reason.strip():
        raise StateError("say why the containment is being reversed (--reason): it goes on the timeline")
    playbook = engine.playbook_for(incident, check_hash=False)
    ledger = engine.timeline.steps(incident_id)
    attempts: dict[str, list[dict[str, Any]]] = {}  # step -> each attempt's outputs by host
    for event in engine.timeline.events(incident_id):
        if (
            event.kind == EventKind.STEP_FINISHED
            and event.step
            and isinstance(event.data.get("outputs"), dict)
        ):
            attempts.setdefault(event.step, []).append(dict(event.data["outputs"]))
    if container is not None and not CONTAINER_REF.fullmatch(container):
        raise StateError(f"--container {container!r}: expected a container name, ID or ID prefix")
    target = ReleaseTarget(incident_id, incident.playbook, incident.playbook_path, incident.params)
    statuses = {sid: status for sid, (status, _) in ledger.items()}
    planned = undo_plan(target, playbook, statuses, attempts, engine.catalog, container)
    if container is not None and not planned:
        raise StateError(
            f"nothing of incident {incident_id} to undo for container {container!r}: it is not one of "
            "the containers its steps acted on (see `responder show`)"
        )
    if container is not None:
        # step IDs are identifiers (Ansible reads them as variable names): a name's '-' and '.' become '_'
        suffix = re.sub(r"[^a-zA-Z0-9_]", "_", container)[:24]
        planned = [replace(p, step=replace(p.step, id=f"{p.step.id}_{suffix}")) for p in planned]
    engine.record.event(
        incident_id,
        EventKind.RELEASE_REQUESTED,
        f"release requested by {actor}"
        + (f" for container {container}" if container else "")
        + f": {reason}",
        actor=actor,
        data={
            "reason": reason,
            **({"container": container} if container else {}),
            **({"via": dict(via)} if via else {}),
        },
    )
    earlier = earlier_incidents(attempts)
    hint = (
        f"; incident {', '.join(earlier)} changed this container before this one: release "
        + " and ".join(f"`responder release {i}`" for i in earlier)
        + " to undo that"
        if earlier
        else ""
    )
    if not planned:
        engine.record.event(
            incident_id,
            EventKind.INCIDENT_RELEASED,
            f"released: no step had anything to undo{hint}",
            actor=actor,
            data={"undone": [], "reason": reason, "earlier_incidents": earlier},
        )
        engine.timeline.set_status(incident_id, IncidentStatus.RELEASED)
        return engine.record.outcome(incident_id)
    number = sum(1 for e in engine.timeline.events(incident_id) if e.kind == EventKind.BATCH_STARTED) + 1
    engine.run_batch(incident, playbook, planned, SecretValues({}), number, {})
    ran = {p.step.id for p in planned}
    results = {sid: status for sid, (status, _) in engine.timeline.steps(incident_id).items() if sid in ran}
    failed = sorted(sid for sid, status in results.items() if status != StepOutcome.SUCCEEDED)
    if failed:
        engine.record.event(
            incident_id,
            EventKind.RELEASE_FAILED,
            f"release incomplete: {', '.join(failed)} did not succeed",
            actor=actor,
            data={"failed": failed},
        )
    elif container is not None:
        engine.record.event(
            incident_id,
            EventKind.CONTAINER_RELEASED,
            f"container {container} released by {actor}: {', '.join(sorted(results))}; the incident's "
            "other containers stay contained",
            actor=actor,
            data={"container": container, "undone": sorted(results), "reason": reason},
        )
    else:
        engine.timeline.set_status(incident_id, IncidentStatus.RELEASED)
        engine.record.event(
            incident_id,
            EventKind.INCIDENT_RELEASED,
            f"containment reversed by {actor}: {', '.join(sorted(results))}{hint}",
            actor=actor,
            data={"undone": sorted(results), "reason": reason, "earlier_incidents": earlier},
        )
    return engine.record.outcome(incident_id)
