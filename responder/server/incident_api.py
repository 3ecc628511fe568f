"""The incident API of `responder serve`: read incidents, timelines and exports (`reader`), and
decide (`approver`): approve, deny, release.

The actor a decision is recorded under is the calling client's configured name (`api:<name>`),
never a field of the request body. Decisions go through the Service, as on the CLI: the same
gate check, the same no-self-approval and two-approver rules (responder.approvals).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from aiohttp import web

from responder import approvals
from responder.errors import ApprovalRefused, StateError, UsageError
from responder.export import FORMATS, MEDIA_TYPES
from responder.intake.alerts import BadJSON, decode
from responder.outcomes import tally_mapping
from responder.server.auth import Client
from responder.server.http_common import Gate, bounded_int, error, request_path
from responder.timeline import Incident

READER, APPROVER = "reader", "approver"
MAX_REASON = 2000


def actor_of(client: Client) -> str:
    """How the timeline names what a client decided."""
    return f"api:{client.name}"


class IncidentAPI(Gate):
    """Handlers under /v1/incidents."""

    # reading ------------------------------------------------------------------------------------

    async def incidents(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/incidents: the most recent incidents (`limit`, 1 to 1000)."""
        if denied := await self._api_auth(request, READER):
            return denied
        limit = bounded_int(request, "limit", default=50, low=1, high=1000)
        if isinstance(limit, str):
            return self._refuse(request, "api", "bad_request", 400, limit)
        rows = self.state.timeline.incidents(limit=limit)
        return web.json_response({"incidents": [incident_json(i) for i in rows]})

    async def incident(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/incidents/{id}: one incident with its steps."""
        if denied := await self._api_auth(request, READER):
            return denied
        try:
            incident = self.state.timeline.incident(request.match_info["id"])
        except UsageError:
            return error(404, "no such incident")
        steps = {sid: status for sid, (status, _) in self.state.timeline.steps(incident.id).items()}
        tally = tally_mapping(steps).as_dict()
        return web.json_response({**incident_json(incident), "steps": steps, "step_tally": tally})

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/incidents/{id}/timeline: every event, streamed in order."""
        if denied := await self._api_auth(request, READER):
            return denied
        incident_id = request.match_info["id"]
        try:
            self.state.timeline.incident(incident_id)
        except UsageError:
            return error(404, "no such incident")
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

    async def export(self, request: web.Request) -> web.StreamResponse:
        """The post-incident export, as `responder export` writes it, in any of its formats."""
        if denied := await self._api_auth(request, READER):
            return denied
        fmt = request.query.get("format", "md")
        if fmt not in FORMATS:
            return self._refuse(
                request, "api", "bad_request", 400, f"format must be one of {', '.join(sorted(FORMATS))}"
            )
        incident_id = request.match_info["id"]
        try:
            self.state.timeline.incident(incident_id)
        except UsageError:
            return error(404, "no such incident")
        # Rendered off the event loop into a spooled file (memory up to 1 MiB, then disk), then
        # streamed: a long timeline never sits in memory, and the loop keeps taking alerts.
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+b")  # noqa: SIM115
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._render, incident_id, fmt, spool)
            spool.seek(0)
            suffix = {"md": "md", "html": "html", "json": "json", "jsonl": "jsonl", "csv": "csv"}[fmt]
            response = web.StreamResponse(
                headers={
                    "Content-Type": MEDIA_TYPES[fmt],
                    "Content-Disposition": f'attachment; filename="{incident_id}.{suffix}"',
                }
            )
            await response.prepare(request)
            while chunk := spool.read(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            spool.close()

    def _render(self, incident_id: str, fmt: str, spool: Any) -> None:
        import io

        from responder.export import export
        from responder.timeline import Timeline

        assert self.state.settings is not None
        timeline = Timeline(self.state.settings.database)  # this thread's own connection
        try:
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
            export(timeline, incident_id, fmt, text)
            text.flush()
            text.detach()
        finally:
            timeline.close()

    # deciding -----------------------------------------------------------------------------------

    async def _decision_auth(self, request: web.Request) -> web.Response | None:
        """Approve, deny and release change what happens to a container: they always need an
        authenticated client with the `approver` role. A server started without credentials
        (allowed on loopback for alerts) would otherwise let any local user approve a stop."""
        if not self.state.auth.enabled:
            self.state.metrics.count_rejected("api", "auth")
            self.denied.warning(
                "auth",
                "%s %s from %s refused: no credentials configured",
                request.method,
                request_path(request),
                request.remote,
            )
            return error(
                401,
                "decisions need an authenticated client with the approver role, and this server has no "
                'credentials configured: add a [[server.clients]] entry with roles = ["approver"], '
                "or decide on the controller (responder approve)",
                close=True,
            )
        return await self._api_auth(request, APPROVER)

    def _body(self, request: web.Request, what: str) -> dict[str, Any] | web.Response:
        try:
            body = decode(request["body"] or b"{}")
        except BadJSON as exc:
            return self._refuse(request, "api", "bad_request", 400, str(exc))
        if not isinstance(body, dict):
            return self._refuse(request, "api", "bad_request", 422, f"body must be a JSON object: {what}")
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            return self._refuse(
                request,
                "api",
                "bad_request",
                422,
                f"reason must be a string of at most {MAX_REASON} characters",
            )
        return body

    async def approve(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/incidents/{id}/approve: the client approves; the run carries on once the gate has enough approvers."""
        if denied := await self._decision_auth(request):
            return denied
        body = self._body(request, "{step: ID} or {all: true}, with a reason")
        if isinstance(body, web.Response):
            return body
        step, every = body.get("step"), body.get("all")
        if (step is None) == (every is not True):
            return self._refuse(
                request, "api", "bad_request", 422, "give either step (a gated step id) or all: true"
            )
        incident_id = request.match_info["id"]
        actor = actor_of(request["client"])
        steps = None if every else [str(step)]
        try:
            chosen, waiting = await asyncio.get_running_loop().run_in_executor(
                None, self._approve, incident_id, steps, actor, str(body.get("reason", ""))
            )
        except UsageError:
            return error(404, "no such incident")
        except ApprovalRefused as exc:
            return error(403, str(exc))
        except StateError as exc:
            return error(409, str(exc))
        answer: dict[str, Any] = {"incident_id": incident_id, "approved": chosen, "actor": actor}
        if waiting:
            return web.json_response(
                {**answer, "status": "awaiting_approval", "waiting": waiting}, status=200
            )
        self.state.pool.run_job({"job": "continue", "incident": incident_id})
        return web.json_response({**answer, "status": "resuming"}, status=202)

    def _approve(
        self, incident_id: str, steps: list[str] | None, actor: str, reason: str
    ) -> tuple[list[str], str]:
        service = self._service()
        try:
            chosen = service.approve(incident_id, steps, actor, reason)
            gate = service.gate_waiting(incident_id)
            return chosen, ("" if gate is None else f"step {gate.step}: {approvals.describe(gate)}")
        finally:
            service.timeline.close()

    async def deny(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/incidents/{id}/deny: refuse the waiting step, with a reason; the incident ends."""
        if denied := await self._decision_auth(request):
            return denied
        body = self._body(request, "{reason: why}")
        if isinstance(body, web.Response):
            return body
        incident_id = request.match_info["id"]
        actor = actor_of(request["client"])
        reason = str(body.get("reason", ""))
        if not reason.strip():
            return self._refuse(request, "api", "bad_request", 422, "a denial needs a reason")
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._deny_now, incident_id, actor, reason)
        except UsageError:
            return error(404, "no such incident")
        except StateError as exc:
            return error(409, str(exc))
        return web.json_response({"incident_id": incident_id, "status": "denied", "actor": actor})

    def _deny_now(self, incident_id: str, actor: str, reason: str) -> None:
        service = self._service()
        try:
            service.deny(incident_id, actor, reason)
        finally:
            service.timeline.close()

    async def release(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/incidents/{id}/release: reverse the containment in the background, with a reason."""
        if denied := await self._decision_auth(request):
            return denied
        body = self._body(request, "{reason: why, container: optional name or ID}")
        if isinstance(body, web.Response):
            return body
        incident_id = request.match_info["id"]
        reason, container = str(body.get("reason", "")), body.get("container")
        if not reason.strip():
            return self._refuse(request, "api", "bad_request", 422, "a release needs a reason")
        if container is not None and (not isinstance(container, str) or not 0 < len(container) <= 128):
            return self._refuse(request, "api", "bad_request", 422, "container must be a name or ID")
        try:
            incident = self.state.timeline.incident(incident_id)
        except UsageError:
            return error(404, "no such incident")
        if str(incident.status) in ("running", "released"):
            return error(
                409, f"incident {incident_id} is {incident.status}; release needs a finished or paused run"
            )
        actor = actor_of(request["client"])
        self.state.pool.run_job(
            {
                "job": "release",
                "incident": incident_id,
                "actor": actor,
                "reason": reason,
                "container": container,
            }
        )
        return web.json_response(
            {"incident_id": incident_id, "status": "releasing", "actor": actor}, status=202
        )

    def _service(self) -> Any:
        from responder.service import Service

        assert self.state.settings is not None
        return Service(self.state.settings, self.state.catalog, slack=False, on_event=self.state.observe)


def incident_json(incident: Incident) -> dict[str, Any]:
    """An incident as the API shows it."""
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
