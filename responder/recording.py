"""Recording: everything a run writes onto the timeline, in one place.

The run loop decides; the Recorder writes: events (each also handed to the listener that feeds
the terminal and Slack), the step ledger, evidence records with their hashes and manifest, the
role-declared events, stray partial files moved aside, and the closing summary."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from responder.catalog import Catalog
from responder.errors import UsageError
from responder.evidence import EvidenceProblem, record_from_output, write_manifest
from responder.execution.events import RunnerEvent, StepOutcome, StepResult
from responder.ids import default_actor, new_incident_id, utc_now
from responder.outcomes import tally_mapping
from responder.planning import PlannedStep, RunRequest
from responder.playbook.model import Playbook, Step
from responder.settings import Settings
from responder.targets import describe
from responder.timeline import Event, Incident, Timeline
from responder.vocabulary import EventKind, IncidentStatus


@dataclass(frozen=True)
class RunOutcome:
    """Where an incident stands after a call into the engine."""

    incident_id: str
    status: IncidentStatus
    steps: Mapping[str, str]
    awaiting_step: str | None = None


def _trigger(request: RunRequest) -> dict[str, Any]:
    """What started the incident, plus what it acts on (`targets`, for Slack's root message and
    the API) and an operator's explicit cap override (kept for a resumed run)."""
    trigger = dict(request.trigger)
    spec = request.playbook.target_param or request.playbook.param("container")
    value = request.params.get(spec.name) if spec else None
    if isinstance(value, (str, list)) and value:
        trigger["targets"] = describe(value)
    if request.max_targets:
        trigger["max_targets"] = request.max_targets
    return trigger


