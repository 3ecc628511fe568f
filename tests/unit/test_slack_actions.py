"""Slack presses parsed from Slack's payload shapes, who may decide, and the buttons a root
message carries for each state of an incident."""

from __future__ import annotations

import json
from typing import Any

import pytest

from responder.errors import ConfigError
from responder.intake.alerts import ShapeError
from responder.notify.messages import APPROVE, DENY, RELEASE, buttons, root_message
from responder.server.slack_actions import ApproverPolicy, answer, parse
from responder.timeline import Event, Incident
from responder.vocabulary import IncidentStatus
from tests.slack_payloads import button, submission

VALUE = json.dumps({"incident": "INC-20261203-010203-abcd", "step": "isolate"})


def incident(status: IncidentStatus, next_step: str | None = None) -> Incident:
    return Incident(
        "INC-20261203-010203-abcd", "t", "t", status, "contain", "/p.yml", "0" * 64, "high",
        {"container": "web"}, (), {"source": "generic"}, None, None, next_step, "webhook:generic",
    )  # fmt: skip


def test_a_button_press_in_slacks_shape_becomes_a_press() -> None:
    press = parse(button("U0ALICE", APPROVE, VALUE, "1764380000.000001"))
    assert press is not None
    assert (press.action, press.incident, press.step, press.actor) == (
        APPROVE,
        "INC-20261203-010203-abcd",
        "isolate",
        "slack:U0ALICE",
    )
    assert press.via == {
        "slack_user_id": "U0ALICE",
        "slack_user_name": "alice",
        "slack_channel": "C0INCIDENT",
        "slack_message_ts": "1764380000.000001",
    }
    assert press.trigger_id == "1.U0ALICE.trigger" and not press.submitted


def test_a_modal_submission_carries_its_reason_and_an_empty_one_is_sent_back() -> None:
    view = {
        "callback_id": DENY,
        "private_metadata": json.dumps(
            {"incident": "INC-20261203-010203-abcd", "step": "stop", "channel": "C1", "message_ts": "1.2"}
        ),
    }
    press = parse(submission("U0BOB", view, "  pentest  "))
    assert press is not None and press.submitted and press.reason == "pentest" and press.channel == "C1"
    assert answer(press) is None
    empty = parse(submission("U0BOB", view, " "))
    assert answer(empty) == {"response_action": "errors", "errors": {"reason": "A reason is required."}}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "someone_elses_button"}]},
        {"type": "view_closed", "user": {"id": "U1"}},
        {"type": "shortcut"},
    ],
)
def test_what_is_not_ours_is_ignored(payload: dict[str, Any]) -> None:
    assert parse(payload) is None


@pytest.mark.parametrize(
    "value", ["not json", json.dumps(["INC"]), json.dumps({"step": "x"}), json.dumps({"incident": 5})]
)
def test_a_malformed_value_on_our_button_is_a_shape_error(value: str) -> None:
    with pytest.raises(ShapeError):
        parse(button("U0ALICE", APPROVE, value, "1.2"))
    with pytest.raises(ShapeError):
        parse(button("U0AL ICE", APPROVE, VALUE, "1.2"))  # not a Slack user ID


def test_approvers_by_severity_replace_the_defaults() -> None:
    policy = ApproverPolicy.from_config(
        {"slack_users": ["U1"], "slack_groups": ["S1"], "severity": {"critical": {"slack_users": ["U9"]}}}
    )
    assert policy.lists_for("high") == (frozenset({"U1"}), frozenset({"S1"}))
    assert policy.lists_for("critical") == (frozenset({"U9"}), frozenset())
    with pytest.raises(ConfigError, match="must be a list of Slack IDs"):
        ApproverPolicy.from_config({"slack_users": "U1"})
    with pytest.raises(ConfigError, match="must be a list of Slack IDs"):
        ApproverPolicy.from_config({"slack_users": ["<@U1>"]})


def test_the_root_message_offers_what_can_be_decided_now() -> None:
    waiting = [b["action_id"] for b in buttons(incident(IncidentStatus.AWAITING_APPROVAL, "stop"))]
    assert waiting == ["responder_approve", "responder_approve_all", "responder_deny"]
    assert [b["action_id"] for b in buttons(incident(IncidentStatus.SUCCEEDED))] == [RELEASE]
    assert (
        buttons(incident(IncidentStatus.RUNNING)) == [] and buttons(incident(IncidentStatus.RELEASED)) == []
    )
    plain = root_message(incident(IncidentStatus.AWAITING_APPROVAL, "stop"), "k", [], "web")
    assert "actions" not in json.dumps(plain.blocks)  # not interactive: no buttons
    decided = Event(
        "INC-20261203-010203-abcd", 9, "2026-12-03T01:02:09Z", "approval_granted", "isolate", None,
        "slack:U0ALICE", "m", {"reason": "<b>seen</b>"},
    )  # fmt: skip
    message = root_message(incident(IncidentStatus.RUNNING), "k", [], "web", True, decided)
    text = json.dumps(message.blocks)
    assert (
        "Approved isolate by <@U0ALICE> at 2026-12-03T01:02:09Z: &lt;b&gt;seen&lt;/b&gt;. Now running."
        in text
    )
    assert "responder_approve" not in text
