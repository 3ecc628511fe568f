"""Start-up and shutdown of `responder serve`: load and check every playbook, recover what a crash
left behind, start the workers, then serve until SIGTERM/SIGINT and drain."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from responder.catalog import Catalog
from responder.errors import ConfigError, PlaybookError
from responder.intake.routing import Router
from responder.intake.store import AlertStore
from responder.playbook.model import Playbook
from responder.server import logline
from responder.server.app import ServerState, build_app
from responder.server.auth import Auth, is_loopback, scrubbed_environment
from responder.server.metrics import Metrics
from responder.server.workers import WorkerPool, pid_alive
from responder.settings import Settings
from responder.timeline import Timeline

log = logging.getLogger("responder.server")


@dataclass(frozen=True)
class ServeOptions:
    """How `responder serve` listens and runs its workers."""

    host: str
    port: int
    workers: int
    grace: float
    body_timeout: float
    insecure_no_auth: bool
    inventory: str | None
    job_base: Mapping[str, Any]  # where things are (settings locations, inventory), for worker jobs
    group_wait: float = 0.0  # how long a lone alert waits for others to share its fleet incident
    tls: ssl.SSLContext | None = None  # HTTPS with this certificate (tls.server_context)


def load_routable_playbooks(settings: Settings, catalog: Catalog) -> list[Playbook]:
    """Every playbook must load: a server that silently ignored a broken one would let the alerts
    it was meant to answer fall through to `unmatched`."""
    from responder.playbook.parse import load_playbook

    playbooks, problems = [], []
    seen: set[str] = set()
    for directory in settings.playbook_dirs:
        for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
            try:
                playbook = load_playbook(path, catalog)
            except PlaybookError as exc:
                problems.append(str(exc))
                continue
            if playbook.name not in seen:  # user directories come first and shadow shipped ones
                seen.add(playbook.name)
                playbooks.append(playbook)
    if problems:
        raise ConfigError("refusing to serve with invalid playbooks:\n" + "\n".join(problems))
    return sorted(playbooks, key=lambda p: p.name)


def check_bind(host: str, auth: Auth, insecure: bool) -> None:
    """Refuse a non-loopback address without authentication (unless explicitly told)."""
    if not auth.enabled and not is_loopback(host) and not insecure:
        raise ConfigError(
            f"refusing to listen on {host} without authentication: set RESPONDER_WEBHOOK_TOKEN_FILE or "
            "RESPONDER_WEBHOOK_HMAC_SECRET_FILE (or [server] token_file / hmac_secret_file), "
            "or pass --insecure-no-auth if something in front of responder authenticates"
        )


def recover(store: AlertStore, settings: Settings, catalog: Catalog) -> None:
    """After a crash: claimed-but-not-started alerts are queued again (nothing ran for them);
    incidents whose worker died mid-run become `interrupted`, resumable with `responder resume`."""
    requeued, running = store.recover()
    if requeued:
        log.warning("requeued %d alert(s) whose run never started", requeued)
    if not running:
        return
    deadline = time.monotonic() + 20
    while any(pid_alive(pid) for _, _, pid in running) and time.monotonic() < deadline:
        time.sleep(0.2)  # a worker of the old server is still winding down after its SIGTERM

    for alert_id, incident_id, pid in running:
        if pid_alive(pid):
            log.error(
                "incident %s: worker %s of a previous server is still running; leaving it", incident_id, pid
            )
            continue
        abandon(
            settings,
            catalog,
            incident_id,
            f"the server stopped while this run was in progress (alert {alert_id}); "
            f"resume with `responder resume {incident_id}`",
        )


def abandon(settings: Settings, catalog: Catalog, incident_id: str, reason: str) -> None:
    """Mark an incident whose run has nobody left to finish it `interrupted` (resumable)."""
    from responder.engine import Engine
    from responder.execution.runner import AnsibleRunnerExecutor

    timeline = Timeline(settings.database)
    try:
        Engine(settings, catalog, timeline, AnsibleRunnerExecutor()).abandon(incident_id, reason)
        log.warning("incident %s marked interrupted: %s", incident_id, reason)
    except (PlaybookError, ConfigError) as exc:
        log.error("incident %s could not be marked interrupted: %s", incident_id, exc)
    finally:
        timeline.close()


def serve(settings: Settings, catalog: Catalog, auth: Auth, options: ServeOptions) -> int:
    """Run the webhook server until SIGTERM or SIGINT, then drain."""
    logline.install(logging.INFO)
    check_bind(options.host, auth, options.insecure_no_auth)
    playbooks = load_routable_playbooks(settings, catalog)
    router = Router.from_playbooks(playbooks)
    log_dir = settings.private_dir("server")
    store = AlertStore(settings.database, inventory=options.inventory)
    for secret in auth.secrets_for_redaction:  # webhook credentials never reach the timeline
        store.redactor.add(secret)
    recover(store, settings, catalog)
    env = scrubbed_environment(os.environ)

    def orphaned(alert_id: int, incident_id: str, code: int) -> None:
        abandon(
            settings,
            catalog,
            incident_id,
            f"the worker running alert {alert_id} exited ({code}) before closing the incident; "
            f"resume with `responder resume {incident_id}`",
        )

    pool = WorkerPool(
        store,
        options.workers,
        options.job_base,
        env,
        log_dir,
        on_orphan=orphaned,
        group_wait=options.group_wait,
    )
    store.on_queued = pool.wake
    notifier = _notifier(settings)
    if notifier is not None:  # the runs notify for themselves; the server says when an alert resolves
        store.on_event = notifier.observe
    slack = _slack(settings, catalog, pool, notifier)
    state = ServerState(
        catalog=catalog,
        router=router,
        auth=auth,
        store=store,
        pool=pool,
        timeline=Timeline(settings.database),
        metrics=Metrics(),
        body_timeout=options.body_timeout,
        notice=notifier.notice if notifier is not None else None,
        observe=notifier.observe if notifier is not None else None,
        settings=settings,
        slack=slack,
    )
    app = build_app(state)

    async def on_shutdown(app: web.Application) -> None:
        state.draining = True
        log.info("draining: no new alerts; waiting up to %.0f s for running playbooks", options.grace)
        await asyncio.get_running_loop().run_in_executor(None, pool.stop, options.grace)

    app.on_shutdown.append(on_shutdown)
    for route in router.routes:
        log.info(
            "route: %s alerts -> playbook %s (%s)", route.source, route.playbook.name, route.playbook.source
        )
    unrouted = [p.name for p in playbooks if p.match is None]
    if unrouted:
        log.info("playbooks without match: (CLI only): %s", ", ".join(unrouted))
    if not auth.enabled:
        log.warning("no webhook authentication configured; listening on %s only", options.host)
    # The alert writer is a thread; at CPython's default 5 ms switch interval every acknowledgement
    # would wait for the event loop to give up the GIL. 0.25 ms keeps the hand-over short.
    sys.setswitchinterval(0.00025)
    duties = None
    if settings.store is not None:  # replicas sharing a PostgreSQL store
        from responder.server.replicas import ReplicaDuties

        def taken_over(incident_id: str, reason: str) -> None:
            abandon(settings, catalog, incident_id, reason)

        duties = ReplicaDuties(settings.store, store, pool.wake, taken_over, pool.run_job)
        log.info(
            "store: %s, shared; this replica is %s (lease %.0f s)",
            settings.store.url,
            settings.store.controller,
            settings.store.lease,
        )
    pool.start()
    pool.wake()
    if duties is not None:
        duties.start()
    if slack is not None and slack.socket is not None:
        slack.socket.start()
    try:
        web.run_app(
            app,
            host=options.host,
            port=options.port,
            print=lambda text: log.info("%s", text.strip()),
            access_log=None,
            ssl_context=options.tls,
            shutdown_timeout=5.0,
            handle_signals=True,
        )
    finally:
        if duties is not None:
            duties.stop()
        if slack is not None:
            slack.close()
        store.close()
        state.timeline.close()
        if notifier is not None:
            from responder.notify.setup import flush_timeout

            notifier.close(flush_timeout(settings))
    return 0


def _notifier(settings: Settings) -> Any:
    from responder.notify.setup import build_notifier

    try:
        return build_notifier(settings, None)
    except ConfigError as exc:
        log.warning("Slack disabled in the server: %s", exc)
        return None


def _slack(settings: Settings, catalog: Catalog, pool: WorkerPool, notifier: Any) -> Any:
    """Decisions from Slack ([slack] interactive), or None. A misconfiguration stops the start:
    buttons that would answer nothing are worse than a clear error."""
    from responder.server.slack_interactions import build_slack

    wiring = build_slack(settings, catalog, pool.run_job, notifier.observe if notifier is not None else None)
    if wiring is not None:
        log.info(
            "slack: decisions from buttons%s%s",
            " at /v1/slack/interactions" if wiring.verifier is not None else "",
            " and over Socket Mode" if wiring.socket is not None else "",
        )
    return wiring
