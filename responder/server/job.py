"""A worker process of `responder serve`: one job, read as JSON from standard input.

    {"settings": {"data_dir": ..., "playbooks_dirs": [...], "runbooks_dirs": [...], "config": ...},
     "inventory": "/etc/responder/hosts.yml" | null,
     "job": "alert", "alert_id": 17}                   # run a queued alert
     "job": "alert", "alert_id": 17, "group": [17, 18, 19]}   # a storm's alerts, one incident
     "job": "continue", "incident": "INC-..."}         # carry on after an API approval
     "job": "release", "incident": "INC-...", "actor": "api:ops", "reason": "...",
      "container": null}                                # release asked for through the API

The server starts it ahead of time (a warm worker): the locations arrive first, on one line,
and the job on a second when an alert is claimed; a single JSON document works as well.

It goes straight to the Service (responder.service), the same door as the CLI, without the
CLI's argument parser. A process per run keeps ansible-runner (not thread-safe) and a crashing
run away from the server; the job arrives on stdin, so nothing of it shows on a command line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from responder.catalog import Catalog
    from responder.playbook.model import Playbook
    from responder.timeline import Event


def main() -> int:
    """Entry point of a worker process: read the job, run it, exit with its code."""
    from responder.errors import ResponderError
    from responder.server.workers import die_with_parent

    die_with_parent()
    phase = os.environ.get("RESPONDER_PHASE_FD", "")
    if phase.isdigit():  # ours alone: Ansible and the modules it starts must not hold it open
        with contextlib.suppress(OSError):
            os.set_inheritable(int(phase), False)
    # A warm worker: the server starts this process before there is work for it, with where
    # things are on the first line; the job itself follows when an alert is claimed. The
    # imports a run needs are paid for while waiting, not after the alert arrived.
    first = sys.stdin.readline()
    base: dict[str, Any] = json.loads(first) if first.strip() else {}
    warm_up()
    rest = sys.stdin.read()
    if not rest.strip() and not base.get("job"):
        return 0  # the server stopped before it had a job for us
    job: dict[str, Any] = {**base, **json.loads(rest)} if rest.strip() else base
    try:
        return run(job)
    except ResponderError as exc:
        print(f"responder job: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("responder job: interrupted", file=sys.stderr)
        return 130


def containment_signal(playbook: Playbook, catalog: Catalog) -> Callable[[Event], None] | None:
    """A timeline listener that tells the server (one line on the pipe RESPONDER_PHASE_FD) when
    the run's first containment step (a role with `containment: true`) has finished: the server
    then gives this run's worker slot to the next alert while this run collects evidence."""
    from responder.vocabulary import EventKind

    raw = os.environ.get("RESPONDER_PHASE_FD", "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    actions = {s.id: s.action for s in playbook.steps}
    sent = False

    def listener(event: Event) -> None:
        nonlocal sent
        if sent or event.kind != EventKind.STEP_FINISHED or event.step not in actions:
            return
        action = catalog.get(actions[event.step])
        if action is not None and action.containment:
            sent = True
            with contextlib.suppress(OSError):
                os.write(fd, b"contained\n")
                os.close(fd)

    return listener


def warm_up() -> None:
    """Import what every run needs (the engine, ansible-runner) ahead of the job."""
    import ansible_runner.config.runner
    import ansible_runner.runner  # noqa: F401

    import responder.engine
    import responder.intake.records
    import responder.playbook.parse
    import responder.service  # noqa: F401


def run(job: dict[str, Any]) -> int:
    """Run one job (an alert's run, or an approved incident carried on) through the Service."""
    from responder.exit_codes import STATUS_EXIT
    from responder.outcomes import tally_mapping
    from responder.service import Service
    from responder.settings import load_settings

    located = job.get("settings") or {}
    settings = load_settings(
        data_dir=located.get("data_dir"),
        playbooks_dirs=located.get("playbooks_dirs") or [],
        runbooks_dirs=located.get("runbooks_dirs") or [],
        config=located.get("config"),
    )
    kind = job.get("job")
    if kind == "alert":
        from pathlib import Path

        from responder.catalog import load_catalog
        from responder.intake.records import load_alert
        from responder.playbook.parse import load_playbook

        alert = load_alert(settings.database, int(job["alert_id"]))
        # a storm: the alerts claimed with it, answered by one fleet incident
        others = [load_alert(settings.database, int(i)) for i in job.get("group") or [] if int(i) != alert.id]
        catalog = load_catalog(settings.runbook_dirs)
        playbook = load_playbook(Path(alert.playbook_path), catalog)
        service = Service(
            settings, catalog, notify=playbook.notify, on_event=containment_signal(playbook, catalog)
        )
        try:
            result = service.run_alert(alert, playbook, job.get("inventory"), others)
        finally:
            service.finish()
        if result.attached_to:
            print(
                f"alert {alert.id}: container already handled by {result.attached_to}; alert added to its timeline"
            )
            return 0
        outcome = result.outcome
    elif kind == "continue":
        incident = str(job["incident"])
        service = Service.for_incident(settings, incident)
        try:
            outcome = service.continue_after_approval(incident)
        finally:
            service.finish()
    elif kind == "resume":  # taken over from a replica whose lease expired (server.replicas)
        incident = str(job["incident"])
        service = Service.for_incident(settings, incident)
        try:
            outcome = service.resume(incident, str(job["actor"]))
        finally:
            service.finish()
    elif kind == "release":
        incident = str(job["incident"])
        service = Service.for_incident(settings, incident)
        try:
            outcome = service.release(
                incident, str(job["actor"]), str(job["reason"]), job.get("container"), job.get("via")
            )
        finally:
            service.finish()
    else:
        raise SystemExit(f"responder job: unknown job {kind!r}")
    assert outcome is not None
    print(f"{outcome.incident_id}: {outcome.status} ({tally_mapping(outcome.steps).line()})")
    return STATUS_EXIT.get(outcome.status, 1)


if __name__ == "__main__":
    sys.exit(main())
