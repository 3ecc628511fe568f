"""#14: approvals where on-call already is. Buttons on the incident's Slack message, pressed the
way Slack delivers presses (its real interaction payload shapes, signed with the signing secret,
or over Socket Mode), against a real server, dockerd and Ansible, and the local Slack Web API."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import FIXTURES, Docker, run_cli
from tests.slack_payloads import CHANNEL, button, submission
from tests.slack_server import SlackServer, SlackState
from tests.slack_socket_server import SocketModeServer
from tests.webhook_client import Reply, Server

pytestmark = pytest.mark.integration
FIXTURE_ARGS = ("--playbooks-dir", str(FIXTURES / "webhook"), "--runbooks-dir", str(FIXTURES / "runbooks"))
BOT = "xoxb-buttons-token-7d1e"
SIGNING = "slack-signing-secret-4c9a7e1b2d3f"
ALICE, BOB, CAROL, MALLORY = "U0ALICE", "U0BOB", "U0CAROL", "U0MALLORY"  # carol: through a group


@dataclass
class Setup:
    server: Server
    slack: SlackServer
    data_dir: Path
    config: Path
    socket: SocketModeServer | None = None


def _config(tmp_path: Path, slack: SlackServer, socket_mode: bool) -> Path:
    (tmp_path / "signing").write_text(SIGNING + "\n")
    (tmp_path / "app-token").write_text(slack.state.app_token + "\n")
    config = tmp_path / "responder.toml"
    config.write_text(
        f'[slack]\nchannel = "#incidents"\nbase_url = "{slack.base_url}"\ntimeout = 2\ninteractive = true\n'
        + (
            f'socket_mode = true\napp_token_file = "{tmp_path / "app-token"}"\n'
            if socket_mode
            else f'signing_secret_file = "{tmp_path / "signing"}"\n'
        )
        + f'[approvals]\nslack_users = ["{ALICE}", "{BOB}"]\nslack_groups = ["S0LEADS"]\n'
    )
    return config


@pytest.fixture(params=[False], ids=["request-url"])
def setup(request: pytest.FixtureRequest, data_dir: Path, tmp_path: Path) -> Iterator[Setup]:
    with SlackServer(SlackState(token=BOT, groups={"S0LEADS": [CAROL]})) as slack:
        config = _config(tmp_path, slack, socket_mode=False)
        server = Server(
            data_dir, *FIXTURE_ARGS, "--config", str(config), "--workers", "2", env={"SLACK_BOT_TOKEN": BOT}
        ).start()
        try:
            yield Setup(server, slack, data_dir, config)
        finally:
            server.stop()


def _sign(body: bytes, stamp: int, secret: str = SIGNING) -> dict[str, str]:
    mac = hmac.new(secret.encode(), b"v0:" + str(stamp).encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": f"v0={mac}"}


def _press(server: Server, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    sent = {
        "Content-Type": "application/x-www-form-urlencoded",
        **(headers if headers is not None else _sign(body, int(time.time()))),
    }
    return server.request("POST", "/v1/slack/interactions", body, sent)


def _paused(setup: Setup, docker: Docker, rule: str = "gated") -> tuple[str, str, str]:
    network = docker.network("btn")
    victim = docker.container("btn", "--network", network)
    reply = setup.server.post(
        "/v1/alerts/generic", {"id": f"{rule}-{victim}", "name": rule, "container": victim}, token=None
    )
    assert reply.status == 202, reply.body
    incident = setup.server.incident_for(reply.json()["alerts"][0]["alert_id"])
    assert setup.server.wait_status(incident, {"awaiting_approval", "failed"}) == "awaiting_approval"
    return incident, victim, network


def _root(
    setup: Setup, incident: str, wanted: str = "responder_approve", timeout: float = 30
) -> tuple[str, dict[str, Any]]:
    """The root message's ts and its latest blocks, once an update carrying `wanted` arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roots = [m for m in setup.slack.state.messages if m.thread_ts is None and m.key == f"{incident}:root"]
        if roots:
            ts = roots[0].ts
            updates = [u for u in setup.slack.state.updates if u.get("ts") == ts]
            latest = updates[-1] if updates else {"blocks": roots[0].blocks}
            blocks = latest["blocks"] if isinstance(latest["blocks"], list) else json.loads(latest["blocks"])
            if wanted in json.dumps(blocks):
                return ts, {"blocks": blocks}
        time.sleep(0.1)
    raise AssertionError(f"no root message with {wanted!r}: {setup.slack.state.updates[-3:]}")


