"""The incident engine: plans steps, batches them between approval gates, hands each batch to
an Executor and writes everything that happens onto the timeline.

The engine knows no action by name: steps name roles, roles declare their arguments, and
results come back as typed events. Only the CLI (or the server) talks to people.
"""

from __future__ import annotations

import getpass
import re
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from responder.catalog import Catalog, check_arguments
from responder.errors import PlaybookError, Problem, StateError, UsageError
from responder.evidence import EvidenceProblem, record_from_output, write_manifest
from responder.execution.ansible_input import StepInvocation
from responder.execution.events import Classifier, RunnerEvent, StepOutcome, StepResult
from responder.execution.runner import Batch, CancelToken, Executor
from responder.ids import INCIDENT_ID, incident_time_now, new_incident_id, utc_now
from responder.outcomes import tally_mapping
from responder.params import SecretValues
from responder.playbook import templating
from responder.playbook.model import HOST_PATTERN, Approval, OnFailure, Playbook, Step
from responder.playbook.parse import secret_param_name
from responder.private_dirs import ensure_private_dir
from responder.settings import Settings
from responder.timeline import Event, Incident, Timeline
from responder.vocabulary import EventKind, IncidentStatus

# A well-formed stand-in: modules validate the incident ID even in check mode.
DRY_RUN_INCIDENT = "INC-00000000-000000-0000"
_FINAL_STEP = {s.value for s in StepOutcome} - {StepOutcome.NOT_RUN.value}
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_STOPPING = {
    StepOutcome.CONFIG_ERROR: IncidentStatus.CONFIG_ERROR,
    StepOutcome.UNREACHABLE: IncidentStatus.HOST_UNREACHABLE,
    StepOutcome.TIMED_OUT: IncidentStatus.TIMED_OUT,
    StepOutcome.INTERRUPTED: IncidentStatus.INTERRUPTED,
}


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class RunRequest:
    playbook: Playbook
    params: Mapping[str, Any]
    secrets: SecretValues
    actor: str
    inventory: str | None = None
    limit: str | None = None
    trigger: Mapping[str, Any] = field(default_factory=lambda: {"source": "cli"})
    pre_approved: tuple[str, ...] = ()  # gated steps the requester approves up front ("all": every gate)
    lock_key: str | None = None  # the container this incident holds while open (see intake.routing.lock_key)
    alert_id: int | None = None  # the queued alert this run answers (server workers)


@dataclass(frozen=True)
class PlannedStep:
    """A step with its arguments rendered; what the dry run prints and the executor runs."""

    step: Step
    args: Mapping[str, Any]
    secret_args: Mapping[str, str]
    skipped: str | None = None

    def invocation(self) -> StepInvocation:
        return StepInvocation(
            step_id=self.step.id,
            role=self.step.action,
            args=self.args,
            secret_args=self.secret_args,
            hosts=self.step.hosts or "all",
            on_failure=self.step.on_failure,
            timeout=self.step.timeout,
        )


@dataclass(frozen=True)
class RunOutcome:
    incident_id: str
    status: IncidentStatus
    steps: Mapping[str, str]
    awaiting_step: str | None = None


@dataclass
class DryRunStep:
    planned: PlannedStep
    result: StepResult | None = None
    note: str = ""


