"""What every handler of `responder serve` shares: authentication before the body, the
capped body read, refusals that are counted and logged at most once a second per kind, and
the caller's roles.

Handlers are grouped by what they serve (app: alerts and health; incident_api: the incident
API; slack_interactions: Slack's buttons), each a subclass of `Gate`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from responder.errors import InputError
from responder.server.auth import Client, Verdict

if TYPE_CHECKING:
    from responder.server.app import ServerState

MAX_BODY = 1 << 20
BODY_TIMEOUT = 10.0  # seconds a client has to send its whole body once the headers are in
log = logging.getLogger("responder.server")


class _TooLarge(InputError):
    pass


class RateLimitedLog:
    """At most one line per `interval` per kind: an attacker hammering 401s cannot flood the log."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        """A warning line, unless one of this kind went out within the interval."""
        self.log(logging.WARNING, kind, message, *args)

    def info(self, kind: str, message: str, *args: Any) -> None:
        """An info line, unless one of this kind went out within the interval."""
        self.log(logging.INFO, kind, message, *args)

    def log(self, level: int, kind: str, message: str, *args: Any) -> None:
        """A line at `level`, counting the ones it drops and saying so in the next."""
        now = time.monotonic()
        if now - self._last.get(kind, 0.0) < self.interval:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return
        dropped = self._dropped.pop(kind, 0)
        self._last[kind] = now
        log.log(level, message + (f" (+{dropped} similar suppressed)" if dropped else ""), *args)


def bounded_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int | str:
    """A numeric query parameter, bounded on both sides: plain decimal digits only (no sign,
    spaces or underscores, which int() would accept), refused with 400 outside [low, high]."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        return f"{name} must be a whole number from {low} to {high}"
    return int(text)


def error(status: int, message: str, close: bool = False) -> web.Response:
    """A JSON error answer; a 503 says when to retry, and `close` drops the connection."""
    response = web.json_response({"error": message}, status=status)
    if status == 503:
        response.headers["Retry-After"] = "5"
    if close:
        response.force_close()
    return response


class Gate:
    """Authentication, body reading and refusals for one group of handlers."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.denied = RateLimitedLog()

    async def _authenticated_body(self, request: web.Request, source: str) -> bytes | web.Response:
        auth = self.state.auth
        verdict = auth.before_body(request.headers)
        if verdict is not None and not verdict.ok:
            return self._deny(request, source, verdict)
        body = await self._read_body(request, source)
        if isinstance(body, web.Response):
            return body
        if verdict is None:
            verdict = auth.with_body(request.headers, body)
            if not verdict.ok:
                return self._deny(request, source, verdict)
        request["client"] = verdict.client
        return body

    async def _read_body(self, request: web.Request, source: str) -> bytes | web.Response:
        """The whole body, at most MAX_BODY bytes, within the body timeout; a refusal otherwise."""
        try:
            length = request.content_length
            if length is not None and length <= MAX_BODY and request.content.total_bytes >= length:
                body = await read_capped(request)  # all of it has arrived: nothing to wait for
            else:  # asyncio.timeout, not wait_for: no extra task per request
                async with asyncio.timeout(self.state.body_timeout):
                    body = await read_capped(request)
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
                request_path(request),
                request.remote,
            )
            return error(400, "request cut short", close=True)
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
            request_path(request),
            request.remote,
            status,
            reason,
            message[:300],
        )
        return error(status, message, close=status in (408, 413))

    def _deny(self, request: web.Request, source: str, verdict: Verdict) -> web.Response:
        self.state.metrics.count_rejected(source, "auth")
        self.denied.warning(
            "auth",
            "%s %s from %s refused: %s",
            request.method,
            request_path(request),
            request.remote,
            verdict.reason,
        )
        # The unread body is discarded by closing the connection rather than reading it.
        return error(verdict.status, verdict.reason, close=True)

    async def _api_auth(self, request: web.Request, role: str) -> web.Response | None:
        """Authenticate an API call and require `role` of its client (403 otherwise). The
        client is left in request["client"]: its name is the actor for what it decides."""
        result = await self._authenticated_body(request, "api")
        if isinstance(result, web.Response):
            return result
        request["body"] = result
        client: Client | None = request.get("client")
        if client is None or not client.may(role):
            name = client.name if client else "unknown"
            self.state.metrics.count_rejected("api", "forbidden")
            self.denied.warning(
                "forbidden",
                "%s %s from %s refused 403: client %s lacks role %s",
                request.method,
                request_path(request),
                request.remote,
                name,
                role,
            )
            return error(403, f"client {name!r} may not do this: it needs the {role!r} role")
        return None


def request_path(request: web.Request) -> str:
    """The path as the client sent it (still percent-encoded), cut to a length fit for a log."""
    raw = request.raw_path
    return raw if len(raw) <= 200 else raw[:200] + "..."


async def read_capped(request: web.Request) -> bytes:
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
