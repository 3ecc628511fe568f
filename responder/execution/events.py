"""ansible-runner's event dicts become typed events here, at the edge, and outcomes are
classified from events rather than exit codes: ansible-playbook exits 4 both for an unreachable
host and for a playbook that does not parse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

STEP_PLAY_PREFIX = "responder:"


class StepOutcome(StrEnum):
    """What one step came to on a host, or overall."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # A fleet step that succeeded on some of its containers and failed on others.
    PARTIAL = "partial"
    UNREACHABLE = "host_unreachable"
    CONFIG_ERROR = "config_error"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"


# Worst first: a step's overall outcome is the worst of its hosts'.
SEVERITY_ORDER = [
    StepOutcome.CONFIG_ERROR,
    StepOutcome.INTERRUPTED,
    StepOutcome.TIMED_OUT,
    StepOutcome.UNREACHABLE,
    StepOutcome.FAILED,
    StepOutcome.PARTIAL,
    StepOutcome.NOT_RUN,
    StepOutcome.SUCCEEDED,
    StepOutcome.SKIPPED,
]

_CONFIG_ERROR_MARKERS = (
    "couldn't resolve module/action",
    "was not found in configured module paths",
    "validation of arguments failed",
    "the role '",
    "unable to retrieve file contents",
    "template error",
)


@dataclass(frozen=True)
class RunnerEvent:
    """One ansible-runner event, reduced to what responder reads."""

    kind: str
    counter: int
    uuid: str
    created: str
    play: str | None
    task: str | None
    action: str | None
    host: str | None
    role: str | None
    result: Mapping[str, Any] = field(default_factory=dict)
    stdout: str = ""
    ignore_errors: bool = False

    @property
    def step_id(self) -> str | None:
        """The step whose play emitted the event."""
        if self.play and self.play.startswith(STEP_PLAY_PREFIX):
            return self.play[len(STEP_PLAY_PREFIX) :]
        return None

    @property
    def message(self) -> str:
        """The result's message (msg, stderr or an exception)."""
        msg = self.result.get("msg") or self.result.get("reason") or ""
        return str(msg) if not isinstance(msg, str) else msg

    @property
    def looks_like_config_error(self) -> bool:
        """Whether the failure is the playbook's fault (unknown module, broken role)."""
        text = self.message.lower()
        return any(marker in text for marker in _CONFIG_ERROR_MARKERS)


def from_runner(raw: Mapping[str, Any]) -> RunnerEvent:
    """A RunnerEvent from ansible-runner's event dict."""
    data = raw.get("event_data") or {}
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    return RunnerEvent(
        kind=str(raw.get("event", "")),
        counter=int(raw.get("counter", 0) or 0),
        uuid=str(raw.get("uuid", "")),
        created=str(raw.get("created", "")),
        play=data.get("play"),
        task=data.get("task"),
        action=data.get("task_action") or data.get("resolved_action"),
        host=data.get("host") or data.get("remote_addr"),
        role=data.get("role"),
        result=res or {},
        stdout=str(raw.get("stdout", "") or ""),
        ignore_errors=bool(data.get("ignore_errors")),
    )


def fleet_failures(outputs: Mapping[str, Any]) -> list[str]:
    """The containers a fleet step failed on (empty for a single-container step)."""
    if not outputs.get("fleet"):
        return []
    failed = outputs.get("failed")
    return [str(c) for c in failed] if isinstance(failed, list) else []


def failed_line(outputs: Mapping[str, Any], failed: list[str]) -> str:
    """`2 of 50 containers failed: web-7 (gone: no such container ...), ...`."""
    found = outputs.get("targets")
    targets: Mapping[str, Any] = found if isinstance(found, dict) else {}
    total = len(targets)
    parts = []
    for cid in failed[:5]:
        entry = targets.get(cid) or {}
        parts.append(
            f"{entry.get('container_name') or cid[:12]} ({entry.get('message') or entry.get('reason') or 'failed'})"
        )
    more = f", and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {total} containers failed: {', '.join(parts)}{more}"


@dataclass
class HostResult:
    """One step on one host."""

    outcome: StepOutcome = StepOutcome.NOT_RUN
    message: str = ""
    reason: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    tasks_ok: int = 0


@dataclass
class StepResult:
    """One step across its hosts; its outcome is the worst of theirs."""

    step_id: str
    started: bool = False
    hosts: dict[str, HostResult] = field(default_factory=dict)
    outcome: StepOutcome = StepOutcome.NOT_RUN
    message: str = ""

    def host(self, name: str) -> HostResult:
        """The result for a host, created on first use."""
        return self.hosts.setdefault(name, HostResult())

    def finish(self) -> None:
        """Settle the step's outcome and message from its hosts."""
        if not self.hosts:
            if self.outcome is StepOutcome.NOT_RUN and self.started:
                self.outcome = StepOutcome.FAILED
                self.message = self.message or "no hosts matched the step's host pattern"
            return
        worst = min((h.outcome for h in self.hosts.values()), key=SEVERITY_ORDER.index)
        if self.outcome not in (StepOutcome.INTERRUPTED, StepOutcome.TIMED_OUT, StepOutcome.CONFIG_ERROR):
            self.outcome = worst
        if not self.message:
            self.message = next(
                (h.message for h in self.hosts.values() if h.outcome is worst and h.message), ""
            )


