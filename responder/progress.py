"""What people see in the terminal: live progress, the dry-run plan, an incident's timeline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from responder import fleet_view
from responder.evidence_watch import EvidenceWatch
from responder.execution.events import RunnerEvent, StepOutcome
from responder.exit_codes import step_exit_code
from responder.outcomes import tally_mapping
from responder.targets import TARGETS_STEP
from responder.vocabulary import EventKind

if TYPE_CHECKING:
    from responder.catalog import Catalog
    from responder.engine import DryRunStep, RunRequest
    from responder.playbook.model import Playbook
    from responder.timeline import Event, Timeline

_MARK = {
    "succeeded": "ok  ",
    "skipped": "skip",
    "not_run": "--  ",
}


class Progress:
    """Prints timeline events as they are written; runner events only feed the task lines.

    A step that runs long shows life: on a terminal, a status line with the elapsed time (and the
    evidence bytes written so far and their rate, where they can be seen), rewritten every TICK
    seconds; otherwise a line every `quiet_tick` seconds (QUIET_TICK unless set). `verbose` also
    prints Ansible's own output for each event (debugging a role without reading `runs/`)."""

    TICK = 1.0
    QUIET_TICK = 30.0

    def __init__(
        self,
        out: IO[str],
        quiet: bool = False,
        verbose: bool = False,
        watch: EvidenceWatch | None = None,
        quiet_tick: float | None = None,
    ) -> None:
        self.out = out
        self.quiet = quiet
        self.verbose = verbose
        self.watch = watch  # bytes and rate of evidence being written, where it can be seen
        self.quiet_tick = quiet_tick  # None: QUIET_TICK
        self._incident = ""
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}  # step -> monotonic start
        self._status_shown = False
        self._ticker: threading.Thread | None = None
        isatty = getattr(out, "isatty", None)
        self._tty = bool(isatty and isatty())

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._status_shown:
                self.out.write("\r\x1b[K")  # the status line gives way to the event
                self._status_shown = False
            print(text, file=self.out, flush=True)

    def _started(self, step: str) -> None:
        with self._lock:
            self._running[step] = time.monotonic()
            if self._ticker is None and not self.quiet:
                self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
                self._ticker.start()

    def _finished(self, step: str) -> None:
        with self._lock:
            self._running.pop(step, None)

    def _tick(self) -> None:
        last_line = time.monotonic()
        while True:
            time.sleep(self.TICK)
            with self._lock:
                if not self._running:
                    continue
                now = time.monotonic()
                shown = ", ".join(f"{s} {now - t:.0f} s" for s, t in self._running.items())
                written = self.watch.describe(self._incident, now) if self.watch and self._incident else ""
                shown += f" ({written})" if written else ""
                if self._tty:
                    self.out.write(f"\r\x1b[K  ... running: {shown}")
                    self.out.flush()
                    self._status_shown = True
                elif now - last_line >= (self.quiet_tick or self.QUIET_TICK):
                    print(f"  ... still running: {shown}", file=self.out, flush=True)
                    last_line = now

    def timeline_event(self, event: Event) -> None:
        """Print a timeline event as the run goes (steps, task results, decisions)."""
        kind = event.kind
        if kind == EventKind.INCIDENT_OPENED:
            self._print(f"{event.incident_id} opened: {event.message}")
        elif kind == EventKind.STEP_STARTED:
            self._incident = event.incident_id
            self._print(f"> {event.step}: started ({event.data.get('action')})")
            self._started(str(event.step))
        elif kind == EventKind.TASK_RESULT:
            status = event.data.get("status", "")
            self._print(
                f"    {event.host:<20} {status:<10} {event.data.get('task')}"
                + (f" -- {event.message.split(': ', 2)[-1]}" if status in ("failed", "unreachable") else "")
            )
        elif kind == EventKind.STEP_FINISHED:
            self._finished(str(event.step))
            outcome = event.data.get("outcome", "")
            mark = _MARK.get(outcome, "FAIL")
            self._print(f"[{mark}] {event.message}")
        elif kind in (
            EventKind.EVIDENCE_RECORDED,
            EventKind.EVIDENCE_PROBLEM,
            EventKind.APPROVAL_REQUESTED,
            EventKind.APPROVAL_GRANTED,
            EventKind.APPROVAL_DENIED,
            EventKind.INCIDENT_CLOSED,
            EventKind.INCIDENT_INTERRUPTED,
            EventKind.INCIDENT_RESUMED,
            EventKind.INCIDENT_BLOCKED,
            EventKind.CONTAINER_HELD,
            EventKind.INTAKE_WARNING,
            EventKind.CONTAINER_CLAIMED,
            EventKind.INCIDENT_RELEASED,
            EventKind.RELEASE_FAILED,
        ):
            self._print(f"  * {event.message}")

    def runner_event(self, event: RunnerEvent) -> None:
        """Live runner events; the timeline already shows results, so nothing extra by default.
        With `verbose`, Ansible's own output for the event."""
        if self.verbose and event.stdout.strip():
            self._print("\n".join(f"    | {line}" for line in event.stdout.strip().splitlines()))


