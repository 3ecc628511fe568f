"""Slack's way in: the Interactivity request URL (`POST /v1/slack/interactions`), and the wiring
that builds the decider (and Socket Mode, for a controller Slack cannot reach) from the config.

Every request is verified with the Slack signing secret before its payload is read: the
`X-Slack-Signature` HMAC over `v0:<timestamp>:<raw body>` (slack_sdk's SignatureVerifier,
constant-time), with a timestamp at most 5 minutes from now, so a captured request cannot be
replayed later. The answer goes out at once; the decision runs behind it (slack_actions).

Secrets: SLACK_SIGNING_SECRET / SLACK_SIGNING_SECRET_FILE or `[slack] signing_secret_file`;
SLACK_APP_TOKEN / SLACK_APP_TOKEN_FILE or `[slack] app_token_file` (Socket Mode); the bot token as
for notifications. Never the command line; worker processes never see the first two.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from responder.catalog import Catalog
from responder.errors import ConfigError
from responder.intake.alerts import ShapeError
from responder.notify.setup import read_secret
from responder.server.http_common import Gate, error, request_path
from responder.server.slack_actions import ApproverPolicy, SlackDecider, answer, parse
from responder.settings import Settings
from responder.timeline import Event

log = logging.getLogger("responder.slack")
TIMESTAMP, SIGNATURE = "X-Slack-Request-Timestamp", "X-Slack-Signature"


@dataclass
class SlackWiring:
    """What the server needs to take decisions from Slack."""

    verifier: Any  # slack_sdk.signature.SignatureVerifier, or None (Socket Mode only)
    decider: SlackDecider
    socket: Any = None  # slack_socket.SocketModeRunner when Socket Mode is on

    def secrets(self) -> list[str]:
        """Values to keep off the timeline and the logs."""
        return [s for s in (getattr(self.verifier, "signing_secret", None),) if s]

    def close(self) -> None:
        """Stop Socket Mode, then let decisions in flight finish."""
        if self.socket is not None:
            self.socket.stop()
        self.decider.close()


class SlackInteractions(Gate):
    """POST /v1/slack/interactions."""

    async def interactions(self, request: web.Request) -> web.StreamResponse:
        """A button press or a modal submission from Slack, verified, acknowledged at once."""
        slack: SlackWiring | None = self.state.slack
        if slack is None or slack.verifier is None:
            return error(404, "Slack interactivity is not configured on this server ([slack] interactive)")
        stamp, signature = request.headers.get(TIMESTAMP, ""), request.headers.get(SIGNATURE, "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) or not signature:
            return self._unsigned(request, f"missing {TIMESTAMP} or {SIGNATURE}")
        body = await self._read_body(request, "slack")
        if isinstance(body, web.Response):
            return body
        if not slack.verifier.is_valid(body=body, timestamp=stamp, signature=signature):
            return self._unsigned(request, "signature does not match, or the timestamp is over 5 minutes old")
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
            payload = json.loads(form.get("payload", [""])[0])
            if not isinstance(payload, dict):
                raise ShapeError("payload is not a JSON object")
            press = parse(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            return self._refuse(request, "slack", "bad_shape", 400, f"not a Slack interaction: {exc}")
        reply = answer(press)
        if reply is not None:
            return web.json_response(reply)
        if press is not None:
            slack.decider.submit(press)
        return web.Response(status=200)

    def _unsigned(self, request: web.Request, why: str) -> web.Response:
        self.state.metrics.count_rejected("slack", "auth")
        self.denied.warning(
            "slack-auth",
            "%s %s from %s refused: %s",
            request.method,
            request_path(request),
            request.remote,
            why,
        )
        return error(401, why, close=True)


def build_slack(
    settings: Settings,
    catalog: Catalog,
    run_job: Callable[[Mapping[str, Any]], None],
    observe: Callable[[Event], None] | None,
    environ: Mapping[str, str] | None = None,
) -> SlackWiring | None:
    """The decider and its ways in, when `[slack] interactive = true`; None otherwise."""
    env = os.environ if environ is None else environ
    slack = settings.slack
    if slack.get("interactive") is not True:
        return None
    bot = read_secret("SLACK_BOT_TOKEN", "token_file", slack, env)
    if not bot:
        raise ConfigError("[slack] interactive needs the bot token (SLACK_BOT_TOKEN or [slack] token_file)")
    signing = read_secret("SLACK_SIGNING_SECRET", "signing_secret_file", slack, env)
    app_token = read_secret("SLACK_APP_TOKEN", "app_token_file", slack, env)
    socket_mode = slack.get("socket_mode") is True
    if socket_mode and not app_token:
        raise ConfigError(
            "[slack] socket_mode needs an app-level token (SLACK_APP_TOKEN or [slack] app_token_file)"
        )
    if not socket_mode and not signing:
        raise ConfigError(
            "[slack] interactive needs the signing secret for the request URL (SLACK_SIGNING_SECRET_FILE "
            "or [slack] signing_secret_file), or socket_mode = true with an app-level token"
        )
    from slack_sdk import WebClient
    from slack_sdk.signature import SignatureVerifier

    from responder.notify.slack import RedactFilter

    logger = logging.getLogger("responder.slack")
    for secret in (bot, signing, app_token):
        if secret:
            logger.addFilter(RedactFilter(secret))
    base_url = str(slack.get("base_url", "https://slack.com/api/"))
    client = WebClient(token=bot, base_url=base_url, timeout=10, logger=logger)
    decider = SlackDecider(
        settings, catalog, ApproverPolicy.from_config(settings.approvals), client, run_job, observe
    )
    wiring = SlackWiring(SignatureVerifier(signing) if signing else None, decider)
    if socket_mode:
        from responder.server.slack_socket import SocketModeRunner

        wiring.socket = SocketModeRunner(str(app_token), base_url, decider, logger)
    return wiring