class Classifier:
    """Folds a run's events into one StepResult per step, host by host."""

    def __init__(self, step_ids: list[str]) -> None:
        self.steps = {sid: StepResult(sid) for sid in step_ids}
        self.playbook_error = ""
        self.plays_started = 0

    def feed(self, event: RunnerEvent) -> None:
        """Take one runner event into the step and host it belongs to."""
        step = self.steps.get(event.step_id or "")
        if event.kind == "playbook_on_play_start":
            self.plays_started += 1
            if step:
                step.started = True
            return
        if "ERROR!" in event.stdout or "[ERROR]" in event.stdout:
            self.playbook_error = self.playbook_error or event.stdout.strip()
        if step is None:
            return
        if event.kind == "playbook_on_no_hosts_matched":
            step.message = "no hosts matched the step's host pattern"
            return
        if not event.host:
            return
        host = step.host(event.host)
        if event.kind == "runner_on_ok":
            host.tasks_ok += 1
            host.changed = host.changed or bool(event.result.get("changed"))
            facts = event.result.get("ansible_facts") or {}
            if isinstance(facts.get("responder_output"), dict):
                host.outputs = dict(facts["responder_output"])
            if host.outcome is StepOutcome.NOT_RUN:
                host.outcome = StepOutcome.SUCCEEDED
            failed = fleet_failures(host.outputs) if event.action and "responder_" in event.action else []
            if failed and host.outcome is StepOutcome.SUCCEEDED:
                host.outcome = StepOutcome.PARTIAL
                host.reason = "targets_failed"
                host.message = failed_line(host.outputs, failed)
        elif event.kind == "runner_on_failed" and not event.ignore_errors:
            host.outcome = StepOutcome.CONFIG_ERROR if event.looks_like_config_error else StepOutcome.FAILED
            host.message = event.message
            host.reason = str(event.result.get("reason", ""))
            output = event.result.get("output")
            if isinstance(output, dict):
                host.outputs = dict(output)
            if "timed out" in host.message.lower() or "expected time frame" in host.message.lower():
                host.outcome = StepOutcome.TIMED_OUT
        elif event.kind == "runner_on_unreachable":
            host.outcome = StepOutcome.UNREACHABLE
            host.message = event.message
        elif event.kind == "runner_on_skipped" and host.outcome is StepOutcome.NOT_RUN:
            host.outcome = StepOutcome.SUCCEEDED

    def result(self, *, canceled: str | None, rc: int | None) -> list[StepResult]:
        """Every step's result once the run has ended (cancelled, failed or not)."""
        results = list(self.steps.values())
        if self.plays_started == 0 and canceled and results:
            # Stopped (a signal, the server's drain, a timeout) while ansible-playbook was still
            # starting: nothing ran, and nothing is wrong with the playbook. The first step is
            # the one that was cut short, so the incident is interrupted (and resumable).
            first = results[0]
            first.outcome = StepOutcome.TIMED_OUT if canceled == "timeout" else StepOutcome.INTERRUPTED
            first.message = (
                "step exceeded its timeout before Ansible started it"
                if canceled == "timeout"
                else "run interrupted before Ansible started the step"
            )
            for step in results:
                step.finish()
            return results
        if self.plays_started == 0 and (rc or canceled is None):
            for step in results:
                step.outcome = StepOutcome.CONFIG_ERROR
                step.message = (
                    self.playbook_error or f"ansible-playbook failed before any step started (rc={rc})"
                )
            return results
        current = None
        for step in results:
            if step.started:
                current = step
        failed_hosts = any(
            h.outcome not in (StepOutcome.SUCCEEDED, StepOutcome.NOT_RUN)
            for s in results
            for h in s.hosts.values()
        )
        if rc and not canceled and not failed_hosts and current is not None:
            # ansible-playbook gave up without a failed task: a role that does not load, a module
            # that does not exist. That is the playbook's fault, not the host's.
            current.outcome = StepOutcome.CONFIG_ERROR
            current.message = self.playbook_error or f"ansible-playbook exited {rc} without a failed task"
            for host in current.hosts.values():
                host.outcome, host.message = StepOutcome.CONFIG_ERROR, current.message
        for step in results:
            if canceled and step is current:
                step.outcome = StepOutcome.TIMED_OUT if canceled == "timeout" else StepOutcome.INTERRUPTED
                step.message = "step exceeded its timeout" if canceled == "timeout" else "run interrupted"
                for host in step.hosts.values():
                    if host.outcome in (StepOutcome.SUCCEEDED, StepOutcome.NOT_RUN):
                        host.outcome = step.outcome
            step.finish()
        return results