def print_dry_run(
    out: IO[str], playbook: Playbook, request: RunRequest, report: Sequence[DryRunStep], catalog: Catalog
) -> int:
    """The dry run's plan and what each host would do; returns the exit code."""
    w = out.write
    w(f"DRY RUN of {playbook.name} ({playbook.severity}) -- nothing was changed, no incident was opened\n")
    w(
        f"  inventory: {request.inventory or 'localhost (local connection)'}"
        f"{'  limit: ' + request.limit if request.limit else ''}\n"
    )
    w(
        f"  params: {json.dumps(dict(request.params), sort_keys=True)}"
        f"{'  secret params: ' + ', '.join(sorted(request.secrets.values)) if request.secrets.values else ''}\n\n"
    )
    worst = 0
    for index, item in enumerate(report, 1):
        step = item.planned.step
        action = catalog.get(step.action)
        gate = "  [approval required]" if step.approval.value == "required" else ""
        w(f"{index}. {step.id}: {step.action} on hosts '{step.hosts or 'all'}'{gate}\n")
        if item.note:
            w(f"     {item.note}\n\n")
            continue
        args = dict(item.planned.args)
        args.update({k: "******** (secret)" for k in item.planned.secret_args})
        w(f"     with: {json.dumps(args, sort_keys=True)}\n")
        if action and action.changes:
            w(f"     changes: {action.changes}\n")
        result = item.result
        if result is None:
            w("     (not reached)\n\n")
            continue
        worst = max(worst, step_exit_code(result.outcome))
        if not result.hosts:
            reason = result.message or (
                "not reached: an earlier step stopped on every host"
                if result.outcome is StepOutcome.NOT_RUN
                else "no host reported"
            )
            w(f"     {result.outcome}: {reason}\n")
        if step.id == TARGETS_STEP:
            for line in fleet_view.blast_radius({h: r.outputs for h, r in result.hosts.items()}):
                w(f"     {line}\n")
        fleet = fleet_view.step_line({h: r.outputs for h, r in result.hosts.items()})
        if fleet:
            w(f"     {fleet}\n")
        for host, host_result in sorted(result.hosts.items()):
            out_data = host_result.outputs
            w(f"     host {host}: {host_result.outcome}")
            if host_result.outcome is not StepOutcome.SUCCEEDED:
                worst = max(worst, step_exit_code(host_result.outcome))
                w(f" -- {host_result.message or host_result.reason or 'no reason given'}")
            w("\n")
            if out_data.get("container_id"):
                w(f"       container: {out_data.get('container_id')} ({out_data.get('container_name')})\n")
                if out_data.get("image") or out_data.get("image_id"):
                    image = out_data.get("image") or "(untagged)"
                    w(f"       image: {image} [{out_data.get('image_id') or 'unknown ID'}]\n")
                nets = out_data.get("networks")
                names = (
                    [n.get("name") if isinstance(n, dict) else n for n in nets]
                    if isinstance(nets, list)
                    else nets
                )
                if names is not None:
                    w(f"       networks: {', '.join(map(str, names)) or 'none'}\n")
                if "restart_policy" in out_data:
                    w(
                        f"       restart policy: {out_data.get('restart_policy')}   --rm: {out_data.get('auto_remove')}\n"
                    )
            owner = out_data.get("owner")
            if isinstance(owner, dict) and owner.get("description"):
                after = (owner.get("after") or {}).get(step.action)
                w(
                    f"       owner: {owner['description']}"
                    + (f": after this step, {after}" if after else "")
                    + "\n"
                )
            if out_data.get("would_change"):
                from responder.engine import DRY_RUN_INCIDENT

                would = str(out_data["would_change"]).replace(DRY_RUN_INCIDENT, "<incident>")
                w(f"       would: {would}\n")
        w("\n")
    return worst


def print_incident(out: IO[str], timeline: Timeline, incident_id: str) -> None:
    """An incident's timeline, steps and evidence, for `responder show`."""
    inc = timeline.incident(incident_id)
    w = out.write
    w(f"{inc.id}  {inc.status}\n")
    w(f"  playbook: {inc.playbook} ({inc.severity})  {inc.playbook_path}\n")
    w(f"  opened:   {inc.created_at} by {inc.actor}   updated: {inc.updated_at}\n")
    w(f"  params:   {json.dumps(dict(inc.params), sort_keys=True)}\n")
    if inc.next_step:
        w(f"  waiting:  step {inc.next_step} needs approval (responder approve {inc.id} {inc.next_step})\n")
    steps = timeline.steps(incident_id)
    events = list(timeline.events(incident_id))
    if steps:
        # in the order they ran (first seen on the timeline), not the order rows were written
        ran = list(dict.fromkeys(e.step for e in events if e.step in steps))
        order = ran + [sid for sid in steps if sid not in ran]
        w("  steps:    " + ", ".join(f"{sid}={steps[sid][0]}" for sid in order) + "\n")
        w(f"  outcome:  {tally_mapping({sid: steps[sid][0] for sid in order}, order).line()}\n")
    w("\ntimeline (UTC):\n")
    for event in events:
        where = " ".join(x for x in (event.step or "", f"@{event.host}" if event.host else "") if x)
        w(f"  {event.ts}  #{event.seq:<4} {event.kind:<20} {where:<28} {event.actor:<16} {event.message}\n")
    evidence = timeline.evidence(incident_id)
    if evidence:
        w("\nevidence:\n")
        for item in evidence:
            match = "match" if item.sha256_source == item.sha256_controller else "MISMATCH"
            w(
                f"  {item.kind:<8} {item.host:<12} {item.size:>10} B  sha256 {item.sha256_controller} ({match})\n"
            )
            w(f"           {item.path}\n")
