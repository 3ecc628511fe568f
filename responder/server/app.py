"""`responder serve`: the alert webhook and the incident API, on aiohttp.

aiohttp because it measured fastest for this job (performance.md: HMAC + JSON + enqueue at
6.8k req/s against 2.6k for FastAPI/uvicorn on 2 vCPU) and keeps the raw body in our hands,
which the HMAC check and the streaming 1 MiB cap need.

Order of work for an alert request: authenticate (headers first; HMAC over the raw bytes before
any parsing), read at most 1 MiB, parse strictly, check the shape, route, commit, and only then
answer 202. A playbook never runs inside a request: workers take committed alerts.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from responder.catalog import Catalog
from responder.intake.alerts import PARSERS, Alert, BadJSON, ShapeError, alertmanager_warnings, decode
from responder.intake.records import Intake
from responder.intake.routing import RejectedInput, Router
from responder.intake.store import AlertStore, StoreUnavailable
from responder.playbook.model import AlertSource
from responder.server.auth import Auth, Client
from responder.server.http_common import BODY_TIMEOUT, MAX_BODY, Gate, error, log, request_path
from responder.server.incident_api import IncidentAPI
from responder.server.metrics import Metrics
from responder.server.slack_interactions import SlackInteractions, SlackWiring
from responder.server.workers import WorkerPool
from responder.settings import Settings
from responder.timeline import Event, Timeline

OPENAPI = Path(__file__).resolve().parent / "openapi.json"


@dataclass
class ServerState:
    """What the request handlers share: routing, auth, the store, the pool, metrics."""

    catalog: Catalog
    router: Router
    auth: Auth
    store: AlertStore
    pool: WorkerPool
    timeline: Timeline
    metrics: Metrics
    draining: bool = False
    body_timeout: float = BODY_TIMEOUT
    settings: Settings | None = None
    # Slack: what no incident's thread will carry (notice), and events the server writes (observe)
    observe: Callable[[Event], None] | None = None
    notice: Callable[[str, str], None] | None = None
    slack: SlackWiring | None = None  # decisions from Slack's buttons ([slack] interactive)


def build_app(state: ServerState) -> web.Application:
    """The aiohttp application with every route."""
    app = web.Application(client_max_size=MAX_BODY)
    api = _Handlers(state)
    incidents = IncidentAPI(state)
    app.router.add_post("/v1/alerts/alertmanager", api.alertmanager)
    app.router.add_post("/v1/alerts/falco", api.falco)
    app.router.add_post("/v1/alerts/generic", api.generic)
    app.router.add_get("/v1/incidents", incidents.incidents)
    app.router.add_get("/v1/incidents/{id}", incidents.incident)
    app.router.add_get("/v1/incidents/{id}/timeline", incidents.timeline)
    app.router.add_get("/v1/incidents/{id}/export", incidents.export)
    app.router.add_post("/v1/incidents/{id}/approve", incidents.approve)
    app.router.add_post("/v1/incidents/{id}/deny", incidents.deny)
    app.router.add_post("/v1/incidents/{id}/release", incidents.release)
    app.router.add_post("/v1/slack/interactions", SlackInteractions(state).interactions)
    app.router.add_get("/v1/openapi.json", api.openapi)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics)
    return app


class _Handlers(Gate):
    """The alert endpoints and health."""

    # alerts -------------------------------------------------------------------------------------

    async def alertmanager(self, request: web.Request) -> web.StreamResponse:
        return await self._alerts(request, AlertSource.ALERTMANAGER)

    async def falco(self, request: web.Request) -> web.StreamResponse:
        return await self._alerts(request, AlertSource.FALCO)

    async def generic(self, request: web.Request) -> web.StreamResponse:
        return await self._alerts(request, AlertSource.GENERIC)

    async def _alerts(self, request: web.Request, source: AlertSource) -> web.StreamResponse:
        metrics = self.state.metrics
        if self.state.draining:
            return error(503, "shutting down; retry against another replica or later")
        body = await self._authenticated_body(request, source)
        if isinstance(body, web.Response):
            return body
        client: Client | None = request.get("client")
        if client is None or not client.may("alerts"):
            name = client.name if client else "unknown"
            self.state.metrics.count_rejected(source, "forbidden")
            self.denied.warning("forbidden", "alert from client %s refused 403: no alerts role", name)
            return error(403, f"client {name!r} may not post alerts: it needs the 'alerts' role")
        try:
            request["decoded"] = decode(body)
            alerts = PARSERS[source](request["decoded"])
        except BadJSON as exc:
            return self._refuse(request, source, "bad_json", 400, str(exc))
        except ShapeError as exc:
            return self._refuse(request, source, "bad_shape", 422, str(exc))
        metrics.count_received(source, len(alerts))
        warnings = alerts[0].warnings if alerts else alertmanager_warnings(request["decoded"])
        for warning in warnings:
            metrics.count_intake_warning(source)
            log.warning("%s notification from %s: %s", source, request.remote, warning)
        if not alerts:  # nothing to store or run, and nothing a retry would change: never a 4xx
            self._notice(warnings)
            return web.json_response({"alerts": [], "warnings": list(warnings)}, status=200)
        intakes: list[Intake] | None = None
        try:
            # repeats of committed alerts are answered at once; anything new waits for its commit
            decisions = self.state.store.known_duplicates(alerts)
            if decisions is None:
                intakes = [self._route(alert) for alert in alerts]
                decisions = await self.state.store.submit_async(intakes)
        except StoreUnavailable as exc:
            metrics.count_rejected(source, "unavailable")
            log.critical("could not commit %d alert(s) from %s: %s", len(alerts), source, exc)
            return error(503, "the alert could not be stored now; retry")
        for index, decision in enumerate(decisions):
            metrics.count_result(source, decision.result)
            if decision.result == "no_action" and intakes is not None:
                metrics.count_no_action(source, intakes[index].no_action_code or "other")
        results = [d.result for d in decisions]
        if warnings and "queued" not in results:
            self._notice(warnings)  # no incident opens: its thread cannot carry them
        if "queued" in results:
            status = 202
        elif all(r == "rejected" for r in results):
            status = 422
            reasons = "; ".join(sorted({d.reason or "" for d in decisions}))
            self.denied.warning(
                "refused:rejected_input",
                "%s %s from %s refused 422 (rejected_input): %s",
                request.method,
                request_path(request),
                request.remote,
                reasons[:300],
            )
        else:
            status = 200
        return web.json_response({"alerts": [d.as_json() for d in decisions]}, status=status)

    def _notice(self, warnings: tuple[str, ...]) -> None:
        if self.state.notice is None:
            return
        for warning in warnings:
            self.state.notice("notice:" + hashlib.sha256(warning.encode()).hexdigest()[:16], warning)

    def _route(self, alert: Alert) -> Intake:
        if alert.source is AlertSource.FALCO and alert.container is None and alert.status == "firing":
            return Intake(
                alert,
                None,
                no_action="host event (container.id is host or absent): no container action",
                no_action_code="host_event",
            )
        route = self.state.router.route(alert)
        if route is None or alert.status != "firing":
            return Intake(alert, route)
        try:
            params, limit = route.run_inputs(alert)
        except RejectedInput as exc:
            return Intake(alert, route, rejected=f"rejected_input: {exc}")
        return Intake(alert, route, params=params, limit=limit)

    # health -------------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        """The API's OpenAPI 3.1 description (responder/server/openapi.json), served as shipped."""
        return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        problems = []
        if self.state.draining:
            problems.append("draining")
        if not self.state.pool.alive():
            problems.append("worker threads stopped")
        try:  # off the event loop, bounded: a database that stopped answering must not stall /readyz
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(None, self.state.store.ping), timeout=5.0)
        except TimeoutError:
            problems.append("database: no answer within 5 s")
        except Exception as exc:
            problems.append(f"database: {exc}")
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        text = self.state.metrics.render(
            self.state.timeline, self.state.store, self.state.pool.busy, self.state.draining
        )
        return web.Response(
            text=text, content_type="text/plain", charset="utf-8", headers={"X-Format": "0.0.4"}
        )
