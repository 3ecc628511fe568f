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
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from responder.catalog import Catalog
from responder.errors import InputError, StateError, UsageError
from responder.intake.alerts import PARSERS, Alert, BadJSON, ShapeError, alertmanager_warnings, decode
from responder.intake.records import Intake
from responder.intake.routing import RejectedInput, Router
from responder.intake.store import AlertStore, StoreUnavailable
from responder.outcomes import tally_mapping
from responder.playbook.model import AlertSource
from responder.server.auth import Auth, Verdict
from responder.server.metrics import Metrics
from responder.server.workers import WorkerPool
from responder.settings import Settings
from responder.timeline import Event, Incident, Timeline

MAX_BODY = 1 << 20
BODY_TIMEOUT = 10.0  # seconds a client has to send its whole body once the headers are in
log = logging.getLogger("responder.server")


class _TooLarge(InputError):
    pass


class _RateLimitedLog:
    """At most one line per `interval` per kind: an attacker hammering 401s cannot flood the log."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        self.log(logging.WARNING, kind, message, *args)

    def info(self, kind: str, message: str, *args: Any) -> None:
        self.log(logging.INFO, kind, message, *args)

    def log(self, level: int, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, 0.0) < self.interval:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return
        dropped = self._dropped.pop(kind, 0)
        self._last[kind] = now
        log.log(level, message + (f" (+{dropped} similar suppressed)" if dropped else ""), *args)


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


def build_app(state: ServerState) -> web.Application:
    """The aiohttp application with every route."""
    app = web.Application(client_max_size=MAX_BODY)
    api = _Handlers(state)
    app.router.add_post("/v1/alerts/alertmanager", api.alertmanager)
    app.router.add_post("/v1/alerts/falco", api.falco)
    app.router.add_post("/v1/alerts/generic", api.generic)
    app.router.add_get("/v1/incidents", api.incidents)
    app.router.add_get("/v1/incidents/{id}", api.incident)
    app.router.add_get("/v1/incidents/{id}/timeline", api.timeline)
    app.router.add_post("/v1/incidents/{id}/approve", api.approve)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics)
    return app


def _bounded_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int | str:
    """A numeric query parameter, bounded on both sides: plain decimal digits only (no sign,
    spaces or underscores, which int() would accept), refused with 400 outside [low, high]."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        return f"{name} must be a whole number from {low} to {high}"
    return int(text)


def _error(status: int, message: str, close: bool = False) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    if status == 503:
        response.headers["Retry-After"] = "5"
    if close:
        response.force_close()
    return response


