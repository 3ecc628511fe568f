"""Interaction payloads shaped as Slack sends them (block_actions for a button in a channel
message, view_submission for a modal), for the Slack interactivity tests."""

from __future__ import annotations

import time
from typing import Any

CHANNEL = "C0INCIDENT"


def user(user_id: str) -> dict[str, str]:
    name = user_id.removeprefix("U0").lower()
    return {"id": user_id, "username": name, "name": name, "team_id": "T0TEST"}


def button(user_id: str, action_id: str, value: str, message_ts: str) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a button in a channel message."""
    return {
        "type": "block_actions",
        "user": user(user_id),
        "api_app_id": "A0TEST",
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        },
        "trigger_id": f"1.{user_id}.trigger",
        "team": {"id": "T0TEST", "domain": "example"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "incidents"},
        "message": {"type": "message", "ts": message_ts, "text": "Incident", "blocks": []},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0TEST/1/unused",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "responder_decisions",
                "text": {"type": "plain_text", "text": "Approve", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def submission(user_id: str, view: dict[str, Any], reason: str) -> dict[str, Any]:
    """A view_submission payload as Slack sends it when the reason modal is submitted."""
    return {
        "type": "view_submission",
        "team": {"id": "T0TEST", "domain": "example"},
        "user": user(user_id),
        "api_app_id": "A0TEST",
        "token": "verification-token-unused",
        "trigger_id": f"2.{user_id}.trigger",
        "view": {
            "id": "V0TEST",
            "team_id": "T0TEST",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}},
            "hash": "1.abc",
        },
        "response_urls": [],
        "is_enterprise_install": False,
    }
