"""#14: decisions through the API by clients with roles, on a real server, dockerd and Ansible.
The actor is the client's identity; the two-person rule; deny, release and export endpoints;
the OpenAPI document matches the real routes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, Docker
from tests.webhook_client import ALERTS_TOKEN, APPROVER_TOKEN, SECOND_APPROVER_TOKEN, TOKEN, Server

pytestmark = pytest.mark.integration
FIXTURE_ARGS = ("--playbooks-dir", str(FIXTURES / "webhook"), "--runbooks-dir", str(FIXTURES / "runbooks"))
GENERIC_PATH = "/v1/alerts/generic"


@pytest.fixture
def server(data_dir: Path, tmp_path: Path) -> Iterator[Server]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "2", secrets_dir=secrets).start()
    yield srv
    srv.stop()


def _paused(server: Server, docker: Docker, rule: str) -> tuple[str, str, str]:
    network = docker.network("dec")
    victim = docker.container("dec", "--network", network)
    reply = server.post(GENERIC_PATH, {"id": f"{rule}-{victim}", "name": rule, "container": victim})
    assert reply.status == 202, reply.body
    incident = server.incident_for(reply.json()["alerts"][0]["alert_id"])
    assert server.wait_status(incident, {"awaiting_approval", "failed"}) == "awaiting_approval"
    return incident, victim, network


def test_a_two_person_step_waits_for_a_second_different_approver(server: Server, docker: Docker) -> None:
    incident, victim, network = _paused(server, docker, "two-person")
    approve = f"/v1/incidents/{incident}/approve"
    first = server.post(approve, {"step": "isolate", "reason": "looks bad"}, token=APPROVER_TOKEN)
    assert first.status == 200, first.body
    assert (
        first.json()["status"] == "awaiting_approval"
        and "1 of 2 approvals (api:ops)" in first.json()["waiting"]
    )
    again = server.post(approve, {"step": "isolate"}, token=APPROVER_TOKEN)  # the same person again
    assert again.status == 403 and "already approved" in again.json()["error"]
    assert server.status(incident) == "awaiting_approval"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]  # one approval is not enough
    second = server.post(approve, {"step": "isolate", "reason": "agreed"}, token=SECOND_APPROVER_TOKEN)
    assert second.status == 202 and second.json()["actor"] == "api:lead", second.body
    assert server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    events = server.get(f"/v1/incidents/{incident}/timeline", token=APPROVER_TOKEN).json()["events"]
    granted = [
        (e["actor"], e["data"]["approval"], e["data"]["of"])
        for e in events
        if e["kind"] == "approval_granted"
    ]
    assert granted == [("api:ops", 1, 2), ("api:lead", 2, 2)]
    assert sum(1 for e in events if e["kind"] == "approval_requested") == 1  # asked once, not again


def test_two_approvers_at_once_give_one_run(server: Server, docker: Docker) -> None:
    incident, victim, _network = _paused(server, docker, "gated")
    approve = f"/v1/incidents/{incident}/approve"
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def press(token: str) -> None:
        barrier.wait()
        answers.append(server.post(approve, {"step": "isolate"}, token=token).status)

    threads = [threading.Thread(target=press, args=(t,)) for t in (APPROVER_TOKEN, SECOND_APPROVER_TOKEN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202, 409], answers  # one decision; the other is told it came too late
    assert server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    started = server.query(
        "SELECT COUNT(*) FROM events WHERE incident_id=? AND kind='step_started' AND step='isolate'", incident
    )[0][0]
    assert started == 1  # the isolation ran once, however many presses
    granted = server.query(
        "SELECT COUNT(*) FROM events WHERE incident_id=? AND kind='approval_granted'", incident
    )
    assert granted[0][0] == 1
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}


def test_deny_needs_a_reason_and_ends_the_incident(server: Server, docker: Docker) -> None:
    incident, victim, network = _paused(server, docker, "gated")
    deny = f"/v1/incidents/{incident}/deny"
    assert server.post(deny, {}, token=APPROVER_TOKEN).status == 422
    denied = server.post(deny, {"reason": "false positive: a pentest", "actor": "root"}, token=APPROVER_TOKEN)
    assert denied.status == 200 and denied.json()["actor"] == "api:ops", denied.body
    assert server.status(incident) == "denied"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]  # never isolated
    (actor, message) = server.query(
        "SELECT actor, message FROM events WHERE incident_id=? AND kind='approval_denied'", incident
    )[0]
    assert actor == "api:ops" and "a pentest" in message
    assert server.post(deny, {"reason": "again"}, token=APPROVER_TOKEN).status == 409


def test_release_and_export_through_the_api(server: Server, docker: Docker) -> None:
    incident, victim, network = _paused(server, docker, "gated")
    assert server.post(f"/v1/incidents/{incident}/approve", {"all": True}, token=APPROVER_TOKEN).status == 202
    assert server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    release = f"/v1/incidents/{incident}/release"
    assert server.post(release, {}, token=APPROVER_TOKEN).status == 422  # a release needs a reason
    accepted = server.post(release, {"reason": "cleared by forensics"}, token=APPROVER_TOKEN)
    assert accepted.status == 202 and accepted.json()["actor"] == "api:ops", accepted.body
    assert server.wait_status(incident, {"released"}) == "released"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]  # reconnected
    assert server.post(release, {"reason": "twice"}, token=APPROVER_TOKEN).status == 409
    (actor,) = server.query(
        "SELECT actor FROM events WHERE incident_id=? AND kind='incident_released'", incident
    )[0]
    assert actor == "api:ops"
    for fmt, marker in (
        ("md", "# Incident "),
        ("html", "<!DOCTYPE html>"),
        ("csv", "incident_id,seq,"),
        ("jsonl", "{"),
    ):
        reply = server.request(
            "GET",
            f"/v1/incidents/{incident}/export?format={fmt}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert reply.status == 200 and reply.body.decode().startswith(marker), (fmt, reply.body[:200])
        assert f'filename="{incident}.' in reply.headers["content-disposition"]
    document = json.loads(
        server.request(
            "GET",
            f"/v1/incidents/{incident}/export?format=json",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).body
    )
    assert document["incident"]["status"] == "released"
    assert (
        server.request(
            "GET", f"/v1/incidents/{incident}/export?format=exe", headers={"Authorization": f"Bearer {TOKEN}"}
        ).status
        == 400
    )
    assert (
        server.request(
            "GET", f"/v1/incidents/{incident}/export", headers={"Authorization": f"Bearer {ALERTS_TOKEN}"}
        ).status
        == 403
    )


def test_the_openapi_document_matches_the_real_routes(server: Server) -> None:
    from responder.server.app import ServerState, build_app

    document = server.get("/v1/openapi.json", token=None).json()
    assert document["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    app = build_app(ServerState.__new__(ServerState))  # the routing table only; no request is served
    routed = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == routed, documented ^ routed
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            role = op.get("x-responder-role")
            if path.startswith("/v1/incidents"):
                assert role == ("reader" if method == "get" else "approver"), (path, method)
            for status, answer in op["responses"].items():
                assert status.isdigit() and answer["description"], (path, method, status)