class _Handlers:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.denied = _RateLimitedLog()

    # authentication and body ------------------------------------------------------------------

    async def _authenticated_body(self, request: web.Request, source: str) -> bytes | web.Response:
        auth = self.state.auth
        verdict = auth.before_body(request.headers)
        if verdict is not None and not verdict.ok:
            return self._deny(request, source, verdict)
        try:
            length = request.content_length
            if length is not None and length <= MAX_BODY and request.content.total_bytes >= length:
                body = await _read_capped(request)  # all of it has arrived: nothing to wait for
            else:  # asyncio.timeout, not wait_for: no extra task per request
                async with asyncio.timeout(self.state.body_timeout):
                    body = await _read_capped(request)
        except _TooLarge:
            return self._refuse(request, source, "too_large", 413, f"body larger than {MAX_BODY} bytes")
        except asyncio.IncompleteReadError:
            return self._refuse(request, source, "bad_json", 400, "body shorter than its Content-Length")
        except TimeoutError:
            return self._refuse(
                request, source, "slow_body", 408, f"body not received within {self.state.body_timeout:g} s"
            )
        except (ConnectionError, aiohttp.ClientConnectionError):
            # The client left mid-body: nobody to answer. One quiet line (rate-limited), no traceback.
            self.state.metrics.count_rejected(source, "cut_short")
            self.denied.info(
                "cut_short",
                "%s %s from %s: client left before sending its body",
                request.method,
                _path(request),
                request.remote,
            )
            return _error(400, "request cut short", close=True)
        if verdict is None:
            verdict = auth.with_body(request.headers, body)
            if not verdict.ok:
                return self._deny(request, source, verdict)
        return body

    def _refuse(
        self, request: web.Request, source: str, reason: str, status: int, message: str
    ) -> web.Response:
        """A 4xx: counted, and one concise log line (what, from where, why; never the payload),
        at most one a second per kind so that a flood of bad requests cannot flood the log."""
        self.state.metrics.count_rejected(source, reason)
        self.denied.warning(
            f"refused:{reason}",
            "%s %s from %s refused %d (%s): %s",
            request.method,
            _path(request),
            request.remote,
            status,
            reason,
            message[:300],
        )
        return _error(status, message, close=status in (408, 413))

    def _deny(self, request: web.Request, source: str, verdict: Verdict) -> web.Response:
        self.state.metrics.count_rejected(source, "auth")
        self.denied.warning(
            "auth",
            "%s %s from %s refused: %s",
            request.method,
            _path(request),
            request.remote,
            verdict.reason,
        )
        # The unread body is discarded by closing the connection rather than reading it.
        return _error(verdict.status, verdict.reason, close=True)

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
            return _error(503, "shutting down; retry against another replica or later")
        body = await self._authenticated_body(request, source)
        if isinstance(body, web.Response):
            return body
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
            return _error(503, "the alert could not be stored now; retry")
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
                _path(request),
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

    # incidents ----------------------------------------------------------------------------------

    async def _api_auth(self, request: web.Request) -> web.Response | None:
        """The incident API carries evidence paths and container details: same auth as alerts."""
        result = await self._authenticated_body(request, "api")
        if isinstance(result, web.Response):
            return result
        request["body"] = result
        return None

    async def incidents(self, request: web.Request) -> web.StreamResponse:
        if denied := await self._api_auth(request):
            return denied
        limit = _bounded_int(request, "limit", default=50, low=1, high=1000)
        if isinstance(limit, str):
            return self._refuse(request, "api", "bad_request", 400, limit)
        rows = self.state.timeline.incidents(limit=limit)
        return web.json_response({"incidents": [_incident_json(i) for i in rows]})

    async def incident(self, request: web.Request) -> web.StreamResponse:
        if denied := await self._api_auth(request):
            return denied
        try:
            incident = self.state.timeline.incident(request.match_info["id"])
        except UsageError:
            return _error(404, "no such incident")
        steps = {sid: status for sid, (status, _) in self.state.timeline.steps(incident.id).items()}
        tally = tally_mapping(steps).as_dict()
        return web.json_response({**_incident_json(incident), "steps": steps, "step_tally": tally})

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        if denied := await self._api_auth(request):
            return denied
        incident_id = request.match_info["id"]
        try:
            self.state.timeline.incident(incident_id)
        except UsageError:
            return _error(404, "no such incident")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"incident_id": ' + json.dumps(incident_id).encode() + b', "events": [')
        first = True
        for seq, ts, kind, step, host, actor, message, data in self.state.timeline.raw_events(incident_id):
            item = json.dumps(
                {
                    "seq": seq,
                    "ts": ts,
                    "kind": kind,
                    "step": step,
                    "host": host,
                    "actor": actor,
                    "message": message,
                },
                ensure_ascii=False,
            )
            chunk = ("" if first else ",") + item[:-1] + ', "data": ' + data + "}"
            first = False
            await response.write(chunk.encode())
        await response.write(b"]}")
        await response.write_eof()
        return response

    async def _decision_auth(self, request: web.Request) -> web.Response | None:
        """Approve, deny and release change what happens to a container: they always need an
        authenticated caller. A server started without credentials (allowed on loopback for
        alerts) would otherwise let any local user approve a stop with a plain curl."""
        if not self.state.auth.enabled:
            self.state.metrics.count_rejected("api", "auth")
            self.denied.warning(
                "auth",
                "%s %s from %s refused: no credentials configured",
                request.method,
                _path(request),
                request.remote,
            )
            return _error(
                401,
                "decisions need an authenticated caller, and this server has no credentials configured: "
                "set RESPONDER_WEBHOOK_TOKEN_FILE or RESPONDER_WEBHOOK_HMAC_SECRET_FILE, "
                "or decide on the controller (responder approve)",
                close=True,
            )
        return await self._api_auth(request)

    async def approve(self, request: web.Request) -> web.StreamResponse:
        if denied := await self._decision_auth(request):
            return denied
        incident_id = request.match_info["id"]
        try:
            body = decode(request["body"] or b"{}")
        except BadJSON as exc:
            return self._refuse(request, "api", "bad_request", 400, str(exc))
        if not isinstance(body, dict):
            return self._refuse(
                request,
                "api",
                "bad_request",
                422,
                "body must be a JSON object: {step: ID} or {all: true}, with actor and reason",
            )
        actor, reason, step, every = (
            body.get("actor"),
            body.get("reason", ""),
            body.get("step"),
            body.get("all"),
        )
        if not isinstance(actor, str) or not actor.strip() or len(actor) > 200:
            return self._refuse(
                request, "api", "bad_request", 422, "actor (who approves, up to 200 characters) is required"
            )
        if not isinstance(reason, str) or len(reason) > 2000:
            return self._refuse(
                request, "api", "bad_request", 422, "reason must be a string of at most 2000 characters"
            )
        if (step is None) == (every is not True):
            return self._refuse(
                request, "api", "bad_request", 422, "give either step (a gated step id) or all: true"
            )
        steps = None if every else [str(step)]
        try:
            # the gate's one check (Engine.approve, as for `responder approve`), off the event loop
            chosen = await asyncio.get_running_loop().run_in_executor(
                None, self._approve, incident_id, steps, f"api:{actor.strip()}", reason
            )
        except UsageError:
            return _error(404, "no such incident")
        except StateError as exc:
            return _error(409, str(exc))
        self.state.pool.run_job({"job": "continue", "incident": incident_id})
        return web.json_response(
            {"incident_id": incident_id, "approved": chosen, "status": "resuming"}, status=202
        )

    def _approve(self, incident_id: str, steps: list[str] | None, actor: str, reason: str) -> list[str]:
        from responder.service import Service

        assert self.state.settings is not None
        service = Service(self.state.settings, self.state.catalog, slack=False, on_event=self.state.observe)
        try:
            return service.approve(incident_id, steps, actor, reason)
        finally:
            service.timeline.close()

    # health -------------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        problems = []
        if self.state.draining:
            problems.append("draining")
        if not self.state.pool.alive():
            problems.append("worker threads stopped")
        try:
            self.state.store.ping()
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


def _path(request: web.Request) -> str:
    """The path as the client sent it (still percent-encoded), cut to a length fit for a log."""
    raw = request.raw_path
    return raw if len(raw) <= 200 else raw[:200] + "..."


async def _read_capped(request: web.Request) -> bytes:
    """Read the body, refusing at the first byte past MAX_BODY (announced or chunked)."""
    if request.content_length is not None:
        if request.content_length > MAX_BODY:
            raise _TooLarge
        return await request.content.readexactly(request.content_length)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "status": str(incident.status),
        "playbook": incident.playbook,
        "severity": incident.severity,
        "created_at": incident.created_at,
        "updated_at": incident.updated_at,
        "next_step": incident.next_step,
        "params": dict(incident.params),
        "trigger": dict(incident.trigger),
        "actor": incident.actor,
    }