class Engine:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        timeline: Timeline,
        executor: Executor,
        on_timeline: Callable[[Event], None] = lambda e: None,
        on_runner_event: Callable[[RunnerEvent], None] = lambda e: None,
        cancel: CancelToken | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.timeline = timeline
        self.executor = executor
        self.on_timeline = on_timeline
        self.on_runner_event = on_runner_event
        self.cancel = cancel or CancelToken()
        # The open incident that already held the container when this run reached it by another
        # reference (set by _claim_resolved); the webhook worker then attaches its alert there.
        self.held_by: str | None = None
        self._strays_checked = False

    # public entry points --------------------------------------------------------------------

    def start(self, request: RunRequest) -> RunOutcome:
        """Open an incident and run the playbook up to its end or its first approval gate."""
        playbook = request.playbook
        gated = [s.id for s in playbook.steps if s.approval is Approval.REQUIRED]
        chosen = gated if "all" in request.pre_approved else list(request.pre_approved)
        unknown = [s for s in request.pre_approved if s != "all" and s not in gated]
        if unknown:
            raise StateError(f"--approve names steps without an approval gate: {', '.join(unknown)}")
        self._check_private_dirs()
        for value in request.secrets.values.values():
            self.timeline.redactor.add(value)
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
            trigger=dict(request.trigger),
            inventory=request.inventory,
            host_limit=request.limit,
            next_step=None,
            actor=request.actor,
            lock_key=request.lock_key,
            alert_id=request.alert_id,
        )
        self.timeline.create_incident(incident)
        self._event(
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
            self._event(
                incident.id,
                EventKind.INTAKE_WARNING,
                str(warning),
                actor="webhook",
                data={"warning": warning},
            )
        for step_id in chosen:
            self._event(
                incident.id,
                EventKind.APPROVAL_GRANTED,
                f"step {step_id} approved up front by {request.actor}",
                step=step_id,
                actor=request.actor,
                data={"decision": "approved", "reason": "approved at start"},
            )
        return self._advance(incident, playbook, request.params, request.secrets)

    def approve(self, incident_id: str, steps: list[str] | None, actor: str, reason: str = "") -> list[str]:
        """Record approval of the named gated steps (None: every remaining gate)."""
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.AWAITING_APPROVAL:
            raise StateError(f"incident {incident_id} is {incident.status}, not awaiting approval")
        playbook = self._playbook_for(incident)
        done = self.timeline.steps(incident_id)
        gated = [s.id for s in playbook.steps if s.approval is Approval.REQUIRED and s.id not in done]
        chosen = gated if steps is None else steps
        for step_id in chosen:
            if step_id not in gated:
                raise StateError(
                    f"step {step_id!r} of {incident_id} is not waiting for approval (gated: {', '.join(gated) or 'none'})"
                )
        for step_id in chosen:
            self._event(
                incident_id,
                EventKind.APPROVAL_GRANTED,
                f"step {step_id} approved by {actor}" + (f": {reason}" if reason else ""),
                step=step_id,
                actor=actor,
                data={"decision": "approved", "reason": reason},
            )
        return chosen

    def _check_private_dirs(self) -> None:
        """Refuse (UnsafePath, exit 2) before an incident is opened or continued, rather than
        leave it `running` when the first batch finds a link where evidence goes."""
        for name in ("runs", "evidence", "ansible-local"):
            self.settings.private_dir(name)

    def _take_secrets(self, incident: Incident, secrets: SecretValues) -> None:
        """Secret params are never stored: a continuing incident needs them given again."""
        for value in secrets.values.values():
            self.timeline.redactor.add(value)
        missing = set(incident.secret_params) - set(secrets.values)
        if missing:
            raise StateError(
                "secret params are never stored; set them again to continue: "
                + ", ".join(f"RESPONDER_SECRET_{m.upper()}" for m in sorted(missing))
            )

    def resume(self, incident_id: str, secrets: SecretValues) -> RunOutcome:
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.AWAITING_APPROVAL:
            raise StateError(
                f"incident {incident_id} is {incident.status}; only a paused incident can continue"
            )
        self._take_secrets(incident, secrets)
        self._check_private_dirs()
        playbook = self._playbook_for(incident)
        if not self.timeline.transition(
            incident_id, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.RUNNING
        ):
            raise StateError(f"incident {incident_id} was resumed or closed by someone else meanwhile")
        self._event(incident_id, EventKind.INCIDENT_RESUMED, "incident resumed after approval")
        return self._advance(incident, playbook, incident.params, secrets)

    def resume_interrupted(self, incident_id: str, secrets: SecretValues, actor: str) -> RunOutcome:
        """Continue an interrupted incident: steps that finished stay done, steps that were
        interrupted or never ran run again (every runbook role is idempotent: it checks the
        container's state before changing it)."""
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.INTERRUPTED:
            raise StateError(
                f"incident {incident_id} is {incident.status}; only an interrupted incident can be resumed"
            )
        self._take_secrets(incident, secrets)
        self._check_private_dirs()
        playbook = self._playbook_for(incident)
        if not self.timeline.transition(incident_id, IncidentStatus.INTERRUPTED, IncidentStatus.RUNNING):
            raise StateError(f"incident {incident_id} was resumed by someone else meanwhile")
        again = self.timeline.reset_steps(
            incident_id, (StepOutcome.INTERRUPTED, StepOutcome.NOT_RUN, StepOutcome.TIMED_OUT, "running")
        )
        self._event(
            incident_id,
            EventKind.INCIDENT_RESUMED,
            f"incident resumed by {actor}; running again: {', '.join(again) or 'nothing'}",
            actor=actor,
            data={"rerun": again},
        )
        return self._advance(incident, playbook, incident.params, secrets)

    def abandon(self, incident_id: str, reason: str) -> RunOutcome:
        """Mark an incident whose run died with its process (server killed, power loss) as
        interrupted, so it can be resumed; the steps that were running say so."""
        incident = self.timeline.incident(incident_id)
        if incident.status not in (IncidentStatus.RUNNING, IncidentStatus.BLOCKED):
            return self._outcome(incident_id)
        for step_id, (status, _) in self.timeline.steps(incident_id).items():
            if status == "running":
                self._record_step(incident_id, step_id, StepOutcome.INTERRUPTED, reason)
        self._event(incident_id, EventKind.RUN_ABANDONED, reason)
        playbook = self._playbook_for(incident, check_hash=False)
        return self._close(incident_id, playbook, IncidentStatus.INTERRUPTED)

    def deny(self, incident_id: str, actor: str, reason: str = "") -> None:
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.AWAITING_APPROVAL:
            raise StateError(f"incident {incident_id} is {incident.status}, not awaiting approval")
        step = incident.next_step
        # Claim the incident first (awaiting -> running) so a concurrent approval cannot resume it.
        if not self.timeline.transition(
            incident_id, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.RUNNING
        ):
            raise StateError(f"incident {incident_id} was resumed or closed by someone else meanwhile")
        self._event(
            incident_id,
            EventKind.APPROVAL_DENIED,
            f"step {step} denied by {actor}" + (f": {reason}" if reason else ""),
            step=step,
            actor=actor,
            data={"decision": "denied", "reason": reason},
        )
        playbook = self._playbook_for(incident, check_hash=False)
        self._close(incident_id, playbook, IncidentStatus.DENIED)

    def release(self, incident_id: str, actor: str, reason: str) -> RunOutcome:
        """Reverse containment: run, in reverse order and host by host, the undo action each
        succeeded step's role declares. Only ever on an explicit human or API request."""
        incident = self.timeline.incident(incident_id)
        if incident.status in (IncidentStatus.RUNNING, IncidentStatus.RELEASED):
            raise StateError(
                f"incident {incident_id} is {incident.status}; release needs a finished or paused run"
            )
        if not reason.strip():
            raise StateError("say why the containment is being reversed (--reason): it goes on the timeline")
        playbook = self._playbook_for(incident, check_hash=False)
        ledger = self.timeline.steps(incident_id)
        attempts: dict[str, list[dict[str, Any]]] = {}  # step -> each attempt's outputs by host
        for event in self.timeline.events(incident_id):
            if (
                event.kind == EventKind.STEP_FINISHED
                and event.step
                and isinstance(event.data.get("outputs"), dict)
            ):
                attempts.setdefault(event.step, []).append(dict(event.data["outputs"]))
        self._event(
            incident_id,
            EventKind.RELEASE_REQUESTED,
            f"release requested by {actor}: {reason}",
            actor=actor,
            data={"reason": reason},
        )
        planned: list[PlannedStep] = []
        for step in reversed(playbook.steps):
            action = self.catalog.get(step.action)
            if (
                ledger.get(step.id, ("", {}))[0] != StepOutcome.SUCCEEDED
                or action is None
                or not action.undo_action
            ):
                continue
            undo = self.catalog.get(action.undo_action)
            assert undo is not None  # load_catalog refuses unknown undo actions
            merged = _merge_attempts(attempts.get(step.id, []), action.undo_gather)
            for index, (host, recorded) in enumerate(sorted(merged.items())):
                if not re.fullmatch(HOST_PATTERN, host):
                    raise StateError(f"host name {host!r} recorded for step {step.id} cannot be targeted")
                context = {
                    "outputs": recorded,
                    "params": dict(incident.params),
                    "incident": {"id": incident_id, "playbook": incident.playbook},
                }
                args = {k: templating.render_value(v, context) for k, v in action.undo_with.items()}
                problems = check_arguments(
                    undo,
                    args,
                    lambda path, msg, hint="", key=False: Problem(
                        incident.playbook_path, None, None, msg, ".".join(map(str, path)), hint
                    ),
                    lambda v: False,
                    (),
                )
                if problems:
                    raise PlaybookError(problems)
                undo_step = Step(
                    id=f"undo_{step.id}_{index}",
                    action=undo.name,
                    on_failure=OnFailure.CONTINUE,
                    timeout=300,
                    hosts=host,
                    description=f"undo {step.id} on {host}",
                )
                planned.append(PlannedStep(undo_step, args, {}))
        # Claims taken over from a finished incident: what that incident changed (a network it cut)
        # is not this incident's to undo, but the operator must learn which one to release.
        earlier = sorted(
            {
                str(out["claimed_from"])
                for tries in attempts.values()
                for by_host in tries
                for out in by_host.values()
                if isinstance(out, dict) and INCIDENT_ID.match(str(out.get("claimed_from", "")))
            }
        )
        hint = (
            f"; incident {', '.join(earlier)} changed this container before this one: release "
            + " and ".join(f"`responder release {i}`" for i in earlier)
            + " to undo that"
            if earlier
            else ""
        )
        if not planned:
            self._event(
                incident_id,
                EventKind.INCIDENT_RELEASED,
                f"released: no step had anything to undo{hint}",
                actor=actor,
                data={"undone": [], "reason": reason, "earlier_incidents": earlier},
            )
            self.timeline.set_status(incident_id, IncidentStatus.RELEASED)
            return self._outcome(incident_id)
        number = sum(1 for e in self.timeline.events(incident_id) if e.kind == EventKind.BATCH_STARTED) + 1
        self._run_batch(incident, playbook, planned, SecretValues({}), number, {})
        results = {
            sid: status
            for sid, (status, _) in self.timeline.steps(incident_id).items()
            if sid.startswith("undo_")
        }
        failed = sorted(sid for sid, status in results.items() if status != StepOutcome.SUCCEEDED)
        if failed:
            self._event(
                incident_id,
                EventKind.RELEASE_FAILED,
                f"release incomplete: {', '.join(failed)} did not succeed",
                actor=actor,
                data={"failed": failed},
            )
        else:
            self.timeline.set_status(incident_id, IncidentStatus.RELEASED)
            self._event(
                incident_id,
                EventKind.INCIDENT_RELEASED,
                f"containment reversed by {actor}: {', '.join(sorted(results))}{hint}",
                actor=actor,
                data={"undone": sorted(results), "reason": reason, "earlier_incidents": earlier},
            )
        return self._outcome(incident_id)

    def dry_run(self, request: RunRequest) -> list[DryRunStep]:
        """Resolve everything, run the modules in check mode, change nothing, record nothing."""
        playbook = request.playbook
        report: list[DryRunStep] = []
        outputs: dict[str, dict[str, Any]] = {}
        scratch = self.settings.private_dir("runs", f"dry-run-{new_incident_id()}")
        try:
            pending: list[PlannedStep] = []
            for step in playbook.steps:
                context = self._context("DRY-RUN", playbook, request.params, outputs)
                if pending and self._depends_on(step, {p.step.id for p in pending}):
                    self._dry_batch(request, pending, report, outputs, scratch)
                    pending = []
                    context = self._context("DRY-RUN", playbook, request.params, outputs)
                planned = self._plan_step(step, context, request.secrets)
                if planned.skipped:
                    report.append(DryRunStep(planned, note=planned.skipped))
                    continue
                pending.append(planned)
            if pending:
                self._dry_batch(request, pending, report, outputs, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        order = {s.id: i for i, s in enumerate(playbook.steps)}
        return sorted(report, key=lambda r: order[r.planned.step.id])

    # the run loop ---------------------------------------------------------------------------

    def _advance(
        self,
        incident: Incident,
        playbook: Playbook,
        params: Mapping[str, Any],
        secrets: SecretValues,
        attempt: int = 0,
    ) -> RunOutcome:
        incident_id = incident.id
        ledger = self.timeline.steps(incident_id)
        outputs = {sid: out for sid, (status, out) in ledger.items()}
        approved = {e.step for e in self.timeline.events(incident_id) if e.kind == EventKind.APPROVAL_GRANTED}
        steps = [s for s in playbook.steps if ledger.get(s.id, ("", {}))[0] not in _FINAL_STEP]
        batch_number = sum(1 for e in self.timeline.events(incident_id) if e.kind == EventKind.BATCH_STARTED)
        index = 0
        while index < len(steps):
            batch: list[PlannedStep] = []
            while index < len(steps):
                step = steps[index]
                context = self._context(incident_id, playbook, params, outputs)
                if step.approval is Approval.REQUIRED and step.id not in approved:
                    if batch:
                        break
                    self.timeline.set_status(incident_id, IncidentStatus.AWAITING_APPROVAL, next_step=step.id)
                    self._event(
                        incident_id,
                        EventKind.APPROVAL_REQUESTED,
                        f"step {step.id} ({step.action}) needs approval: responder approve {incident_id} {step.id}",
                        step=step.id,
                        data={"action": step.action, "description": step.description},
                    )
                    return self._outcome(incident_id, awaiting=step.id)
                if batch and self._depends_on(step, {p.step.id for p in batch}):
                    break
                try:
                    planned = self._plan_step(step, context, secrets)
                except PlaybookError as exc:
                    self._record_step(incident_id, step.id, StepOutcome.CONFIG_ERROR, str(exc))
                    return self._close(incident_id, playbook, IncidentStatus.CONFIG_ERROR)
                index += 1
                if planned.skipped:
                    self._record_step(incident_id, step.id, StepOutcome.SKIPPED, planned.skipped)
                    outputs[step.id] = {}
                    continue
                batch.append(planned)
            if not batch:
                continue
            batch_number += 1
            stop = self._run_batch(incident, playbook, batch, secrets, batch_number, outputs)
            if stop is IncidentStatus.BLOCKED:
                if self._wait_for_docker(incident_id, [p.step.id for p in batch], attempt):
                    return self._advance(incident, playbook, params, secrets, attempt + 1)
                stop = IncidentStatus.INTERRUPTED if self.cancel.is_set() else IncidentStatus.FAILED
            if stop is not None:
                return self._close(incident_id, playbook, stop)
        return self._close(incident_id, playbook, None)

    def _wait_for_docker(self, incident_id: str, batch_ids: list[str], attempt: int) -> bool:
        """dockerd was unreachable: the incident is `blocked` while it waits (with backoff) and the
        steps that could not run are tried again. False when the retries are spent or the run
        was cancelled while waiting."""
        delays = self.settings.docker_retry
        if attempt >= len(delays):
            self._event(
                incident_id,
                "docker_unavailable",
                f"docker still unavailable after {len(delays)} retries; giving up",
                data={"attempts": attempt},
            )
            return False
        delay = delays[attempt]
        self.timeline.set_status(incident_id, IncidentStatus.BLOCKED)
        self._event(
            incident_id,
            EventKind.INCIDENT_BLOCKED,
            f"docker unavailable on the target; retrying in {delay:g} s (retry {attempt + 1} of {len(delays)})",
            data={"retry": attempt + 1, "of": len(delays), "delay": delay},
        )
        if self.cancel.wait(delay):
            self.timeline.set_status(incident_id, IncidentStatus.RUNNING)
            return False
        self.timeline.reset_steps(
            incident_id, (StepOutcome.FAILED, StepOutcome.NOT_RUN), steps=tuple(batch_ids)
        )
        self.timeline.set_status(incident_id, IncidentStatus.RUNNING)
        return True

    def _run_batch(
        self,
        incident: Incident,
        playbook: Playbook,
        batch: list[PlannedStep],
        secrets: SecretValues,
        number: int,
        outputs: dict[str, dict[str, Any]],
    ) -> IncidentStatus | None:
        incident_id = incident.id
        ids = [p.step.id for p in batch]
        run_dir = self.settings.private_dir("runs", incident_id, f"{number:02d}-{ids[0]}")
        evidence_root = self.settings.private_dir("evidence")
        self.settings.private_dir("evidence", incident_id)
        if not self._strays_checked:  # crash leftovers: once per process, not on every batch
            self._strays_checked = True
            self._quarantine_strays(evidence_root)
        self._event(
            incident_id,
            EventKind.BATCH_STARTED,
            f"running {', '.join(ids)} in one Ansible run",
            data={"steps": ids, "private_data_dir": str(run_dir)},
        )
        secret_values = {
            p.step.id: {arg: secrets.values[name] for arg, name in p.secret_args.items()}
            for p in batch
            if p.secret_args
        }
        planned = {p.step.id: p for p in batch}
        # A step is `running` on the ledger from its play's start: after a crash the ledger tells
        # steps that were cut short from steps that never began.
        self.timeline.set_step(incident_id, ids[0], "running")
        # Steps are recorded as soon as the next step's play starts, so the timeline and the
        # terminal follow the run live; the last step waits for the run's end.
        live = Classifier(ids)
        finished: dict[str, IncidentStatus | None] = {}
        held: list[tuple[str, str, str]] = []  # (holder, host, container ID) once a claim fails

        def on_event(event: RunnerEvent) -> None:
            live.feed(event)
            if event.kind == "playbook_on_play_start" and event.step_id in planned:
                for earlier in ids[: ids.index(event.step_id)]:
                    if earlier not in finished:
                        result = live.steps[earlier]
                        result.finish()
                        finished[earlier] = self._finish_step(
                            incident_id, planned[earlier].step, result, outputs
                        )
                if event.step_id != ids[0]:
                    self.timeline.set_step(incident_id, event.step_id, "running")
            self._runner_event(incident_id, planned, event)
            if not held:
                self._claim_resolved(incident, event, held, planned)

        result = self.executor.run(
            Batch(
                incident_id=incident_id,
                name=f"{number:02d}",
                steps=[p.invocation() for p in batch],
                private_data_dir=run_dir,
                runbook_dirs=self.settings.runbook_dirs,
                context=self._ansible_context(incident_id),
                secret_values=secret_values,
                inventory=incident.inventory,
                limit=incident.host_limit,
                ansible_local_tmp=self.settings.private_dir("ansible-local"),
                target_env=self._target_env(incident_id),
            ),
            on_event,
            self.cancel,
        )
        stop = next((status for status in finished.values() if status is not None), None)
        for step_result in result.steps:
            step = planned[step_result.step_id].step
            if step.id in finished:
                continue
            if stop is not None:
                self._record_step(
                    incident_id, step.id, StepOutcome.NOT_RUN, "not run: an earlier step stopped the run"
                )
                continue
            stop = self._finish_step(incident_id, step, step_result, outputs)
        if held:
            holder, host, cid = held[0]
            self._event(
                incident_id,
                EventKind.CONTAINER_HELD,
                f"container {cid[:12]} on {host} is already handled by incident {holder}; this run "
                "stopped so that two incidents never act on it at once",
                host=host,
                data={"holder": holder, "container_id": cid},
            )
            self._event(
                holder,
                EventKind.DUPLICATE_INCIDENT,
                f"incident {incident_id} reached this incident's container {cid[:12]} on {host} "
                f"(as {incident.params.get('container')!r}) and stopped",
                host=host,
                data={"incident": incident_id, "container_id": cid},
            )
            return IncidentStatus.FAILED
        return stop

    def _claim_resolved(
        self,
        incident: Incident,
        event: RunnerEvent,
        held: list[tuple[str, str, str]],
        planned: Mapping[str, PlannedStep],
    ) -> None:
        """A module refused to act because another incident claimed the container on its host
        first (container_held): stop this run and name the holder. Once a step reports the full
        container ID it acted on, the claim is recorded on the controller too (inventory, host,
        ID) and, if the host's claim was taken over from a finished incident, that is said."""
        if not event.host:
            return
        if event.kind == "runner_on_failed" and event.result.get("reason") == EventKind.CONTAINER_HELD:
            holder = event.result.get("held_by")
            output = event.result.get("output")
            cid = output.get("container_id") if isinstance(output, dict) else None
            if isinstance(holder, str) and INCIDENT_ID.match(holder) and isinstance(cid, str):
                held.append((holder, event.host, cid))
                self.held_by = holder
                self.cancel.cancel(f"container {cid[:12]} on {event.host} is held by incident {holder}")
            return
        if event.kind != "runner_on_ok" or event.step_id is None or event.step_id not in planned:
            return
        action = self.catalog.get(planned[event.step_id].step.action)
        if action is None or action.target_output is None:  # the role acts on no container
            return
        facts = event.result.get("ansible_facts")
        output = facts.get("responder_output") if isinstance(facts, dict) else None
        cid = output.get(action.target_output) if isinstance(output, dict) else None
        if not isinstance(cid, str) or not _FULL_ID.fullmatch(cid):
            return
        previous = output.get("claimed_from") if isinstance(output, dict) else None
        if isinstance(previous, str) and INCIDENT_ID.match(previous):
            self._event(
                incident.id,
                EventKind.CONTAINER_CLAIMED,
                f"container {cid[:12]} on {event.host} was last handled by incident {previous}, which is "
                f"closed; anything it changed there is undone by `responder release {previous}`",
                host=event.host,
                data={"container_id": cid, "previous": previous},
            )
        holder = self.timeline.claim_container(
            incident.id, f"{incident.inventory or 'localhost'}|{event.host}|{cid}"
        )
        if holder is not None:
            held.append((holder, event.host, cid))
            self.held_by = holder
            self.cancel.cancel(f"container {cid[:12]} on {event.host} is held by incident {holder}")

    def _quarantine_strays(self, evidence_root: Path) -> None:
        """A fetch cut short by a crash leaves a .partial on the controller: move it aside and say
        so on the timeline of the incident it belonged to."""
        from responder.evidence import quarantine_stray_partials

        for owner, path, size in quarantine_stray_partials(evidence_root):
            try:
                self.timeline.incident(owner)
            except UsageError:
                continue
            self._event(
                owner,
                EventKind.EVIDENCE_QUARANTINED,
                f"stray partial file from an interrupted fetch moved to {path} ({size} bytes); "
                "it was never hashed or recorded as evidence",
                data={"path": str(path), "size": size},
            )

    def _finish_step(
        self, incident_id: str, step: Step, step_result: StepResult, outputs: dict[str, dict[str, Any]]
    ) -> IncidentStatus | None:
        """Record one step's outcome and evidence; returns the incident status it forces, if any."""
        host_outputs = {h: r.outputs for h, r in step_result.hosts.items()}
        self._collect_evidence(incident_id, step, step_result)
        merged = self._merge_outputs(step_result)
        outputs[step.id] = merged
        self._record_step(
            incident_id,
            step.id,
            step_result.outcome,
            step_result.message,
            merged,
            hosts={
                h: {"outcome": r.outcome, "message": r.message, "reason": r.reason, "changed": r.changed}
                for h, r in step_result.hosts.items()
            },
            host_outputs=host_outputs,
        )
        if step_result.outcome in _STOPPING:
            return _STOPPING[step_result.outcome]
        if step_result.outcome is StepOutcome.FAILED and step.on_failure is OnFailure.ABORT:
            failing = [h for h in step_result.hosts.values() if h.outcome is StepOutcome.FAILED]
            if failing and all(h.reason == "target_gone" for h in failing):
                return IncidentStatus.TARGET_GONE  # the container vanished: what was done is on the timeline
            if failing and all(h.reason == "docker_unavailable" for h in failing):
                return IncidentStatus.BLOCKED  # dockerd is down or restarting: wait and try again
            return IncidentStatus.FAILED
        return None

    def _runner_event(self, incident_id: str, planned: Mapping[str, PlannedStep], event: RunnerEvent) -> None:
        self.on_runner_event(event)
        step_id = event.step_id
        if step_id is None or step_id not in planned:
            return
        if event.kind == "playbook_on_play_start":
            step = planned[step_id].step
            self._event(
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
        self._event(
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

    def _collect_evidence(self, incident_id: str, step: Step, result: StepResult) -> None:
        step_id = step.id
        action = self.catalog.get(step.action)
        recorded = False
        for host, host_result in result.hosts.items():
            for warning in host_result.outputs.get("warnings") or []:
                self._event(incident_id, EventKind.STEP_WARNING, str(warning), step=step_id, host=host)
            # what the role declares (meta/responder.yml timeline:), and only its listed fields
            for declared in action.timeline if action else ():
                for message, fields in declared.events(host_result.outputs):
                    self._event(
                        incident_id,
                        declared.kind,
                        message,
                        step=step_id,
                        host=host,
                        data={**fields, "host": host},
                    )
            items = host_result.outputs.get("evidence")
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
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
                    self._event(incident_id, EventKind.EVIDENCE_PROBLEM, str(exc), step=step_id, host=host)
                    continue
                self.timeline.add_evidence(record)
                recorded = True
                match = record.sha256_source == record.sha256_controller
                self._event(
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

        if recorded:
            write_manifest(self.timeline, incident_id, self.settings.evidence_dir / incident_id)

    @staticmethod
    def _merge_outputs(result: StepResult) -> dict[str, Any]:
        """steps.<id>.outputs: the single host's outputs, or the first host's plus a per-host map."""
        if not result.hosts:
            return {}
        hosts = sorted(result.hosts)
        merged = dict(result.hosts[hosts[0]].outputs)
        if len(hosts) > 1:
            merged["by_host"] = {h: result.hosts[h].outputs for h in hosts}
        return merged

    # planning -------------------------------------------------------------------------------

    def _context(
        self, incident_id: str, playbook: Playbook, params: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "params": dict(params),
            "steps": {sid: {"outputs": out} for sid, out in outputs.items()},
            "incident": {"id": incident_id, "playbook": playbook.name},
        }

    def _target_env(self, incident_id: str) -> dict[str, str]:
        """Environment for the modules on each target (read by runbooks/module_utils).

        The claim variables let a module claim the container it resolved, on its host and before
        changing anything (module_utils claim_for_run): which incident this is, the incidents
        open now (their claims hold), and now, in incident-ID form (a claim by an incident that
        is newer than that also holds: this run cannot know whether it is still open)."""
        others = [i for i in self.timeline.open_incident_ids() if i != incident_id]
        return {
            "RESPONDER_DOCKER_TIMEOUT": f"{self.settings.docker_call_timeout:g}",
            "RESPONDER_INCIDENT": incident_id,
            "RESPONDER_CLAIMS_ROOT": self.settings.host_evidence_root,
            "RESPONDER_OPEN_INCIDENTS": ",".join(others),
            "RESPONDER_CLAIM_SINCE": incident_time_now(),
        }

    def _ansible_context(self, incident_id: str) -> dict[str, Any]:
        return {
            "incident": incident_id,
            "evidence_dir": str(self.settings.evidence_dir / incident_id),
            "host_evidence_root": self.settings.host_evidence_root,
        }

    @staticmethod
    def _depends_on(step: Step, batch_ids: set[str]) -> bool:
        refs: set[str] = set()
        stack: list[Any] = [dict(step.with_)]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif templating.is_template(value):
                refs |= templating.references(value).steps
        return bool(refs & batch_ids)

    def _plan_step(self, step: Step, context: Mapping[str, Any], secrets: SecretValues) -> PlannedStep:
        if step.when is not None and not templating.evaluate(step.when, context):
            return PlannedStep(step, {}, {}, skipped=f"skipped: `when: {step.when}` is false")
        action = self.catalog.get(step.action)
        problems: list[Problem] = []
        file = str(context["incident"]["playbook"])

        def problem_at(path: tuple[Any, ...], message: str, hint: str = "", key: bool = False) -> Problem:
            return Problem(file, step.line, None, message, ".".join(str(p) for p in path), hint)

        if action is None:
            raise PlaybookError([problem_at(("steps", step.id), f"unknown action {step.action!r}")])
        args: dict[str, Any] = {}
        secret_args: dict[str, str] = {}
        for key, value in step.with_.items():
            name = secret_param_name(value)
            if name is not None and name in secrets.values:
                secret_args[key] = name
                continue
            try:
                args[key] = templating.render_value(value, context)
            except Exception as exc:  # jinja raises many types; all mean "this value cannot be built"
                problems.append(problem_at(("steps", step.id, "with", key), f"cannot render: {exc}"))
        for name, option in action.options.items():  # argument_specs defaults are documentation to Ansible
            if name not in args and name not in secret_args and option.default is not None:
                args[name] = option.default
        problems += check_arguments(action, args, problem_at, lambda v: False, ("steps", step.id, "with"))
        problems = [
            p for p in problems if not any(p.message.endswith(f"argument {a!r}") for a in secret_args)
        ]
        if problems:
            raise PlaybookError(problems)
        return PlannedStep(step, args, secret_args)

    def _dry_batch(
        self,
        request: RunRequest,
        pending: list[PlannedStep],
        report: list[DryRunStep],
        outputs: dict[str, dict[str, Any]],
        scratch: Path,
    ) -> None:
        run_dir = ensure_private_dir(scratch / f"{len(report):02d}", self.settings.data_dir)
        result = self.executor.run(
            Batch(
                incident_id="DRY-RUN",
                name="dry-run",
                steps=[p.invocation() for p in pending],
                private_data_dir=run_dir,
                runbook_dirs=self.settings.runbook_dirs,
                context={
                    "incident": "INC-00000000-000000-0000",
                    "evidence_dir": str(scratch / "evidence"),
                    "host_evidence_root": self.settings.host_evidence_root,
                },
                secret_values={
                    p.step.id: {a: request.secrets.values[n] for a, n in p.secret_args.items()}
                    for p in pending
                    if p.secret_args
                },
                inventory=request.inventory,
                limit=request.limit,
                check_mode=True,
                ansible_local_tmp=self.settings.private_dir("ansible-local"),
                target_env=self._target_env(DRY_RUN_INCIDENT),
            ),
            self.on_runner_event,
            self.cancel,
        )
        by_id = {r.step_id: r for r in result.steps}
        for p in pending:
            step_result = by_id.get(p.step.id)
            outputs[p.step.id] = self._merge_outputs(step_result) if step_result else {}
            report.append(DryRunStep(p, step_result))

    # bookkeeping ----------------------------------------------------------------------------

    def _playbook_for(self, incident: Incident, check_hash: bool = True) -> Playbook:
        from responder.playbook.parse import load_playbook

        playbook = load_playbook(Path(incident.playbook_path), self.catalog)
        if check_hash and playbook.sha256 != incident.playbook_sha256:
            raise StateError(
                f"{incident.playbook_path} changed since {incident.id} started (sha256 "
                f"{incident.playbook_sha256[:12]} -> {playbook.sha256[:12]}); restore it or start a new incident"
            )
        return playbook

    def _record_step(
        self,
        incident_id: str,
        step_id: str,
        outcome: StepOutcome,
        message: str,
        outputs: Mapping[str, Any] | None = None,
        hosts: Mapping[str, Any] | None = None,
        host_outputs: Mapping[str, Any] | None = None,
    ) -> None:
        self.timeline.set_step(incident_id, step_id, outcome, outputs)
        text = f"step {step_id}: {outcome}" + (f": {message}" if message else "")
        data: dict[str, Any] = {"outcome": outcome}
        if hosts:
            data["hosts"] = dict(hosts)
        if host_outputs:
            data["outputs"] = dict(host_outputs)
        self._event(incident_id, EventKind.STEP_FINISHED, text, step=step_id, data=data)

    def _close(self, incident_id: str, playbook: Playbook, stop: IncidentStatus | None) -> RunOutcome:
        ledger = self.timeline.steps(incident_id)
        for step in playbook.steps:
            if step.id not in ledger:
                self._record_step(incident_id, step.id, StepOutcome.NOT_RUN, "not run")
        ledger = self.timeline.steps(incident_id)
        if stop is None:
            failed = [sid for sid, (status, _) in ledger.items() if status == StepOutcome.FAILED]
            stop = IncidentStatus.FAILED if failed else IncidentStatus.SUCCEEDED
        tally = tally_mapping(
            {sid: status for sid, (status, _) in ledger.items()}, [s.id for s in playbook.steps]
        )
        self.timeline.set_status(incident_id, stop)
        self._event(
            incident_id,
            EventKind.INCIDENT_CLOSED
            if stop is not IncidentStatus.INTERRUPTED
            else EventKind.INCIDENT_INTERRUPTED,
            f"incident {stop}"
            + (f" (the container is already handled by incident {self.held_by})" if self.held_by else "")
            + f": {tally.line()}",
            data={
                "status": stop,
                **tally.as_dict(),
                "steps": {sid: status for sid, (status, _) in ledger.items()},
                **({"held_by": self.held_by} if self.held_by else {}),
            },
        )
        return self._outcome(incident_id)

    def _outcome(self, incident_id: str, awaiting: str | None = None) -> RunOutcome:
        incident = self.timeline.incident(incident_id)
        steps = {sid: status for sid, (status, _) in self.timeline.steps(incident_id).items()}
        return RunOutcome(incident_id, incident.status, steps, awaiting)

    def _event(
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
        event = self.timeline.append(incident_id, kind, message, step=step, host=host, actor=actor, data=data)
        self.on_timeline(event)
        return event


def _merge_attempts(attempts: list[dict[str, Any]], gather: Mapping[str, str]) -> dict[str, Any]:
    """Per host, the last attempt's outputs; for each list output named in `gather`, the entries of
    every attempt, the earliest record of each key first (it saw the state before anything changed)."""
    merged: dict[str, Any] = {}
    for outputs in attempts:
        for host, recorded in outputs.items():
            if isinstance(recorded, dict):
                merged[host] = dict(recorded)
    for name, key in gather.items():
        for host in merged:
            seen: dict[Any, Any] = {}
            for outputs in attempts:
                items = (outputs.get(host) or {}).get(name) if isinstance(outputs.get(host), dict) else None
                for item in items if isinstance(items, list) else []:
                    ident = item.get(key) if isinstance(item, dict) else None
                    if ident is not None and ident not in seen:
                        seen[ident] = item
            if seen:
                merged[host][name] = list(seen.values())
    return merged