def per_container(outputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A host's step outputs as one mapping per container: a fleet step's per-container
    outputs, or the single container's outputs as they are."""
    if outputs.get("fleet") and isinstance(outputs.get("targets"), dict):
        return [
            t["output"]
            for t in outputs["targets"].values()
            if isinstance(t, dict) and isinstance(t.get("output"), dict)
        ]
    return [outputs]


# Outcomes after which what a step changed may still be in place.
_IN_EFFECT = (StepOutcome.SUCCEEDED, StepOutcome.PARTIAL)


class Recorder:
    """Writes one engine's incidents onto the timeline; `on_event` hears of every event written."""

    def __init__(
        self, timeline: Timeline, settings: Settings, catalog: Catalog, on_event: Callable[[Event], None]
    ) -> None:
        self.timeline = timeline
        self.settings = settings
        self.catalog = catalog
        self.on_event = on_event

    def event(
        self,
        incident_id: str,
        kind: str,
        message: str,
        *,
        step: str | None = None,
        host: str | None = None,
        actor: str = "responder",
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Write one event and hand it to the listener (terminal, Slack)."""
        event = self.timeline.append(incident_id, kind, message, step=step, host=host, actor=actor, data=data)
        self.on_event(event)
        return event

    def open(self, request: RunRequest) -> Incident:
        """Create the incident and write `incident_opened` (and any intake warnings its alert
        carried, e.g. alerts Alertmanager left out of the notification)."""
        playbook = request.playbook
        incident = Incident(
            id=new_incident_id(),
            created_at=utc_now(),
            updated_at=utc_now(),
            status=IncidentStatus.RUNNING,
            playbook=playbook.name,
            playbook_path=str(playbook.source),
            playbook_sha256=playbook.sha256,
            severity=playbook.severity,
            params=dict(request.params),
            secret_params=tuple(sorted(request.secrets.values)),
            trigger=_trigger(request),
            inventory=request.inventory,
            host_limit=request.limit,
            next_step=None,
            actor=request.actor,
            lock_key=request.lock_key,
            alert_id=request.alert_id,
        )
        on_open = request.on_open
        self.timeline.create_incident(
            incident, (lambda conn: on_open(conn, incident.id)) if on_open else None
        )
        self.event(
            incident.id,
            EventKind.INCIDENT_OPENED,
            f"incident opened: playbook {playbook.name} ({playbook.severity})",
            actor=request.actor,
            data={
                "playbook": playbook.name,
                "playbook_path": str(playbook.source),
                "playbook_sha256": playbook.sha256,
                "params": dict(request.params),
                "secret_params": sorted(request.secrets.values),
                "trigger": dict(request.trigger),
                "inventory": request.inventory,
                "limit": request.limit,
            },
        )
        warnings = request.trigger.get("warnings")
        for warning in warnings if isinstance(warnings, list) else []:
            self.event(
                incident.id,
                EventKind.INTAKE_WARNING,
                str(warning),
                actor="webhook",
                data={"warning": warning},
            )
        return incident

    def runner_event(self, incident_id: str, planned: Mapping[str, PlannedStep], event: RunnerEvent) -> None:
        """A play's start becomes `step_started`; each task result per host, `task_result`."""
        step_id = event.step_id
        if step_id is None or step_id not in planned:
            return
        if event.kind == "playbook_on_play_start":
            step = planned[step_id].step
            self.event(
                incident_id,
                EventKind.STEP_STARTED,
                f"step {step_id} ({step.action}) started",
                step=step_id,
                data={
                    "action": step.action,
                    "args": dict(planned[step_id].args),
                    "secret_args": sorted(planned[step_id].secret_args),
                },
            )
            return
        status = {
            "runner_on_ok": "changed" if event.result.get("changed") else "ok",
            "runner_on_failed": "ignored_failure" if event.ignore_errors else "failed",
            "runner_on_unreachable": "unreachable",
            "runner_on_skipped": "skipped",
        }.get(event.kind)
        if status is None:
            return
        message = f"{event.task}: {status}"
        if event.message and status in ("failed", "unreachable", "ignored_failure"):
            message += f": {event.message[:2000]}"
        self.event(
            incident_id,
            EventKind.TASK_RESULT,
            message,
            step=step_id,
            host=event.host,
            data={
                "task": event.task,
                "action": event.action,
                "status": status,
                "changed": bool(event.result.get("changed")),
                "runner_event": event.kind,
                "reason": str(event.result.get("reason", "")),
            },
        )

    # planning -------------------------------------------------------------------------------

    def step(
        self,
        incident_id: str,
        step_id: str,
        outcome: StepOutcome,
        message: str,
        outputs: Mapping[str, Any] | None = None,
        hosts: Mapping[str, Any] | None = None,
        host_outputs: Mapping[str, Any] | None = None,
        action: str | None = None,
    ) -> None:
        """A step's outcome on the ledger, and its `step_finished` event. A step of a containment
        action (or one release can undo) that changed something says so in the event (`in_effect`),
        so a report can say what stays in place until release."""
        self.timeline.set_step(incident_id, step_id, outcome, outputs)
        if message.startswith(f"{outcome}:"):  # never "skipped: skipped: ..."
            message = message[len(outcome) + 1 :].strip()
        text = f"step {step_id}: {outcome}" + (f": {message}" if message else "")
        data: dict[str, Any] = {"outcome": outcome}
        if hosts:
            data["hosts"] = dict(hosts)
        if host_outputs:
            data["outputs"] = dict(host_outputs)
        meta = self.catalog.get(action) if action else None
        if meta is not None and (meta.containment or meta.undo_action) and outcome in _IN_EFFECT:
            undoable = meta.undo_action and (not meta.undo_when or _any_set(host_outputs, meta.undo_when))
            data["in_effect"] = {"changes": meta.changes, "undo": meta.undo if undoable else ""}
        self.event(incident_id, EventKind.STEP_FINISHED, text, step=step_id, data=data)

    def collect(self, incident_id: str, step: Step, result: StepResult) -> None:
        """What a finished step reported besides its outcome: warnings, the events its role
        declares (meta/responder.yml timeline:), and evidence, re-hashed and recorded."""
        action = self.catalog.get(step.action)
        recorded = False
        for host, host_result in result.hosts.items():
            for outputs in per_container(host_result.outputs):
                for warning in outputs.get("warnings") or []:
                    self.event(incident_id, EventKind.STEP_WARNING, str(warning), step=step.id, host=host)
                for declared in action.timeline if action else ():
                    for message, fields in declared.events(outputs):
                        self.event(
                            incident_id,
                            declared.kind,
                            message,
                            step=step.id,
                            host=host,
                            data={**fields, "host": host, "declared_by": step.action},
                        )
                items = outputs.get("evidence")
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict):
                        recorded = self._evidence(incident_id, step.id, host, item) or recorded
        if recorded:
            write_manifest(self.timeline, incident_id, self.settings.evidence_dir / incident_id)

    def _evidence(self, incident_id: str, step_id: str, host: str, item: Mapping[str, Any]) -> bool:
        try:
            record = record_from_output(
                item,
                evidence_root=self.settings.evidence_dir,
                incident_id=incident_id,
                step_id=step_id,
                host=host,
                collector=default_actor(),
            )
        except EvidenceProblem as exc:
            self.event(incident_id, EventKind.EVIDENCE_PROBLEM, str(exc), step=step_id, host=host)
            return False
        self.timeline.add_evidence(record)
        match = record.sha256_source == record.sha256_controller
        self.event(
            incident_id,
            EventKind.EVIDENCE_RECORDED,
            f"{record.kind} evidence {Path(record.path).name}: sha256 {record.sha256_controller}"
            + ("" if match else f" MISMATCH (source {record.sha256_source})"),
            step=step_id,
            host=host,
            data={
                "kind": record.kind,
                "path": record.path,
                "source_path": record.source_path,
                "sha256_source": record.sha256_source,
                "sha256_controller": record.sha256_controller,
                "size": record.size,
                "container_id": record.container_id,
                "match": match,
            },
        )
        return True

    def blocked(self, incident_id: str, attempt: int, delays: tuple[float, ...]) -> bool:
        """dockerd unreachable: `blocked` with the retry about to wait, or (False) the retries are
        spent and the engine gives up."""
        if attempt >= len(delays):
            self.event(
                incident_id,
                EventKind.DOCKER_UNAVAILABLE,
                f"docker still unavailable after {len(delays)} retries; giving up",
                data={"attempts": attempt},
            )
            return False
        self.timeline.set_status(incident_id, IncidentStatus.BLOCKED)
        self.event(
            incident_id,
            EventKind.INCIDENT_BLOCKED,
            f"docker unavailable on the target; retrying in {delays[attempt]:g} s "
            f"(retry {attempt + 1} of {len(delays)})",
            data={"retry": attempt + 1, "of": len(delays), "delay": delays[attempt]},
        )
        return True

    def held(
        self, incident_id: str, holder: str, host: str, cid: str, fleet: bool = False, name: str = ""
    ) -> None:
        """Another open incident holds the container on its host: this run stopped before acting
        (or, in a fleet, skipped that container and went on with the rest); both timelines say so."""
        label = f"{cid[:12]}" + (f" ({name})" if name else "")
        self.event(
            incident_id,
            EventKind.CONTAINER_HELD,
            f"container {label} on {host} is already handled by incident {holder}; "
            + (
                "this incident skips it and goes on with its other containers"
                if fleet
                else "this run stopped so that two incidents never act on it at once"
            ),
            host=host,
            data={"holder": holder, "container_id": cid, "container_name": name},
        )
        self.event(
            holder,
            EventKind.DUPLICATE_INCIDENT,
            f"incident {incident_id} reached this incident's container {label} on {host} and "
            + ("skipped it" if fleet else "stopped"),
            host=host,
            data={"incident": incident_id, "container_id": cid},
        )

    def claimed_from(self, incident_id: str, previous: str, host: str, cid: str) -> None:
        """The host's claim was taken over from a closed incident: name it, and how to undo it."""
        self.event(
            incident_id,
            EventKind.CONTAINER_CLAIMED,
            f"container {cid[:12]} on {host} was last handled by incident {previous}, which is "
            f"closed; anything it changed there is undone by `responder release {previous}`",
            host=host,
            data={"container_id": cid, "previous": previous},
        )

    def quarantine_strays(self, evidence_root: Path) -> None:
        """A fetch cut short by a crash leaves a .partial on the controller: move it aside and say
        so on the timeline of the incident it belonged to."""
        from responder.evidence import quarantine_stray_partials

        for owner, path, size in quarantine_stray_partials(evidence_root):
            try:
                self.timeline.incident(owner)
            except UsageError:
                continue
            self.event(
                owner,
                EventKind.EVIDENCE_QUARANTINED,
                f"stray partial file from an interrupted fetch moved to {path} ({size} bytes); "
                "it was never hashed or recorded as evidence",
                data={"path": str(path), "size": size},
            )

    def close(
        self, incident_id: str, playbook: Playbook, stop: IncidentStatus | None, held_by: str | None
    ) -> RunOutcome:
        """Steps never reached are `not_run`; the status is set and the closing event says what
        the steps came to (outcomes.tally_steps, the one place that decides "done")."""
        ledger = self.timeline.steps(incident_id)
        for step in playbook.steps:
            if step.id not in ledger:
                self.step(incident_id, step.id, StepOutcome.NOT_RUN, "not reached")
        ledger = self.timeline.steps(incident_id)
        if stop is None:
            failed = [
                sid
                for sid, (status, _) in ledger.items()
                if status in (StepOutcome.FAILED, StepOutcome.PARTIAL)
            ]
            stop = IncidentStatus.FAILED if failed else IncidentStatus.SUCCEEDED
        statuses = {sid: status for sid, (status, _) in ledger.items()}
        tally = tally_mapping(statuses, [s.id for s in playbook.steps])
        self.timeline.set_status(incident_id, stop)
        self.event(
            incident_id,
            EventKind.INCIDENT_INTERRUPTED
            if stop is IncidentStatus.INTERRUPTED
            else EventKind.INCIDENT_CLOSED,
            f"incident {stop}"
            + (f" (the container is already handled by incident {held_by})" if held_by else "")
            + f": {tally.line()}",
            data={
                "status": stop,
                **tally.as_dict(),
                "steps": statuses,
                **({"held_by": held_by} if held_by else {}),
            },
        )
        return self.outcome(incident_id)

    def outcome(self, incident_id: str, awaiting: str | None = None) -> RunOutcome:
        """Where the incident stands now."""
        incident = self.timeline.incident(incident_id)
        steps = {sid: status for sid, (status, _) in self.timeline.steps(incident_id).items()}
        return RunOutcome(incident_id, incident.status, steps, awaiting)


def _any_set(host_outputs: Mapping[str, Any] | None, name: str) -> bool:
    """Whether any host's output (any container's, in a fleet) records `name`."""
    return any(
        output.get(name) for result in (host_outputs or {}).values() for output in per_container(result)
    )
