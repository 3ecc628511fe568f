"""The run loop: opens incidents, batches steps between approval gates, hands each batch to an
Executor, and decides what each result means for the incident (continue, stop, wait for dockerd,
pause at a gate). What to run is decided in `planning`; what is written, in `recording`.

The engine knows no action by name: steps name roles, roles declare their arguments and what
they report (meta/responder.yml), and results come back as typed events. Only the CLI (or the
server) talks to people.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from responder import approvals, fleet_view
from responder.catalog import Catalog
from responder.claims import ClaimWatch
from responder.errors import PlaybookError, StateError
from responder.execution.events import Classifier, RunnerEvent, StepOutcome, StepResult
from responder.execution.runner import Batch, CancelToken, Executor
from responder.ids import default_actor
from responder.params import SecretValues
from responder.planning import (
    DRY_RUN_INCIDENT,
    DryRunStep,
    PlannedStep,
    RunRequest,
    ansible_context,
    depends_on,
    fleet_playbook,
    found_before,
    merge_outputs,
    pinned_targets,
    plan_step,
    step_context,
    target_argument,
    target_env,
)
from responder.playbook.model import Approval, OnFailure, Playbook, Step
from responder.recording import Recorder, RunOutcome
from responder.settings import Settings
from responder.targets import TARGETS_STEP
from responder.timeline import Event, Incident, Timeline
from responder.vocabulary import EventKind, IncidentStatus

# What callers import from here: the engine's public surface.
__all__ = ["DRY_RUN_INCIDENT", "DryRunStep", "Engine", "RunOutcome", "RunRequest", "default_actor"]

_FINAL_STEP = {s.value for s in StepOutcome} - {StepOutcome.NOT_RUN.value}
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_STOPPING = {
    StepOutcome.CONFIG_ERROR: IncidentStatus.CONFIG_ERROR,
    StepOutcome.UNREACHABLE: IncidentStatus.HOST_UNREACHABLE,
    StepOutcome.TIMED_OUT: IncidentStatus.TIMED_OUT,
    StepOutcome.INTERRUPTED: IncidentStatus.INTERRUPTED,
}


class Engine:
    """Runs incidents: start, approve, deny, resume, release, abandon and dry-run."""

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
        self.record = Recorder(timeline, settings, catalog, on_timeline)
        self.claims = ClaimWatch(self.record, catalog, self.cancel)
        self._strays_checked = False

    # public entry points --------------------------------------------------------------------

    def start(self, request: RunRequest) -> RunOutcome:
        """Open an incident and run the playbook up to its end or its first approval gate."""
        playbook = fleet_playbook(request.playbook, request.params, request.max_targets)
        gated = [s.id for s in playbook.steps if s.approval is Approval.REQUIRED]
        chosen = gated if "all" in request.pre_approved else list(request.pre_approved)
        unknown = [s for s in request.pre_approved if s != "all" and s not in gated]
        if unknown:
            raise StateError(f"--approve names steps without an approval gate: {', '.join(unknown)}")
        self._check_private_dirs()
        for value in request.secrets.values.values():
            self.timeline.redactor.add(value)
        incident = self.record.open(request)
        for step_id in chosen:
            self.record.event(
                incident.id,
                EventKind.APPROVAL_GRANTED,
                f"step {step_id} approved up front by {request.actor}",
                step=step_id,
                actor=request.actor,
                data={"decision": "approved", "reason": "approved at start"},
            )
        return self._advance(incident, playbook, request.params, request.secrets)

    def approve(
        self,
        incident_id: str,
        steps: list[str] | None,
        actor: str,
        reason: str = "",
        via: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Record `actor`'s approval of the named gated steps (None: every remaining gate), under
        the rules of responder.approvals, checked and written in one transaction."""
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.AWAITING_APPROVAL:
            raise StateError(f"incident {incident_id} is {incident.status}, not awaiting approval")
        playbook = self.playbook_for(incident)
        done = self.timeline.steps(incident_id)
        gated = [s.id for s in playbook.steps if s.approval is Approval.REQUIRED and s.id not in done]
        chosen = gated if steps is None else steps
        for step_id in chosen:
            if step_id not in gated:
                raise StateError(
                    f"step {step_id!r} of {incident_id} is not waiting for approval (gated: {', '.join(gated) or 'none'})"
                )
        for event in approvals.grant(self.timeline, incident, playbook, chosen, actor, reason, via):
            self.record.on_event(event)
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
        """Continue an incident paused at an approval gate, once its gate was approved."""
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.AWAITING_APPROVAL:
            raise StateError(
                f"incident {incident_id} is {incident.status}; only a paused incident can continue"
            )
        self._take_secrets(incident, secrets)
        self._check_private_dirs()
        playbook = self.playbook_for(incident)
        if not self.timeline.transition(
            incident_id, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.RUNNING
        ):
            raise StateError(f"incident {incident_id} was resumed or closed by someone else meanwhile")
        self.record.event(incident_id, EventKind.INCIDENT_RESUMED, "incident resumed after approval")
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
        playbook = self.playbook_for(incident)
        if not self.timeline.transition(incident_id, IncidentStatus.INTERRUPTED, IncidentStatus.RUNNING):
            raise StateError(f"incident {incident_id} was resumed by someone else meanwhile")
        again = self.timeline.reset_steps(
            incident_id, (StepOutcome.INTERRUPTED, StepOutcome.NOT_RUN, StepOutcome.TIMED_OUT, "running")
        )
        self.record.event(
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
            return self.record.outcome(incident_id)
        for step_id, (status, _) in self.timeline.steps(incident_id).items():
            if status == "running":
                self.record.step(incident_id, step_id, StepOutcome.INTERRUPTED, reason)
        self.record.event(incident_id, EventKind.RUN_ABANDONED, reason)
        playbook = self.playbook_for(incident, check_hash=False)
        return self.record.close(incident_id, playbook, IncidentStatus.INTERRUPTED, self.claims.held_by)

    def deny(self, incident_id: str, actor: str, reason: str = "", via: Any = None) -> None:
        """Refuse the step waiting at the gate: the incident ends `denied`, the reason on the timeline."""
        incident = self.timeline.incident(incident_id)
        if incident.status is not IncidentStatus.AWAITING_APPROVAL:
            raise StateError(f"incident {incident_id} is {incident.status}, not awaiting approval")
        step = incident.next_step
        # Claim it first (awaiting -> running) so a concurrent approval cannot resume it.
        if not self.timeline.transition(
            incident_id, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.RUNNING
        ):
            raise StateError(f"incident {incident_id} was resumed or closed by someone else meanwhile")
        self.record.event(
            incident_id,
            EventKind.APPROVAL_DENIED,
            f"step {step} denied by {actor}" + (f": {reason}" if reason else ""),
            step=step,
            actor=actor,
            data={"decision": "denied", "reason": reason, **({"via": dict(via)} if via else {})},
        )
        playbook = self.playbook_for(incident, check_hash=False)
        self.record.close(incident_id, playbook, IncidentStatus.DENIED, self.claims.held_by)

    def release(
        self, incident_id: str, actor: str, reason: str, container: str | None = None, via: Any = None
    ) -> RunOutcome:
        """Reverse containment (responder.release), on request only; `container`: one of a fleet."""
        from responder.release import release

        return release(self, incident_id, actor, reason, container, via)

    def dry_run(self, request: RunRequest) -> list[DryRunStep]:
        """Plan every step and run its modules in check mode; nothing changes or is recorded."""
        from responder.dry_run import dry_run

        return dry_run(
            request,
            self.settings,
            self.catalog,
            self.executor,
            self.timeline.open_incident_ids(),
            self.on_runner_event,
            self.cancel,
        )

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
        approvers = approvals.approvers_by_step(self.timeline.events(incident_id))
        approved = {s.id for s in playbook.steps if approvals.count(s, approvers.get(s.id, [])).satisfied}
        steps = [s for s in playbook.steps if ledger.get(s.id, ("", {}))[0] not in _FINAL_STEP]
        batch_number = sum(1 for e in self.timeline.events(incident_id) if e.kind == EventKind.BATCH_STARTED)
        index = 0
        while index < len(steps):
            batch: list[PlannedStep] = []
            while index < len(steps):
                step = steps[index]
                context = step_context(incident_id, playbook, params, outputs)
                if step.approval is Approval.REQUIRED and step.id not in approved:
                    if batch:
                        break
                    if self._skipped_by_when(incident_id, step, context):
                        outputs[step.id] = {}
                        index += 1
                        continue  # a gate whose step will not run asks nobody
                    self.timeline.set_status(incident_id, IncidentStatus.AWAITING_APPROVAL, next_step=step.id)
                    self.record.event(
                        incident_id,
                        EventKind.APPROVAL_REQUESTED,
                        f"step {step.id} ({step.action}) needs approval: responder approve {incident_id} {step.id}",
                        step=step.id,
                        data={"action": step.action, "description": step.description},
                    )
                    return self.record.outcome(incident_id, awaiting=step.id)
                if batch and depends_on(step, {p.step.id for p in batch}):
                    break
                try:
                    planned = plan_step(
                        step, context, secrets, self.catalog, self._target_arg(step, playbook)
                    )
                except PlaybookError as exc:
                    self.record.step(incident_id, step.id, StepOutcome.CONFIG_ERROR, str(exc))
                    return self.record.close(
                        incident_id, playbook, IncidentStatus.CONFIG_ERROR, self.claims.held_by
                    )
                index += 1
                if planned.skipped:
                    self.record.step(incident_id, step.id, StepOutcome.SKIPPED, planned.skipped)
                    outputs[step.id] = {}
                    continue
                batch.append(planned)
            if not batch:
                continue
            batch_number += 1
            stop = self.run_batch(incident, playbook, batch, secrets, batch_number, outputs)
            if stop is IncidentStatus.BLOCKED:
                if self._wait_for_docker(incident_id, [p.step.id for p in batch], attempt):
                    return self._advance(incident, playbook, params, secrets, attempt + 1)
                stop = IncidentStatus.INTERRUPTED if self.cancel.is_set() else IncidentStatus.FAILED
            if stop is not None:
                return self.record.close(incident_id, playbook, stop, self.claims.held_by)
        return self.record.close(incident_id, playbook, None, self.claims.held_by)

    def _skipped_by_when(self, incident_id: str, step: Step, context: Mapping[str, Any]) -> bool:
        """A gated step whose `when:` is already false is skipped, not put to an approver."""
        from responder.playbook import templating

        try:
            skip = step.when is not None and not templating.evaluate(step.when, context)
        except Exception:
            return False
        if skip:
            self.record.step(
                incident_id, step.id, StepOutcome.SKIPPED, f"`when: {step.when}` is false; no approval needed"
            )
        return skip

    @staticmethod
    def _target_arg(step: Step, playbook: Playbook) -> str | None:
        """In a fleet incident (its first step resolves the targets), the argument of `step` that
        each host fills with its own containers."""
        if not playbook.steps or playbook.steps[0].id != TARGETS_STEP:
            return None
        return target_argument(step, playbook)

    def _pinned(self, incident_id: str) -> dict[str, list[str]]:
        """Each host's containers as recorded so far (for steps after the first Ansible run)."""
        return pinned_targets(
            (e.step, e.data["outputs"])
            for e in self.timeline.events(incident_id)
            if e.kind == EventKind.STEP_FINISHED and e.step and isinstance(e.data.get("outputs"), dict)
        )

    def _wait_for_docker(self, incident_id: str, batch_ids: list[str], attempt: int) -> bool:
        """dockerd was unreachable: the incident is `blocked` while it waits (with backoff) and the
        steps that could not run are tried again. False when the retries are spent or the run
        was cancelled while waiting."""
        delays = self.settings.docker_retry
        if not self.record.blocked(incident_id, attempt, delays):
            return False
        delay = delays[attempt]
        if self.cancel.wait(delay):
            self.timeline.set_status(incident_id, IncidentStatus.RUNNING)
            return False
        self.timeline.reset_steps(
            incident_id, (StepOutcome.FAILED, StepOutcome.NOT_RUN), steps=tuple(batch_ids)
        )
        self.timeline.set_status(incident_id, IncidentStatus.RUNNING)
        return True

    def run_batch(
        self,
        incident: Incident,
        playbook: Playbook,
        batch: list[PlannedStep],
        secrets: SecretValues,
        number: int,
        outputs: dict[str, dict[str, Any]],
    ) -> IncidentStatus | None:
        """Run consecutive steps in one Ansible run, recording each step as the next one starts;
        returns the status the batch forces on the incident, if any."""
        incident_id = incident.id
        ids = [p.step.id for p in batch]
        run_dir = self.settings.private_dir("runs", incident_id, f"{number:02d}-{ids[0]}")
        evidence_root = self.settings.private_dir("evidence")
        self.settings.private_dir("evidence", incident_id)
        if not self._strays_checked:  # crash leftovers: once per process, not on every batch
            self._strays_checked = True
            self.record.quarantine_strays(evidence_root)
        self.record.event(
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
        # `running` from its play's start: after a crash, cut short is told from never begun.
        self.timeline.set_step(incident_id, ids[0], "running")
        # Steps are recorded as soon as the next step's play starts, so the timeline and the
        # terminal follow the run live; the last step waits for the run's end.
        live = Classifier(ids)
        finished: dict[str, IncidentStatus | None] = {}
        self.claims.held = []

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
            self.on_runner_event(event)
            self.record.runner_event(incident_id, planned, event)
            self.claims.watch(incident.id, event, planned)

        result = self.executor.run(
            Batch(
                incident_id=incident_id,
                name=f"{number:02d}",
                steps=[p.invocation() for p in batch],
                private_data_dir=run_dir,
                runbook_dirs=self.settings.runbook_dirs,
                context={**ansible_context(self.settings, incident_id), "targets": self._pinned(incident_id)},
                secret_values=secret_values,
                inventory=incident.inventory,
                limit=incident.host_limit,
                ansible_local_tmp=self.settings.private_dir("ansible-local"),
                target_env=target_env(self.settings, incident_id, self.timeline.open_incident_ids()),
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
                self.record.step(incident_id, step.id, StepOutcome.NOT_RUN, "an earlier step stopped the run")
                continue
            stop = self._finish_step(incident_id, step, step_result, outputs)
        if self.claims.held:
            self.record.held(incident_id, *self.claims.held[0])
            return IncidentStatus.FAILED
        return stop

    def _finish_step(
        self, incident_id: str, step: Step, step_result: StepResult, outputs: dict[str, dict[str, Any]]
    ) -> IncidentStatus | None:
        """Record one step's outcome and evidence; returns the incident status it forces, if any."""
        host_outputs = {h: r.outputs for h, r in step_result.hosts.items()}
        self.record.collect(incident_id, step, step_result)
        merged = merge_outputs(step_result)
        outputs[step.id] = merged
        self.record.step(
            incident_id,
            step.id,
            step_result.outcome,
            fleet_view.step_line(host_outputs) or step_result.message,
            merged,
            hosts={
                h: {"outcome": r.outcome, "message": r.message, "reason": r.reason, "changed": r.changed}
                for h, r in step_result.hosts.items()
            },
            host_outputs=host_outputs,
            action=step.action,
        )
        if step_result.outcome in _STOPPING:
            return _STOPPING[step_result.outcome]
        if step_result.outcome is StepOutcome.FAILED and step.on_failure is OnFailure.ABORT:
            failing = [h for h in step_result.hosts.values() if h.outcome is StepOutcome.FAILED]
            if failing and all(h.reason == "target_gone" for h in failing):
                # Never found by any step: a wrong name, not a container that vanished mid-run.
                return IncidentStatus.TARGET_GONE if found_before(outputs, step.id) else IncidentStatus.FAILED
            if failing and all(h.reason == "docker_unavailable" for h in failing):
                return IncidentStatus.BLOCKED  # dockerd is down or restarting: wait and try again
            return IncidentStatus.FAILED
        return None

    # bookkeeping ----------------------------------------------------------------------------

    def playbook_for(self, incident: Incident, check_hash: bool = True) -> Playbook:
        """The incident's playbook, refused if it changed since the incident started (unless told not to check)."""
        from responder.playbook.parse import load_playbook

        playbook = load_playbook(Path(incident.playbook_path), self.catalog)
        if check_hash and playbook.sha256 != incident.playbook_sha256:
            raise StateError(
                f"{incident.playbook_path} changed since {incident.id} started (sha256 "
                f"{incident.playbook_sha256[:12]} -> {playbook.sha256[:12]}); restore it or start a new incident"
            )
        cap = incident.trigger.get("max_targets")
        return fleet_playbook(playbook, incident.params, cap if isinstance(cap, int) else None)