def _value_of(blocks: dict[str, Any], action_id: str) -> str:
    for block in blocks["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button")


def _ephemeral_for(setup: Setup, user_id: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in setup.slack.state.ephemerals if e.get("user") == user_id]
        if found:
            return str(found[-1]["text"])
        time.sleep(0.1)
    raise AssertionError(f"no ephemeral message for {user_id}")


def test_a_signed_press_approves_and_the_message_changes_in_place_and_forgeries_change_nothing(
    setup: Setup, docker: Docker
) -> None:
    incident, victim, network = _paused(setup, docker)
    ts, root = _root(setup, incident)
    value = _value_of(root, "responder_approve")
    payload = button(ALICE, "responder_approve", value, ts)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    now = int(time.time())
    unsigned = setup.server.request(
        "POST", "/v1/slack/interactions", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    wrong = _press(setup.server, payload, _sign(body, now, "not-the-signing-secret-000"))
    replayed = _press(setup.server, payload, _sign(body, now - 6 * 60))  # signed right, 6 minutes old
    tampered = _press(
        setup.server, button(BOB, "responder_approve", value, ts), _sign(body, now)
    )  # other body
    assert [r.status for r in (unsigned, wrong, replayed, tampered)] == [401, 401, 401, 401]
    time.sleep(1)
    assert setup.server.status(incident) == "awaiting_approval"
    assert not setup.server.query(
        "SELECT 1 FROM events WHERE incident_id=? AND kind LIKE 'approval_%' AND kind != 'approval_requested'",
        incident,
    )
    started = time.monotonic()
    pressed = _press(setup.server, payload)
    assert pressed.status == 200 and time.monotonic() - started < 3.0  # within Slack's limit
    assert setup.server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    (actor, data) = setup.server.query(
        "SELECT actor, data FROM events WHERE incident_id=? AND kind='approval_granted'", incident
    )[0]
    via = json.loads(data)["via"]
    assert actor == f"slack:{ALICE}"
    assert via == {
        "slack_user_id": ALICE,
        "slack_user_name": "alice",
        "slack_channel": CHANNEL,
        "slack_message_ts": ts,
    }
    # the message, updated in place: the buttons gone, who decided and when, what happened next
    _ts, after = _root(setup, incident, wanted="Now succeeded")
    text = json.dumps(after)
    assert "responder_approve" not in text and f"Approved isolate by <@{ALICE}>" in text
    markdown = run_cli("export", incident, "-f", "md", data_dir=setup.data_dir).stdout
    assert f"by slack:{ALICE}" in markdown and f"in Slack: alice, user {ALICE}, channel {CHANNEL}" in markdown
    assert network not in docker.inspect(victim)["NetworkSettings"]["Networks"]


def test_a_non_approver_and_the_initiator_are_refused_and_nothing_changes(
    setup: Setup, docker: Docker, tmp_path: Path
) -> None:
    incident, victim, network = _paused(setup, docker)
    ts, root = _root(setup, incident)
    pressed = _press(
        setup.server, button(MALLORY, "responder_approve", _value_of(root, "responder_approve"), ts)
    )
    assert pressed.status == 200
    assert "not an approver" in _ephemeral_for(setup, MALLORY)
    (actor, data) = setup.server.wait_for(
        lambda: setup.server.query(
            "SELECT actor, data FROM events WHERE incident_id=? AND kind='approval_refused'", incident
        ),
        what="the refusal on the timeline",
    )[0]
    assert actor == f"slack:{MALLORY}" and json.loads(data)["via"]["slack_channel"] == CHANNEL
    assert setup.server.status(incident) == "awaiting_approval"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]
    # an incident Alice started herself (a chat-ops bot runs the CLI as her): her press is refused
    own_victim = docker.container("own", "--network", docker.network("own"))
    started = run_cli(
        "--config", str(setup.config), "run", str(FIXTURES / "playbooks" / "gated.yml"),
        "--runbooks-dir", str(FIXTURES / "runbooks"), "-p", f"container={own_victim}",
        "--as", f"slack:{ALICE}", data_dir=setup.data_dir, env={"SLACK_BOT_TOKEN": BOT},
    )  # fmt: skip
    assert started.returncode == 10, started.output
    own = next(w for w in started.stdout.split() if w.startswith("INC-"))
    own_ts, own_root = _root(setup, own)
    assert (
        _press(
            setup.server, button(ALICE, "responder_approve", _value_of(own_root, "responder_approve"), own_ts)
        ).status
        == 200
    )
    assert "cannot approve its gates" in _ephemeral_for(setup, ALICE)
    assert setup.server.wait_for(
        lambda: setup.server.query(
            "SELECT 1 FROM events WHERE incident_id=? AND kind='approval_refused'", own
        ),
        what="the initiator's refusal on the timeline",
    )
    assert setup.server.status(own) == "awaiting_approval"


