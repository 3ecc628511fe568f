"""Socket Mode: Slack's interactions over an outbound WebSocket, for a controller that Slack
cannot reach with HTTP. slack-sdk's built-in client opens the connection (apps.connections.open
with the app-level token), reconnects when it drops, and hands over each envelope; we ack it at
once and decide behind it, as for the request URL.
"""

from __future__ import annotations

import logging
from typing import Any

from responder.intake.alerts import ShapeError
from responder.server.slack_actions import SlackDecider, answer, parse

log = logging.getLogger("responder.slack")


class SocketModeRunner:
    """The Socket Mode connection of one server."""

    def __init__(self, app_token: str, base_url: str, decider: SlackDecider, logger: logging.Logger) -> None:
        from slack_sdk import WebClient
        from slack_sdk.socket_mode import SocketModeClient

        self.decider = decider
        # The app-level token only opens the connection; decisions answer with the bot token.
        self.client = SocketModeClient(
            app_token=app_token,
            web_client=WebClient(token=app_token, base_url=base_url, timeout=10, logger=logger),
            logger=logger,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)

    def start(self) -> None:
        """Connect (in the client's own threads); never blocks the server's start for long."""
        try:
            self.client.connect()
        except Exception as exc:  # Slack unreachable: the client keeps trying; alerts still flow
            log.error("Socket Mode could not connect yet: %s", exc)

    def stop(self) -> None:
        """Close the connection."""
        try:
            self.client.close()
        except Exception as exc:
            log.warning("Socket Mode close: %s", exc)

    def _on_request(self, client: Any, request: Any) -> None:
        from slack_sdk.socket_mode.response import SocketModeResponse

        if request.type != "interactive":
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            return
        try:
            press = parse(request.payload if isinstance(request.payload, dict) else {})
        except ShapeError as exc:
            log.warning("Socket Mode: not a Slack interaction we take: %s", exc)
            press = None
        reply = answer(press)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=reply))
        if press is not None and reply is None:
            self.decider.submit(press)
