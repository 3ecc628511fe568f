"""`responder serve` against the real thing: a server process on loopback, real-format payloads,
real runs through ansible-runner on the real dockerd (and over SSH), kill -9 and restart."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from responder.server.auth import HUB_HEADER, sign_hub, sign_timestamped
from tests.conftest import FIXTURES, Docker, SSHTarget, run_cli
from tests.unit.test_alert_intake import AM, FALCO
from tests.webhook_client import ALERTS_TOKEN, APPROVER_TOKEN, HMAC_SECRET, TOKEN, Server

pytestmark = pytest.mark.integration
FIXTURE_ARGS = ("--playbooks-dir", str(FIXTURES / "webhook"), "--runbooks-dir", str(FIXTURES / "runbooks"))
AM_PATH, FALCO_PATH, GENERIC_PATH = "/v1/alerts/alertmanager", "/v1/alerts/falco", "/v1/alerts/generic"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def server(data_dir: Path, secrets_dir: Path) -> Iterator[Server]:
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "2", secrets_dir=secrets_dir).start()
    yield srv
    srv.stop()


def am_alert(
    name: str, labels: dict[str, str] | None = None, status: str = "firing", key: str = ""
) -> dict[str, Any]:
    payload = copy.deepcopy(AM)
    alert = payload["alerts"][0]
    alert["labels"] = {"alertname": name, **(labels or {})}
    alert["status"] = status
    alert["fingerprint"] = key or uuid.uuid4().hex[:16]
    payload["groupLabels"] = payload["commonLabels"] = {"alertname": name}
    return payload


def generic(name: str, **fields: Any) -> dict[str, Any]:
    return {"id": fields.pop("id", uuid.uuid4().hex), "name": name, **fields}


# authentication and status codes ---------------------------------------------------------------


def test_every_auth_case(server: Server, data_dir: Path, secrets_dir: Path, tmp_path: Path) -> None:
    body = json.dumps(am_alert("NothingRoutesThis")).encode()
    assert server.post(AM_PATH, body, token=None).status == 401
    assert server.post(AM_PATH, body, token="wrong-token-000000000000").status == 401
    assert server.post(AM_PATH, body, token=TOKEN[:-1]).status == 401  # a prefix of the right one
    assert server.post(AM_PATH, body, token=TOKEN + "x").status == 401
    assert server.post(AM_PATH, body, token=None, Authorization=f"Basic {TOKEN}").status == 401
    assert server.query("SELECT COUNT(*) FROM alerts") == [(0,)]  # nothing refused was stored

    ok = server.post(AM_PATH, body)
    assert (ok.status, ok.json()["alerts"][0]["result"]) == (200, "unmatched")
    signed = server.post(AM_PATH, body, token=None, **{HUB_HEADER: sign_hub(HMAC_SECRET.encode(), body)})
    assert (signed.status, signed.json()["alerts"][0]["result"]) == (200, "duplicate")
    bad = server.post(AM_PATH, body, token=None, **{HUB_HEADER: sign_hub(b"not-the-secret-00000", body)})
    assert bad.status == 401
    reserialised = json.dumps(json.loads(body), indent=2).encode()
    assert (
        server.post(
            AM_PATH, reserialised, token=None, **{HUB_HEADER: sign_hub(HMAC_SECRET.encode(), body)}
        ).status
        == 401
    )
    now = int(time.time())
    fresh = sign_timestamped(HMAC_SECRET.encode(), body, now)
    assert server.post(AM_PATH, body, token=None, **fresh).status == 200
    stale = sign_timestamped(HMAC_SECRET.encode(), body, now - 6 * 60)
    reply = server.post(AM_PATH, body, token=None, **stale)
    assert reply.status == 401 and "stale" in reply.json()["error"]
    assert server.get("/v1/incidents", token=None).status == 401
    assert server.get("/v1/incidents").status == 200

    # HMAC only: a request with no signature header at all is malformed (400), not unauthorised.
    hmac_only = Server(
        tmp_path / "data2", *FIXTURE_ARGS, "--workers", "0", secrets_dir=secrets_dir, auth="hmac"
    )
    hmac_only.data_dir.mkdir(mode=0o700)
    hmac_only.start()
    try:
        assert hmac_only.post(AM_PATH, body, token=None).status == 400
        assert hmac_only.post(AM_PATH, body, token=TOKEN).status == 400  # no token is configured there
        good = hmac_only.post(AM_PATH, body, token=None, **{HUB_HEADER: sign_hub(HMAC_SECRET.encode(), body)})
        assert good.status == 200
    finally:
        hmac_only.stop()
    metrics = server.request("GET", "/metrics").body.decode()
    assert 'responder_alerts_rejected_total{reason="auth",source="alertmanager"} 8.0' in metrics
    assert TOKEN not in server.log() and HMAC_SECRET not in server.log()


def _raw_exchange(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `head`, then chunks until the server answers or closes; return (answer, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    sent = 0
    sock.setblocking(False)
    answer = b""
    try:
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
                sent += len(chunk)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return answer, sent


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_status_codes(server: Server) -> None:
    assert server.post(AM_PATH, b'{"version": "4", "alerts": [}').status == 400
    assert server.post(AM_PATH, b'{"version": "4", "version": "4"}').status == 400
    assert server.post(AM_PATH, b"[" * 50_000 + b"]" * 50_000).status == 400
    shape = server.post(AM_PATH, {"version": "3", "alerts": []})
    assert shape.status == 422 and "version" in shape.json()["error"]
    assert server.post(AM_PATH, {"version": "4"}).status == 422
    assert server.post(AM_PATH, {"version": "4", "alerts": {"a": 1}}).status == 422
    assert server.post(FALCO_PATH, {"output": "no rule"}).status == 422
    assert server.post(GENERIC_PATH, {"name": "no id"}).status == 422
    extra = am_alert("NothingRoutesThis")
    extra["somethingNew"] = {"ignored": True}
    assert server.post(AM_PATH, extra).status == 200  # unknown fields are ignored
    hostile = server.post(AM_PATH, am_alert("WhIsolate", {"container": "web;rm -rf /"}))
    assert hostile.status == 422 and "rejected_input" in hostile.json()["alerts"][0]["reason"]

    assert server.proc is not None
    rss_before = _rss_kib(server.proc.pid)
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    announced = (
        b"POST /v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 10485760\r\n\r\n"
    )
    answer, sent = _raw_exchange(server.port, announced, iter([b"x" * 65536] * 160))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 10485760  # refused before the whole body was sent
    chunked = (
        b"POST /v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"10000\r\n" + b"y" * 65536 + b"\r\n"
    answer, sent = _raw_exchange(server.port, chunked, iter([piece] * 160))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 160 * len(piece)
    assert b"connection: close" in answer.lower()
    assert _rss_kib(server.proc.pid) - rss_before < 20 * 1024  # the 10 MB bodies were never buffered
    assert server.request("GET", "/readyz").status == 200


def test_busy_database_answers_503_and_the_retry_is_taken(server: Server) -> None:
    import sqlite3

    blocker = sqlite3.connect(server.data_dir / "timeline.db", isolation_level=None, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        reply = server.post(AM_PATH, am_alert("NothingRoutesThis", key="busy-1"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert reply.status == 503 and reply.headers["retry-after"] == "5"
    assert server.query("SELECT COUNT(*) FROM alerts") == [(0,)]
    retry = server.post(AM_PATH, am_alert("NothingRoutesThis", key="busy-1"))
    assert (retry.status, retry.json()["alerts"][0]["result"]) == (200, "unmatched")


def test_disk_full_answers_503_and_nothing_acknowledged_is_lost(tmp_path: Path, secrets_dir: Path) -> None:
    data_dir = tmp_path / "small"
    data_dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(data_dir)], check=True)
    try:
        os.chmod(data_dir, 0o700)
        srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "0", secrets_dir=secrets_dir).start()
        try:
            first = srv.post(AM_PATH, am_alert("NothingRoutesThis", key="before-full"))
            assert first.status == 200
            filler = data_dir / "filler"
            with open(filler, "wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError:
                    pass
            big = am_alert("NothingRoutesThis", {"blob": "z" * 200_000}, key="during-full")
            reply = srv.post(AM_PATH, big)
            assert reply.status == 503, reply.body
            assert srv.request("GET", "/healthz").status == 200  # the server stays up
            filler.unlink()
            again = srv.post(AM_PATH, big)
            assert (again.status, again.json()["alerts"][0]["result"]) == (200, "unmatched")
            keys = {r[0] for r in srv.query("SELECT dedup_key FROM alerts")}
            assert any("before-full" in k for k in keys) and any("during-full" in k for k in keys)
            assert "could not commit" in srv.log()
        finally:
            srv.stop()
    finally:
        subprocess.run(["umount", str(data_dir)], check=False)


def test_refuses_a_public_address_without_auth(data_dir: Path) -> None:
    refused = run_cli(
        "serve", "--host", "0.0.0.0", "--port", "1", *FIXTURE_ARGS, data_dir=data_dir, timeout=60
    )
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in refused.stderr
    assert "--insecure-no-auth" in refused.stderr
    srv = Server(data_dir, "--host", "0.0.0.0", "--insecure-no-auth", *FIXTURE_ARGS, "--workers", "0").start()
    try:
        assert srv.post(AM_PATH, am_alert("NothingRoutesThis"), token=None).status == 200
    finally:
        srv.stop()


def test_invalid_playbook_keeps_the_server_from_starting(data_dir: Path) -> None:
    result = run_cli(
        "serve", "--port", "1", "--playbooks-dir", str(FIXTURES / "playbooks"), data_dir=data_dir, timeout=60
    )
    assert result.returncode == 2
    assert "refusing to serve with invalid playbooks" in result.stderr
    assert "broken.yml:" in result.stderr


# alerts that run playbooks ---------------------------------------------------------------------


def test_alertmanager_alert_isolates_once_and_resolved_undoes_nothing(server: Server, docker: Docker) -> None:
    network = docker.network("wh")
    victim = docker.container("victim", "--network", network)
    alert = am_alert("WhIsolate", {"container": victim, "severity": "critical"}, key="fp-" + victim[-4:])
    first = server.post(AM_PATH, alert)
    assert first.status == 202, first.body
    (decision,) = first.json()["alerts"]
    assert (decision["result"], decision["playbook"]) == ("queued", "wh-isolate")
    again = server.post(AM_PATH, alert)
    assert (again.status, again.json()["alerts"][0]["result"]) == (200, "duplicate")
    incident = server.incident_for(decision["alert_id"])
    assert server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}

    resolved = copy.deepcopy(alert)
    resolved["alerts"][0]["status"] = "resolved"
    reply = server.post(AM_PATH, resolved)
    assert (reply.status, reply.json()["alerts"][0]["result"]) == (200, "resolved")
    assert server.post(AM_PATH, alert).json()["alerts"][0]["result"] == "duplicate"
    time.sleep(1.0)
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}  # still isolated
    assert server.query("SELECT COUNT(*) FROM incidents") == [(1,)]
    timeline = server.get(f"/v1/incidents/{incident}/timeline").json()
    kinds = [e["kind"] for e in timeline["events"]]
    assert "alert_resolved" in kinds and "alert_repeated" in kinds
    assert not any(k.startswith("release") for k in kinds)
    detail = server.get(f"/v1/incidents/{incident}").json()
    assert detail["status"] == "succeeded" and detail["trigger"]["source"] == "alertmanager"
    assert detail["steps"] == {"isolate": "succeeded"}
    assert server.get("/v1/incidents/INC-20000101-000000-0000").status == 404
    metrics = server.request("GET", "/metrics").body.decode()
    for line in (
        'responder_alerts_received_total{source="alertmanager"} 4.0',
        'responder_alerts_deduplicated_total{source="alertmanager"} 2.0',
        'responder_incidents{status="succeeded"} 1.0',
        'responder_step_duration_seconds_count{step="isolate"} 1.0',
        'responder_alerts{state="started"} 1.0',
        'responder_alerts{state="resolved"} 1.0',
        "# TYPE responder_step_duration_seconds histogram",
        'responder_build_info{ansible_core="',  # prometheus_client: build info and process metrics
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE python_info gauge",
    ):
        assert line in metrics, metrics


def test_falco_short_id_is_resolved_on_the_named_host_over_ssh(
    data_dir: Path, secrets_dir: Path, docker: Docker, sshd: SSHTarget, tmp_path: Path
) -> None:
    inventory = sshd.inventory(tmp_path / "inventory.yml", {"dockerhost": {}, "otherhost": {}})
    network = docker.network("falco")
    victim = docker.container("falco", "--network", network)
    short_id = docker.inspect(victim)["Id"][:12]
    srv = Server(
        data_dir, *FIXTURE_ARGS, "-i", str(inventory), "--workers", "1", secrets_dir=secrets_dir
    ).start()
    try:
        event = copy.deepcopy(FALCO)
        event["output_fields"]["container.id"] = short_id
        event["hostname"] = "dockerhost"
        reply = srv.post(FALCO_PATH, event)
        assert reply.status == 202, reply.body
        alert_id = reply.json()["alerts"][0]["alert_id"]
        redelivery = {**event, "uuid": str(uuid.uuid4())}  # Falcosidekick: new uuid, same event
        assert srv.post(FALCO_PATH, redelivery).json()["alerts"][0]["result"] == "duplicate"
        incident = srv.incident_for(alert_id)
        assert srv.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
        assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
        rows = srv.query("SELECT host_limit, params FROM incidents WHERE id=?", incident)
        assert rows[0][0] == "dockerhost" and json.loads(rows[0][1]) == {"container": short_id}
        hosts = {
            r[0]
            for r in srv.query("SELECT host FROM events WHERE incident_id=? AND host IS NOT NULL", incident)
        }
        assert hosts == {"dockerhost"}  # only the host the event came from

        host_event = copy.deepcopy(FALCO)
        host_event["output_fields"] = {"container.id": "host", "proc.cmdline": "sshd"}
        host_event.pop("uuid")
        reply = srv.post(FALCO_PATH, host_event)
        assert (reply.status, reply.json()["alerts"][0]["result"]) == (200, "no_action")
        assert srv.query("SELECT COUNT(*) FROM incidents") == [(1,)]
    finally:
        srv.stop()


def test_injection_canaries_in_every_alert_field_stay_data(server: Server, docker: Docker) -> None:
    tag = uuid.uuid4().hex[:8]
    canaries = {
        "template": f"{{{{ lookup('pipe','touch /tmp/responder-canary-{tag}-t') }}}}",
        "shell": f"$(touch /tmp/responder-canary-{tag}-s)",
        "semicolon": f"x; touch /tmp/responder-canary-{tag}-c",
        "backtick": f"`touch /tmp/responder-canary-{tag}-b`",
    }
    files = [Path(f"/tmp/responder-canary-{tag}-{s}") for s in "tscb"]
    incidents = []
    for number, (kind, value) in enumerate(canaries.items()):
        am = am_alert("WhCanary", {"instance": value, "container": value, "severity": value, value: value})
        am["alerts"][0]["annotations"] = {"description": value, "summary": value}
        am["commonAnnotations"] = {"summary": value}
        falco = copy.deepcopy(FALCO)
        falco.update(rule="Wh canary", output=value, hostname="node1", tags=[value])
        falco["output_fields"] = {
            "container.id": f"{number:012x}",
            "container.name": value,
            "proc.cmdline": value,
        }
        gen = generic(
            "canary", container=value, labels={"value": value}, details={"nested": [value]}, host="node1"
        )
        for path, payload in ((AM_PATH, am), (FALCO_PATH, falco), (GENERIC_PATH, gen)):
            reply = server.post(path, payload)
            assert reply.status == 202, (kind, path, reply.body)
            incidents.append((value, server.incident_for(reply.json()["alerts"][0]["alert_id"])))
        # the same values where a playbook's param pattern applies are refused at the door
        refused = server.post(AM_PATH, am_alert("WhIsolate", {"container": value}))
        assert refused.status == 422
    for value, incident in incidents:
        server.wait_status(incident, {"succeeded", "failed"})
        outputs = dict(server.query("SELECT step_id, outputs FROM steps WHERE incident_id=?", incident))
        assert json.loads(outputs["echo"])["printed"] == value  # literally, never rendered or run
        steps = dict(server.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident))
        # the container lookup refuses the value (no such container / not a valid reference)
        assert steps == {"echo": "succeeded", "echo_other": "succeeded", "isolate": "failed"}, steps
    assert not [f for f in files if f.exists()], "an alert field was rendered or run by a shell"
    for f in files:
        f.unlink(missing_ok=True)


def test_burst_with_duplicates_runs_each_alert_once(server: Server) -> None:
    unique = 24
    deliveries = [n for n in range(unique) for _ in range(6)]
    random.Random(3).shuffle(deliveries)
    keys = [f"burst-{uuid.uuid4().hex[:6]}-{n}" for n in range(unique)]

    def send(n: int) -> int:
        return server.post(AM_PATH, am_alert("WhBurst", {"value": f"v{n}"}, key=keys[n])).status

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(send, deliveries))
    assert statuses.count(202) == unique and statuses.count(200) == len(deliveries) - unique
    server.wait_for(
        lambda: (
            server.query("SELECT COUNT(*) FROM alerts WHERE state IN ('queued', 'claimed')") == [(0,)]
            and server.query("SELECT COUNT(*) FROM incidents WHERE status='running'") == [(0,)]
        ),
        timeout=240,
        what="the burst to be run",
    )
    assert server.query("SELECT COUNT(*) FROM incidents") == [(unique,)]
    assert server.query("SELECT COUNT(DISTINCT alert_id) FROM incidents") == [(unique,)]
    assert server.query("SELECT status, COUNT(*) FROM incidents GROUP BY status") == [("succeeded", unique)]
    assert server.query("SELECT SUM(repeats) FROM alerts") == [(len(deliveries) - unique,)]


def test_kill9_mid_burst_loses_nothing_acknowledged_and_runs_nothing_twice(
    data_dir: Path, secrets_dir: Path
) -> None:
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "1", secrets_dir=secrets_dir).start()
    unique = 40
    deliveries = [n for n in range(unique) for _ in range(3)]
    random.Random(5).shuffle(deliveries)
    acknowledged: set[int] = set()
    lock = threading.Lock()
    killed = threading.Event()

    def send(n: int) -> None:
        if killed.is_set():
            return
        try:
            reply = srv.post(AM_PATH, am_alert("WhBurst", {"value": f"k{n}"}, key=f"kill9-{n}"))
        except OSError:
            return
        if reply.status in (200, 202):
            with lock:
                acknowledged.add(n)

    def killer() -> None:
        while len(acknowledged) < unique // 2:
            time.sleep(0.005)
        srv.kill9()
        killed.set()

    watcher = threading.Thread(target=killer)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, deliveries))
    watcher.join(timeout=60)
    assert killed.is_set() and acknowledged
    restarted = Server(data_dir, *FIXTURE_ARGS, "--workers", "2", secrets_dir=secrets_dir)
    restarted.port = srv.port
    restarted.start()
    try:
        restarted.wait_for(
            lambda: (
                restarted.query("SELECT COUNT(*) FROM alerts WHERE state IN ('queued', 'claimed')") == [(0,)]
                and restarted.query("SELECT COUNT(*) FROM incidents WHERE status='running'") == [(0,)]
            ),
            timeout=300,
            what="the queue to drain after the restart",
        )
        rows = restarted.query("SELECT dedup_key, state, incident_id FROM alerts WHERE status='firing'")
        stored = {int(k.split(":")[1].split("-")[1]): (state, inc) for k, state, inc in rows}
        assert acknowledged <= set(stored), f"acknowledged but lost: {acknowledged - set(stored)}"
        assert len(rows) == len(stored)  # one row per alert, never two
        assert all(state == "started" and inc for state, inc in stored.values())
        assert restarted.query("SELECT alert_id FROM incidents GROUP BY alert_id HAVING COUNT(*) > 1") == []
        statuses = dict(restarted.query("SELECT status, COUNT(*) FROM incidents GROUP BY status"))
        assert set(statuses) <= {"succeeded", "interrupted"}, statuses
        assert sum(statuses.values()) == len(stored)
        for (incident,) in restarted.query("SELECT id FROM incidents WHERE status='interrupted'"):
            resumed = run_cli(
                "resume", incident, "--runbooks-dir", str(FIXTURES / "runbooks"), data_dir=data_dir
            )
            assert resumed.returncode == 0, resumed.output
    finally:
        restarted.stop()


def test_a_run_cut_by_a_crash_is_interrupted_and_resumes(
    data_dir: Path, secrets_dir: Path, docker: Docker
) -> None:
    victim = docker.container("slow")
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "1", secrets_dir=secrets_dir).start()
    reply = srv.post(GENERIC_PATH, generic("slow", container=victim, labels={"seconds": "6"}))
    assert reply.status == 202
    alert_id = reply.json()["alerts"][0]["alert_id"]
    incident = srv.incident_for(alert_id)
    srv.wait_for(
        lambda: (
            dict(srv.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident))
            == {"first": "succeeded", "wait": "running"}
        ),
        what="the slow step to start",
    )
    # Power loss: the worker dies without a word, then the server.
    worker = srv.query("SELECT worker_pid FROM alerts WHERE id=?", alert_id)[0][0]
    os.kill(worker, signal.SIGKILL)
    srv.kill9()
    assert srv.status(incident) == "running"
    restarted = Server(data_dir, *FIXTURE_ARGS, "--workers", "1", secrets_dir=secrets_dir).start()
    try:
        assert restarted.wait_status(incident, {"interrupted"}, timeout=60) == "interrupted"
        steps = dict(restarted.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident))
        assert steps == {"first": "succeeded", "wait": "interrupted", "after": "not_run"}
        assert restarted.query("SELECT COUNT(*) FROM incidents") == [(1,)]  # not run again by itself
        resumed = run_cli("resume", incident, "--runbooks-dir", str(FIXTURES / "runbooks"), data_dir=data_dir)
        assert resumed.returncode == 0, resumed.output
        steps = dict(restarted.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident))
        assert steps == {"first": "succeeded", "wait": "succeeded", "after": "succeeded"}
        kinds = [
            r[0]
            for r in restarted.query("SELECT kind FROM events WHERE incident_id=? ORDER BY seq", incident)
        ]
        assert "run_abandoned" in kinds and "incident_resumed" in kinds
    finally:
        restarted.stop()


def test_a_worker_killed_under_a_live_server_is_interrupted_at_once(
    data_dir: Path, secrets_dir: Path, docker: Docker
) -> None:
    """The survivor marks the incident: no waiting for the next server start."""
    victim = docker.container("orphan")
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "1", secrets_dir=secrets_dir).start()
    try:
        reply = srv.post(GENERIC_PATH, generic("slow", container=victim, labels={"seconds": "60"}))
        alert_id = reply.json()["alerts"][0]["alert_id"]
        incident = srv.incident_for(alert_id)
        srv.wait_for(
            lambda: (
                dict(srv.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident)).get("wait")
                == "running"
            ),
            what="the slow step to start",
        )
        worker = srv.query("SELECT worker_pid FROM alerts WHERE id=?", alert_id)[0][0]
        os.kill(worker, signal.SIGKILL)
        assert srv.wait_status(incident, {"interrupted"}, timeout=15) == "interrupted"
        steps = dict(srv.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident))
        assert steps["wait"] == "interrupted" and steps["after"] == "not_run"
    finally:
        srv.stop()


def test_the_server_killed_leaves_no_incident_running(
    data_dir: Path, secrets_dir: Path, docker: Docker
) -> None:
    """kill -9 of the server: its worker hears of it (parent-death signal) and closes its own
    incident as interrupted, before any server starts again."""
    victim = docker.container("orphan2")
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "1", secrets_dir=secrets_dir).start()
    reply = srv.post(GENERIC_PATH, generic("slow", container=victim, labels={"seconds": "60"}))
    incident = srv.incident_for(reply.json()["alerts"][0]["alert_id"])
    srv.wait_for(
        lambda: (
            dict(srv.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident)).get("wait")
            == "running"
        ),
        what="the slow step to start",
    )
    srv.kill9()
    srv.wait_for(
        lambda: srv.status(incident) == "interrupted", timeout=15, what="the incident to be interrupted"
    )


def test_sigterm_drains_then_interrupts_running_playbooks(
    data_dir: Path, secrets_dir: Path, docker: Docker
) -> None:
    victim = docker.container("drain")
    srv = Server(data_dir, *FIXTURE_ARGS, "--workers", "1", "--grace", "1", secrets_dir=secrets_dir).start()
    reply = srv.post(GENERIC_PATH, generic("slow", container=victim, labels={"seconds": "60"}))
    incident = srv.incident_for(reply.json()["alerts"][0]["alert_id"])
    srv.wait_for(
        lambda: (
            srv.query("SELECT status FROM steps WHERE incident_id=? AND step_id='wait'", incident)
            == [("running",)]
        ),
        what="the slow step to start",
    )
    started = time.monotonic()
    assert srv.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 30
    assert srv.status(incident) == "interrupted"
    steps = dict(srv.query("SELECT step_id, status FROM steps WHERE incident_id=?", incident))
    assert steps["wait"] == "interrupted" and steps["after"] == "not_run"


# approvals and the container lock --------------------------------------------------------------


def test_auto_runs_stop_at_the_gate_and_the_api_approves(
    server: Server, docker: Docker, data_dir: Path
) -> None:
    network = docker.network("gate")
    victim = docker.container("gate", "--network", network)
    reply = server.post(GENERIC_PATH, generic("gated", container=victim))
    incident = server.incident_for(reply.json()["alerts"][0]["alert_id"])
    assert server.wait_status(incident, {"awaiting_approval", "failed"}) == "awaiting_approval"
    assert network in docker.inspect(victim)["NetworkSettings"]["Networks"]  # the gated step has not run

    approve = f"/v1/incidents/{incident}/approve"
    assert server.post(approve, {"step": "isolate"}, token=None).status == 401
    # the shared token Alertmanager holds, and an alerts-only client, cannot decide anything
    for token in (TOKEN, ALERTS_TOKEN):
        for path, body in (
            (approve, {"step": "isolate", "reason": "x"}),
            (f"/v1/incidents/{incident}/deny", {"reason": "x"}),
            (f"/v1/incidents/{incident}/release", {"reason": "x"}),
        ):
            refused = server.post(path, body, token=token)
            assert refused.status == 403 and "approver" in refused.json()["error"], (path, refused.body)
    assert server.get(f"/v1/incidents/{incident}", token=ALERTS_TOKEN).status == 403  # not a reader
    assert server.post(approve, {"step": "logs"}, token=APPROVER_TOKEN).status == 409
    assert server.post(approve, {}, token=APPROVER_TOKEN).status == 422
    assert (
        server.post(
            "/v1/incidents/INC-20000101-000000-0000/approve", {"all": True}, token=APPROVER_TOKEN
        ).status
        == 404
    )
    assert server.status(incident) == "awaiting_approval"  # nothing of the above changed it
    accepted = server.post(
        approve,
        {"step": "isolate", "actor": "mallory", "reason": "--all -h shell confirmed"},  # actor: ignored
        token=APPROVER_TOKEN,
    )
    assert accepted.status == 202 and accepted.json()["approved"] == ["isolate"], accepted.body
    assert accepted.json()["actor"] == "api:ops"
    assert server.wait_status(incident, {"succeeded", "failed"}) == "succeeded"
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    events = server.get(f"/v1/incidents/{incident}/timeline").json()["events"]
    granted = [e for e in events if e["kind"] == "approval_granted"]
    assert [e["actor"] for e in granted] == ["api:ops"]  # the token's identity, not the body's
    assert "mallory" not in json.dumps(events)
    assert granted[0]["data"]["reason"] == "--all -h shell confirmed"  # data, never an option
    assert server.post(approve, {"step": "isolate"}, token=APPROVER_TOKEN).status == 409  # nothing left


def test_cli_and_webhook_never_contain_the_same_container_at_once(
    server: Server, docker: Docker, data_dir: Path
) -> None:
    victim = docker.container("lock")
    reply = server.post(GENERIC_PATH, generic("gated", container=victim))
    holder = server.incident_for(reply.json()["alerts"][0]["alert_id"])
    assert server.wait_status(holder, {"awaiting_approval", "failed"}) == "awaiting_approval"

    cli = run_cli("run", "isolate-container", "-p", f"container={victim}", data_dir=data_dir)
    assert cli.returncode == 2
    assert f"incident {holder} is already responding to this container" in cli.stderr

    second = server.post(GENERIC_PATH, generic("gated", container=victim))
    alert_id = second.json()["alerts"][0]["alert_id"]
    server.wait_for(
        lambda: (
            server.query("SELECT state, incident_id FROM alerts WHERE id=?", alert_id)
            == [("attached", holder)]
        ),
        what="the second alert to join the first incident",
    )
    kinds = [r[0] for r in server.query("SELECT kind FROM events WHERE incident_id=?", holder)]
    assert "alert_attached" in kinds
    assert server.query("SELECT COUNT(*) FROM incidents") == [(1,)]

    denied = run_cli("deny", holder, "--reason", "test", data_dir=data_dir)
    assert denied.returncode == 11
    cli = run_cli("run", "isolate-container", "-p", f"container={victim}", "--quiet", data_dir=data_dir)
    assert cli.returncode == 0, cli.output  # the lock went with the closed incident


def test_alertmanager_by_name_and_falco_by_id_reach_one_incident(server: Server, docker: Docker) -> None:
    """Fault #44 from both sources: Alertmanager names the container, Falco gives its short ID.
    The Falco run resolves the ID, finds the container held, stops, and its alert joins the
    first incident."""
    victim = docker.container("both", "--network", docker.network("both"))
    short_id = docker.inspect(victim)["Id"][:12]
    first = server.post(
        AM_PATH, am_alert("ContainerCompromised", {"severity": "critical", "container": victim})
    )
    holder = server.incident_for(first.json()["alerts"][0]["alert_id"])
    assert server.wait_status(holder, {"awaiting_approval", "failed"}) == "awaiting_approval"

    event = copy.deepcopy(FALCO)
    event.update(priority="Critical", rule="Drop and execute new binary in container", uuid=str(uuid.uuid4()))
    event["output_fields"]["container.id"] = short_id
    event["hostname"] = socket.gethostname()  # Falco on this machine; without -i it is localhost
    reply = server.post(FALCO_PATH, event)
    assert reply.status == 202, reply.body
    alert_id = reply.json()["alerts"][0]["alert_id"]
    server.wait_for(
        lambda: (
            server.query("SELECT state, incident_id FROM alerts WHERE id=?", alert_id)
            == [("attached", holder)]
        ),
        what="the Falco alert to join the Alertmanager incident",
    )
    (other,) = [r[0] for r in server.query("SELECT id FROM incidents WHERE id<>?", holder)]
    assert server.wait_status(other, {"failed", "succeeded", "awaiting_approval"}) == "failed"
    kinds = {r[0] for r in server.query("SELECT kind FROM events WHERE incident_id=?", holder)}
    assert {"alert_attached", "duplicate_incident"} <= kinds
    assert server.status(holder) == "awaiting_approval"
    assert docker.inspect(victim)["State"]["Running"]


def test_a_run_that_cannot_start_fails_its_alert_visibly(
    data_dir: Path, secrets_dir: Path, tmp_path: Path
) -> None:
    """The playbook broke after the server loaded it: the worker cannot open an incident. The alert
    is `failed` with the reason, counted in /metrics, and not retried in a loop."""
    books = tmp_path / "books"
    books.mkdir()
    playbook = books / "wh-burst.yml"
    playbook.write_text((FIXTURES / "webhook" / "wh-burst.yml").read_text())
    srv = Server(
        data_dir,
        "--playbooks-dir",
        str(books),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "--workers",
        "1",
        secrets_dir=secrets_dir,
    ).start()
    try:
        playbook.write_text("name: wh-burst\nsteps: [\n")  # broken on disk now
        reply = srv.post(AM_PATH, am_alert("WhBurst", {"value": "x1"}))
        assert reply.status == 202
        alert_id = reply.json()["alerts"][0]["alert_id"]
        _state, reason = srv.wait_for(
            lambda: [
                r
                for r in srv.query("SELECT state, reason FROM alerts WHERE id=?", alert_id)
                if r[0] == "failed"
            ],
            what="the alert to fail",
        )[0]
        assert "before opening an incident" in reason and "wh-burst.yml" in reason
        assert srv.query("SELECT COUNT(*) FROM incidents") == [(0,)]
        assert 'responder_alerts{state="failed"} 1.0' in srv.request("GET", "/metrics").body.decode()
    finally:
        srv.stop()


def test_falcos_own_http_output_works_only_on_loopback_and_falcosidekick_carries_the_token(
    data_dir: Path, secrets_dir: Path
) -> None:
    """#15 bug 9: Falco's http_output sends no custom header (falco.yaml, outputs_http.cpp): only
    Content-Type and its User-Agent. The README says what that means; this is that request."""
    event = {k: v for k, v in FALCO.items() if k != "uuid"}  # uuid is Falcosidekick's addition
    event["rule"] = "Some rule no playbook takes"
    falco_headers = {"User-Agent": "falcosecurity/falco"}
    loopback = Server(data_dir, *FIXTURE_ARGS).start()  # no credentials: loopback only
    try:
        reply = loopback.post(FALCO_PATH, event, token=None, **falco_headers)
        assert (reply.status, reply.json()["alerts"][0]["result"]) == (200, "unmatched"), reply.body
    finally:
        loopback.stop()
    guarded = Server(data_dir, *FIXTURE_ARGS, secrets_dir=secrets_dir, auth="token").start()
    try:
        assert guarded.post(FALCO_PATH, event, token=None, **falco_headers).status == 401
        # Falcosidekick's webhook output with customHeaders: {Authorization: "Bearer ..."}
        sidekick = {**event, "uuid": str(uuid.uuid4())}
        reply = guarded.post(FALCO_PATH, sidekick, **{"User-Agent": "Falcosidekick"})
        assert reply.status == 200 and reply.json()["alerts"][0]["result"] == "duplicate", reply.body
    finally:
        guarded.stop()