def test_a_two_person_step_waits_for_a_second_approver_from_a_group(setup: Setup, docker: Docker) -> None:
    incident, victim, network = _paused(setup, docker, "two-person")
    ts, root = _root(setup, incident)
    value = _value_of(root, "responder_approve")
    assert _press(setup.server, button(ALICE, "responder_approve", value, ts)).status == 200
    assert "1 of 2 approvals" in _ephemeral_for(setup, ALICE)
    setup.slack.state.ephemerals.clear()
    assert _press(setup.server, button(ALICE, "responder_approve", value, ts)).status == 200
    assert "already approved" in _ephemeral_for(setup, ALICE)
    assert setup.server.status(incident) == "awaiting_approval"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]
    assert _press(setup.server, button(CAROL, "responder_approve", value, ts)).status == 200  # via S0LEADS
    assert setup.server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    actors = setup.server.query(
        "SELECT actor FROM events WHERE incident_id=? AND kind='approval_granted' ORDER BY seq", incident
    )
    assert [a[0] for a in actors] == [f"slack:{ALICE}", f"slack:{CAROL}"]


def test_two_presses_at_once_give_one_decision(setup: Setup, docker: Docker) -> None:
    incident, _victim, _network = _paused(setup, docker)
    ts, root = _root(setup, incident)
    value = _value_of(root, "responder_approve")
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def press(user: str) -> None:
        barrier.wait()
        answers.append(_press(setup.server, button(user, "responder_approve", value, ts)).status)

    threads = [threading.Thread(target=press, args=(u,)) for u in (ALICE, BOB)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200, 200]
    assert setup.server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    time.sleep(1)
    granted = setup.server.query(
        "SELECT COUNT(*) FROM events WHERE incident_id=? AND kind='approval_granted'", incident
    )
    started = setup.server.query(
        "SELECT COUNT(*) FROM events WHERE incident_id=? AND kind='step_started' AND step='isolate'", incident
    )
    assert granted[0][0] == 1 and started[0][0] == 1


