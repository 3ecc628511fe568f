"""The one door into the engine.

The CLI and the server both come through here: a Service builds the engine and the Slack
notifier from settings, says who is acting, and offers the operations people and alerts ask for
(run, dry run, approve, deny, resume, release, evidence verification, an alert's run). The
server's worker processes call it directly (`responder.server.job`), never the CLI's parser, and
an approval from the API goes through the same `approve` as one typed on the controller, so the
gate is checked in one place: `Engine.approve`.

Imports are lazy where they are heavy: the CLI imports this module for `--help`-cheap commands
too, and Ansible alone costs ~0.45 s to import."""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from responder import db
from responder.ids import default_actor
from responder.targets import TARGETS_STEP, normalise
from responder.vocabulary import EventKind

if TYPE_CHECKING:
    from responder.approvals import GateCount
    from responder.catalog import Catalog
    from responder.engine import DryRunStep, Engine, RunOutcome, RunRequest
    from responder.evidence import Verification
    from responder.intake.records import QueuedAlert
    from responder.params import SecretValues
    from responder.playbook.model import Playbook
    from responder.settings import Settings
    from responder.timeline import Event, Timeline


def resolve_actor(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """Who is acting: as given (`--as`), else RESPONDER_ACTOR, else user@host of this process."""
    return explicit or environ.get("RESPONDER_ACTOR") or default_actor()


def secrets_from_env(secret_params: tuple[str, ...], environ: Mapping[str, str] = os.environ) -> SecretValues:
    """Secret params are never stored: a continuing incident takes them from RESPONDER_SECRET_*."""
    from responder import params as params_mod

    return params_mod.SecretValues(
        {
            n: environ[params_mod.secret_env_name(n)]
            for n in secret_params
            if params_mod.secret_env_name(n) in environ
        }
    )


@dataclass(frozen=True)
class AlertRun:
    """What became of a queued alert's run: its outcome, or the incident it joined instead."""

    outcome: RunOutcome | None
    attached_to: str | None = None


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back (not lost) while an interrupted run is put on record: a
    worker may get several at once (its server's death, Ansible's process group being stopped),
    and one arriving halfway would leave the incident `running` with nobody to finish it."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Service:
    """An engine wired to a progress display and, when configured, to Slack.

    `notify` is the playbook's `notify:` section (None: the configured default); `slack=False`
    leaves Slack out (the dry run). `announce` prints a line for people (stderr by default)."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog | None = None,
        *,
        quiet: bool = True,
        verbose: bool = False,
        out: IO[str] | None = None,
        notify: Any = None,
        slack: bool = True,
        on_event: Callable[[Event], None] | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        from responder.catalog import load_catalog
        from responder.engine import Engine
        from responder.errors import ConfigError
        from responder.evidence_watch import EvidenceWatch
        from responder.execution.runner import AnsibleRunnerExecutor, CancelToken
        from responder.progress import Progress

        self.settings = settings
        self.catalog = catalog or load_catalog(settings.runbook_dirs)
        self.announce = announce or (lambda text: print(text, file=sys.stderr))
        self.progress = Progress(
            out or sys.stdout,
            quiet=quiet,
            verbose=verbose,
            watch=EvidenceWatch((Path(settings.host_evidence_root), settings.evidence_dir)),
            quiet_tick=settings.progress_interval,
        )
        self.cancel = CancelToken()
        self.extra_listener = on_event
        self.timeline = open_timeline(settings)  # before the notifier's thread opens its own connection
        self.notifier: Any = None
        if slack:
            from responder.notify.setup import build_notifier

            try:
                self.notifier = build_notifier(settings, notify)
            except ConfigError as exc:
                # A Slack misconfiguration must not stand between on-call and containment.
                self.announce(f"responder: Slack disabled for this run: {exc}")
        if self.notifier is not None:
            self.timeline.redactor.add(self.notifier.secret)
        self.engine: Engine = Engine(
            settings,
            self.catalog,
            self.timeline,
            AnsibleRunnerExecutor(),
            on_timeline=self._on_event,
            on_runner_event=self.progress.runner_event,
            cancel=self.cancel,
        )
        gc.enable()  # the CLI starts with it off (see cli.main); runs allocate cycles

    @classmethod
    def for_incident(cls, settings: Settings, incident_id: str, **kwargs: Any) -> Service:
        """A Service that notifies where the incident's playbook says (its `notify:` section)."""
        from responder.catalog import load_catalog
        from responder.errors import PlaybookError
        from responder.playbook.parse import load_playbook

        catalog = load_catalog(settings.runbook_dirs)
        incident = open_timeline(settings).incident(incident_id)
        try:
            notify = load_playbook(Path(incident.playbook_path), catalog).notify
        except PlaybookError:
            notify = None
        return cls(settings, catalog, notify=notify, **kwargs)

    def _on_event(self, event: Event) -> None:
        self.progress.timeline_event(event)
        if self.notifier is not None:
            self.notifier.observe(event)  # a queue put: Slack never sits on the containment path
        if self.extra_listener is not None:
            self.extra_listener(event)

    # operations --------------------------------------------------------------------------------

    def start(self, request: RunRequest) -> RunOutcome:
        """Open an incident and run it up to its end or its first approval gate."""
        with self.signals():
            return self.engine.start(request)

    def dry_run(self, request: RunRequest) -> list[DryRunStep]:
        """Plan and check-run every step; nothing changes, nothing is recorded."""
        with self.signals():
            return self.engine.dry_run(request)

    def approve(
        self,
        incident_id: str,
        steps: list[str] | None,
        actor: str,
        reason: str = "",
        via: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Record approval of gated steps (None: every remaining one). The gate's one check,
        with its rules (no self-approval, N distinct approvers: responder.approvals)."""
        return self.engine.approve(incident_id, steps, actor, reason, via)

    def gate_waiting(self, incident_id: str) -> GateCount | None:
        """The gate the incident waits at, when it needs more approvals before it can go on."""
        from responder.approvals import waiting

        incident = self.timeline.incident(incident_id)
        return waiting(self.timeline, incident, self.engine.playbook_for(incident, check_hash=False))

    def continue_after_approval(self, incident_id: str) -> RunOutcome:
        """Carry an approved incident on, with its secret params from the environment."""
        incident = self.timeline.incident(incident_id)
        with self.signals():
            return self.engine.resume(incident_id, secrets_from_env(incident.secret_params))

    def deny(
        self, incident_id: str, actor: str, reason: str = "", via: Mapping[str, str] | None = None
    ) -> None:
        """Refuse the waiting step; the incident ends."""
        self.engine.deny(incident_id, actor, reason, via)

    def resume(self, incident_id: str, actor: str) -> RunOutcome:
        """Continue an interrupted incident."""
        incident = self.timeline.incident(incident_id)
        with self.signals():
            return self.engine.resume_interrupted(
                incident_id, secrets_from_env(incident.secret_params), actor
            )

    def release(
        self,
        incident_id: str,
        actor: str,
        reason: str,
        container: str | None = None,
        via: Mapping[str, str] | None = None,
    ) -> RunOutcome:
        """Reverse containment (an explicit request, with a reason on the timeline): the whole
        incident, or one container of a fleet incident."""
        with self.signals():
            return self.engine.release(incident_id, actor, reason, container, via)

    def verify(self, incident_id: str, actor: str) -> list[Verification]:
        """Re-hash an incident's evidence; the verification itself goes on the chain of custody."""
        from responder.evidence import verify

        self.timeline.incident(incident_id)
        results = verify(self.timeline, incident_id, self.settings.evidence_dir)
        bad = [r for r in results if r.status not in ("ok", "pruned")]
        if results:
            self.timeline.append(
                incident_id,
                EventKind.EVIDENCE_VERIFIED,
                f"evidence verified by {actor}: {len(results) - len(bad)} ok, {len(bad)} missing or altered",
                actor=actor,
                data={
                    "ok": len(results) - len(bad),
                    "problems": [{"path": r.record.path, "status": r.status} for r in bad],
                },
            )
        return results

    def run_alert(
        self,
        alert: QueuedAlert,
        playbook: Playbook,
        inventory: str | None,
        others: Sequence[QueuedAlert] = (),
    ) -> AlertRun:
        """A queued alert's run (a server worker). The route already resolved and checked the
        params against the playbook; they are taken as stored, only the secret ones are split
        off (they come from the environment, never the queue). With `others` (a storm's alerts
        for other containers, same playbook and params), one fleet incident answers them all."""
        from responder.engine import RunRequest
        from responder.intake.records import attach_alert, mark_started
        from responder.params import secret_values
        from responder.timeline import ContainerBusy

        group = [alert, *others]
        params = dict(alert.params)
        spec = playbook.target_param
        if others and spec is not None:
            params[spec.name] = normalise(str(a.params[spec.name]) for a in group)
        single = not others or not isinstance(params.get(spec.name if spec else ""), list)
        trigger: dict[str, Any] = {**alert.summary, "repeats_before_run": alert.repeats}
        if others:
            trigger["alerts"] = [a.id for a in group]

        def on_open(conn: db.Connection, incident_id: str) -> None:
            for member in group:
                mark_started(conn, member.id, incident_id)

        request = RunRequest(
            playbook=playbook,
            params=params,
            secrets=secret_values(playbook),
            actor=f"webhook:{alert.source}",
            inventory=inventory,
            limit=local_limit(alert.host_limit) if inventory is None else alert.host_limit,
            trigger=trigger,
            lock_key=alert.lock_key if single else None,
            alert_id=alert.id,
            on_open=on_open,
        )
        try:
            with self.signals():
                try:
                    outcome = self.engine.start(request)
                except BaseException as exc:
                    # A second signal (KeyboardInterrupt), or a crash: the incident must not stay
                    # `running` with nobody left to finish it.
                    orphan = self.timeline.open_incident_for_alert(alert.id)
                    if orphan is not None:
                        with signals_held():  # more signals wait until it is on record
                            self.engine.abandon(
                                orphan,
                                f"the worker stopped mid-run ({type(exc).__name__}); "
                                f"resume with `responder resume {orphan}`",
                            )
                    raise
        except ContainerBusy as exc:
            for member in group:
                attach_alert(self.timeline, member.id, exc.holder, member.summary)
            return AlertRun(None, exc.holder)
        if self.engine.claims.held_by:  # the same container, reached by another reference: join its holder
            attach_alert(self.timeline, alert.id, self.engine.claims.held_by, alert.summary)
            return AlertRun(outcome, self.engine.claims.held_by)
        if others and spec is not None:
            self._attach_held(outcome.incident_id, group, spec.name)
        return AlertRun(outcome)

    def _attach_held(self, incident_id: str, group: Sequence[QueuedAlert], param: str) -> None:
        """In a storm's fleet incident, an alert whose container another open incident held (and
        this one skipped) is linked to that holder instead: each alert to the incident that holds
        its container."""
        from responder.intake.records import attach_alert

        holders = self.engine.claims.fleet_holders()
        if not holders:
            return
        matched: dict[str, set[str]] = {}  # selector -> the container IDs it resolved to
        for event in self.timeline.events(incident_id):
            if event.kind == EventKind.STEP_FINISHED and event.step == TARGETS_STEP:
                for out in (event.data.get("outputs") or {}).values():
                    for found in out.get("targets") or [] if isinstance(out, dict) else []:
                        for selector in found.get("matched_by") or []:
                            matched.setdefault(str(selector), set()).add(str(found.get("container_id")))
        for member in group:
            ids = matched.get(str(member.params.get(param)), set())
            owners = {holders[c] for c in ids if c in holders}
            if ids and len(owners) == 1 and all(c in holders for c in ids):
                attach_alert(self.timeline, member.id, owners.pop(), member.summary)

    # plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM cancel the run (ansible-runner then kills ansible-playbook's group);
        a second one interrupts at once. Outside the main thread (tests) nothing is installed."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.cancel.is_set():
                raise KeyboardInterrupt
            self.announce(f"\nresponder: {signal.Signals(signum).name} received, stopping the run...")
            self.cancel.cancel("interrupted")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def finish(self) -> None:
        """After containment: give Slack a bounded time to catch up, then say what happened."""
        if self.notifier is None:
            return
        from responder.notify.setup import flush_timeout

        left = self.notifier.close(flush_timeout(self.settings))
        text = f"slack: {self.notifier.sent} sent, {self.notifier.failed} failed"
        if left:
            text += f", {left} not delivered before exit (recorded on the timeline)"
        self.announce(text)


def local_limit(host: str | None) -> str | None:
    """Without an inventory this machine is the one host, `localhost`. An alert from this machine
    (Falco's `hostname` is the host's name) names it by that name, so that name means localhost;
    any other name stays as it is and reaches no host, which the run reports."""
    import socket

    if host is None:
        return None
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    names |= {n.split(".")[0] for n in names}
    return "localhost" if host.lower() in names else host


def open_timeline(settings: Settings) -> Timeline:
    """The timeline, its data directory checked (private_dirs) first."""
    from responder.timeline import Timeline

    settings.private_dir()
    return Timeline(settings.database)
