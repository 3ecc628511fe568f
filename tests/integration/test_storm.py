"""#13 alert storms against the real server, the shipped contain-container playbook and the real
dockerd: alerts that arrive together open one fleet incident, every alert is linked to the
incident that holds its container, and a kill -9 mid-storm loses and repeats nothing."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Docker, run_cli
from tests.unit.test_alert_intake import AM
from tests.webhook_client import Server

pytestmark = pytest.mark.integration
AM_PATH, FALCO_PATH = "/v1/alerts/alertmanager", "/v1/alerts/falco"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def server(data_dir: Path, secrets_dir: Path) -> Iterator[Server]:
    srv = Server(data_dir, "--workers", "2", secrets_dir=secrets_dir).start()
    yield srv
    srv.stop()


def notification(containers: list[str]) -> dict[str, Any]:
    """One Alertmanager notification with a firing ContainerCompromised alert per container."""
    payload = copy.deepcopy(AM)
    template = payload["alerts"][0]
    payload["alerts"] = []
    for name in containers:
        alert = copy.deepcopy(template)
        alert["labels"] = {"alertname": "ContainerCompromised", "severity": "critical", "container": name}
        alert["status"] = "firing"
        alert["fingerprint"] = uuid.uuid4().hex[:16]
        payload["alerts"].append(alert)
    payload["groupLabels"] = {"alertname": "ContainerCompromised"}
    payload["commonLabels"] = {"alertname": "ContainerCompromised", "severity": "critical"}
    return payload


def _isolated(docker: Docker, name: str) -> bool:
    return docker.inspect(name)["NetworkSettings"]["Networks"] == {}


def _alerts(server: Server, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    marks = ",".join("?" * len(ids))
    rows = server.query(f"SELECT id, state, incident_id FROM alerts WHERE id IN ({marks})", *ids)
    return {int(r[0]): (str(r[1]), r[2]) for r in rows}


def test_one_notification_opens_one_fleet_incident_and_links_every_alert(
    server: Server, docker: Docker
) -> None:
    net = docker.network("storm")
    victims = [docker.container(f"storm{i}", "--network", net) for i in range(50)]
    reply = server.post(AM_PATH, notification(victims))
    assert reply.status == 202, reply.body
    ids = [a["alert_id"] for a in reply.json()["alerts"]]
    assert len(ids) == 50 and all(a["result"] == "queued" for a in reply.json()["alerts"])
    server.wait_for(lambda: all(_isolated(docker, v) for v in victims), what="every container isolated")
    states = server.wait_for(
        lambda: (lambda s: s if all(st == "started" and inc for st, inc in s.values()) else None)(
            _alerts(server, ids)
        ),
        what="every alert started",
    )
    incidents = {inc for _, inc in states.values()}
    assert len(incidents) == 1, states  # queued together: one incident for the whole storm
    (incident,) = incidents
    assert server.wait_status(incident, {"awaiting_approval", "failed"}) == "awaiting_approval"
    timeline = server.get(f"/v1/incidents/{incident}/timeline").json()["events"]
    isolate = [e for e in timeline if e["kind"] == "step_finished" and e["step"] == "isolate"]
    assert isolate and "50 of 50 containers on 1 host" in isolate[-1]["message"]

    # A later alert for a new container opens a further incident; one for a container the fleet
    # incident holds joins it (no second run).
    late = docker.container("late", "--network", net)
    again = server.post(AM_PATH, notification([late]))
    late_id = again.json()["alerts"][0]["alert_id"]
    server.wait_for(lambda: _isolated(docker, late), what="the late container isolated")
    late_state = server.wait_for(
        lambda: (lambda s: s if s[late_id][1] else None)(_alerts(server, [late_id])),
        what="late alert started",
    )
    assert late_state[late_id][1] != incident
    repeat = server.post(AM_PATH, notification([victims[3]]))
    repeat_id = repeat.json()["alerts"][0]["alert_id"]
    server.wait_for(
        lambda: _alerts(server, [repeat_id])[repeat_id] == ("attached", incident),
        what="the alert for a held container to join the fleet incident",
    )


def test_kill9_mid_storm_loses_nothing_and_contains_each_container_once(
    data_dir: Path, secrets_dir: Path, docker: Docker
) -> None:
    net = docker.network("kill9storm")
    waves = [[docker.container(f"k9w{w}c{i}", "--network", net) for i in range(8)] for w in range(3)]
    srv = Server(data_dir, "--workers", "2", secrets_dir=secrets_dir).start()
    acknowledged: list[int] = []
    for wave in waves:
        reply = srv.post(AM_PATH, notification(wave))
        assert reply.status == 202, reply.body
        acknowledged += [a["alert_id"] for a in reply.json()["alerts"]]
    # cut the server while the storm's first incidents are running
    srv.wait_for(
        lambda: srv.query("SELECT COUNT(*) FROM incidents WHERE status='running'") != [(0,)],
        what="a storm incident running",
    )
    srv.kill9()
    restarted = Server(data_dir, "--workers", "2", secrets_dir=secrets_dir)
    restarted.port = srv.port
    restarted.start()
    try:
        restarted.wait_for(
            lambda: (
                restarted.query("SELECT COUNT(*) FROM alerts WHERE state IN ('queued', 'claimed')") == [(0,)]
                and restarted.query("SELECT COUNT(*) FROM incidents WHERE status IN ('running', 'blocked')")
                == [(0,)]
            ),
            timeout=300,
            what="the queue to drain after the restart",
        )
        for (incident,) in restarted.query("SELECT id FROM incidents WHERE status='interrupted'"):
            resumed = run_cli("resume", incident, data_dir=data_dir)
            assert resumed.returncode in (0, 10), resumed.output  # done, or at the stop gate
        states = _alerts(restarted, acknowledged)
        assert set(states) == set(acknowledged)  # nothing acknowledged is lost
        assert all(state in ("started", "attached") and inc for state, inc in states.values()), states
        every = [v for wave in waves for v in wave]
        assert all(_isolated(docker, v) for v in every)
        # no container acted on by two incidents: each was isolated by exactly one
        by_container: dict[str, set[str]] = {}
        for incident, data in restarted.query(
            "SELECT incident_id, data FROM events WHERE kind='step_finished' AND step='isolate'"
        ):
            for out in json.loads(data).get("outputs", {}).values():
                for cid, entry in (out.get("targets") or {}).items():
                    if entry.get("outcome") == "succeeded" and entry.get("changed"):
                        by_container.setdefault(cid, set()).add(incident)
        assert all(len(owners) == 1 for owners in by_container.values()), by_container
    finally:
        restarted.stop()


def test_the_next_alerts_isolation_never_waits_behind_another_runs_evidence(
    data_dir: Path, secrets_dir: Path, docker: Docker
) -> None:
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    srv = Server(
        data_dir,
        "--playbooks-dir",
        str(fixtures / "webhook"),
        "--runbooks-dir",
        str(fixtures / "runbooks"),
        "--workers",
        "1",
        secrets_dir=secrets_dir,
    ).start()
    try:
        net = docker.network("phase")
        first, second = (
            docker.container("phase1", "--network", net),
            docker.container("phase2", "--network", net),
        )
        srv.post("/v1/alerts/generic", {"id": "p1", "name": "contain-slow", "container": first})
        srv.wait_for(lambda: _isolated(docker, first), timeout=60, what="the first container isolated")
        srv.post("/v1/alerts/generic", {"id": "p2", "name": "contain-slow", "container": second})
        # one worker, and the first run spends 60 s on its evidence step: the second alert is
        # contained now all the same, because the first run's containment step is done
        srv.wait_for(lambda: _isolated(docker, second), timeout=30, what="the second container isolated")
        running = srv.query("SELECT COUNT(*) FROM incidents WHERE status='running'")
        assert running == [(2,)], running  # both still collecting evidence
    finally:
        srv.stop(timeout=120)