def test_deny_asks_for_a_reason_in_a_modal_then_ends_the_incident(setup: Setup, docker: Docker) -> None:
    incident, victim, network = _paused(setup, docker)
    ts, root = _root(setup, incident)
    assert (
        _press(setup.server, button(BOB, "responder_deny", _value_of(root, "responder_deny"), ts)).status
        == 200
    )
    deadline = time.monotonic() + 15
    while not setup.slack.state.views and time.monotonic() < deadline:
        time.sleep(0.1)
    (opened,) = setup.slack.state.views
    assert opened["trigger_id"] == f"1.{BOB}.trigger" and opened["view"]["callback_id"] == "responder_deny"
    assert setup.server.status(incident) == "awaiting_approval"  # nothing happens before the reason
    empty = _press(setup.server, submission(BOB, opened["view"], "  "))
    assert empty.status == 200 and empty.json()["response_action"] == "errors"
    assert (
        _press(setup.server, submission(BOB, opened["view"], "a pentest, agreed with the red team")).status
        == 200
    )
    assert setup.server.wait_status(incident, {"denied"}) == "denied"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]
    (actor, data) = setup.server.query(
        "SELECT actor, data FROM events WHERE incident_id=? AND kind='approval_denied'", incident
    )[0]
    assert actor == f"slack:{BOB}" and json.loads(data)["reason"] == "a pentest, agreed with the red team"
    assert json.loads(data)["via"]["slack_message_ts"] == ts
    _ts, after = _root(setup, incident, wanted=f"Denied isolate by <@{BOB}>")
    assert "responder_approve" not in json.dumps(after)


def test_socket_mode_delivers_a_press_and_the_incident_resumes(
    data_dir: Path, tmp_path: Path, docker: Docker
) -> None:
    with SlackServer(SlackState(token=BOT)) as slack, SocketModeServer() as socket:
        slack.state.socket_url = socket.url
        config = _config(tmp_path, slack, socket_mode=True)
        server = Server(
            data_dir, *FIXTURE_ARGS, "--config", str(config), "--workers", "2", env={"SLACK_BOT_TOKEN": BOT}
        ).start()
        try:
            setup = Setup(server, slack, data_dir, config, socket)
            socket.wait_connected()
            # no request URL here: an HTTP press has nowhere to go
            assert server.request("POST", "/v1/slack/interactions", b"payload=%7B%7D", {}).status == 404
            incident, victim, _network = _paused(setup, docker)
            ts, root = _root(setup, incident)
            envelope = socket.deliver(
                button(ALICE, "responder_approve", _value_of(root, "responder_approve"), ts)
            )
            assert socket.wait_ack(envelope)["envelope_id"] == envelope
            assert server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
            assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
            (actor,) = server.query(
                "SELECT actor FROM events WHERE incident_id=? AND kind='approval_granted'", incident
            )[0]
            assert actor == f"slack:{ALICE}"
        finally:
            server.stop()


def test_release_from_slack_asks_why_then_reconnects_the_container(setup: Setup, docker: Docker) -> None:
    incident, victim, network = _paused(setup, docker)
    ts, root = _root(setup, incident)
    assert (
        _press(
            setup.server, button(ALICE, "responder_approve", _value_of(root, "responder_approve"), ts)
        ).status
        == 200
    )
    assert setup.server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    _ts, done = _root(setup, incident, wanted="responder_release")  # the run is over: release offered
    assert (
        _press(
            setup.server, button(BOB, "responder_release", _value_of(done, "responder_release"), ts)
        ).status
        == 200
    )
    deadline = time.monotonic() + 15
    while not setup.slack.state.views and time.monotonic() < deadline:
        time.sleep(0.1)
    (opened,) = setup.slack.state.views
    assert opened["view"]["callback_id"] == "responder_release"
    assert _press(setup.server, submission(BOB, opened["view"], "forensics cleared it")).status == 200
    assert setup.server.wait_status(incident, {"released"}) == "released"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]
    (data,) = setup.server.query(
        "SELECT data FROM events WHERE incident_id=? AND kind='release_requested'", incident
    )[0]
    assert (
        json.loads(data)["via"]["slack_user_id"] == BOB
        and json.loads(data)["reason"] == "forensics cleared it"
    )
    _ts, after = _root(setup, incident, wanted=f"Released by <@{BOB}>")
    assert "responder_release" not in json.dumps(after)
