"""`responder serve` under hostile clients: what it logs, what it stores, what it refuses and
what it must never refuse. A real server process on loopback; no container is needed here."""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_alert_intake import AM, FALCO
from tests.webhook_client import TOKEN, Server

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ARGS = ("--playbooks-dir", str(FIXTURES / "webhook"), "--runbooks-dir", str(FIXTURES / "runbooks"))
AM_PATH, FALCO_PATH = "/v1/alerts/alertmanager", "/v1/alerts/falco"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hardening")
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    srv = Server(root / "data", *ARGS, "--workers", "0", "--body-timeout", "1", secrets_dir=secrets).start()
    yield srv
    srv.stop()


def notification(alerts: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    payload = copy.deepcopy(AM)
    payload["alerts"] = alerts
    payload.update(fields)
    return payload


def am_alert(name: str, **labels: str) -> dict[str, Any]:
    alert = copy.deepcopy(AM["alerts"][0])
    alert["labels"] = {"alertname": name, **labels}
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    return alert


def metric(server: Server, name: str, labels: str) -> float:
    """A sample's value by name and label set (in any order, as the exposition may sort them)."""
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    text = server.get("/metrics").body.decode()
    for found, value in re.findall(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", text, re.M):
        if dict(re.findall(r'(\w+)="([^"]*)"', found)) == wanted:
            return float(value)
    return 0.0


def log_since(server: Server, mark: int) -> str:
    time.sleep(0.3)  # the server writes its log line after answering
    return server.log()[mark:]


def raw(server: Server, data: bytes, *, read: bool = True, linger: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        if linger:
            time.sleep(linger)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


# 5. authority --------------------------------------------------------------------------------


def test_decisions_need_credentials_even_on_loopback(tmp_path: Path) -> None:
    """A server with no credentials takes alerts on loopback, but never a decision."""
    srv = Server(tmp_path / "data", *ARGS, "--workers", "0").start()
    try:
        reply = srv.post(
            "/v1/incidents/INC-20000101-000000-0000/approve", {"all": True, "actor": "mallory"}, token=None
        )
        assert reply.status == 401, reply.body
        assert "authenticated" in reply.json()["error"]
    finally:
        srv.stop()


# 3. intake -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0", "1001", "+5", "%205", "1_0", "5.0", "9" * 40, ""])
def test_numeric_query_parameters_are_bounded_on_both_sides(server: Server, value: str) -> None:
    reply = server.get(f"/v1/incidents?limit={value}")
    assert reply.status == 400, (value, reply.body)
    assert "from 1 to 1000" in reply.json()["error"]


def test_limit_within_bounds_is_taken(server: Server) -> None:
    assert server.get("/v1/incidents?limit=1000").status == 200
    assert server.get("/v1/incidents?limit=1").status == 200


def test_alertmanager_truncated_notifications_are_taken_and_counted(server: Server) -> None:
    before = metric(server, "responder_intake_warnings_total", 'source="alertmanager"')
    mark = len(server.log())
    # max_alerts cut every alert of the group: nothing left but the count. Alertmanager never
    # retries a 4xx, so refusing this would lose the notice without a trace.
    empty = server.post(AM_PATH, notification([], truncatedAlerts=7, groupKey='{}:{alertname="Worm"}'))
    assert empty.status == 200, empty.body
    assert "left 7 alert(s)" in empty.json()["warnings"][0]
    cut = server.post(AM_PATH, notification([am_alert("NothingRoutesThis")], truncatedAlerts=3))
    assert cut.status == 200 and cut.json()["alerts"][0]["result"] == "unmatched"
    assert metric(server, "responder_intake_warnings_total", 'source="alertmanager"') == before + 2
    assert "left 7 alert(s)" in log_since(server, mark)


def test_alertmanager_group_larger_than_any_fixed_cap_is_taken(server: Server) -> None:
    alerts = [am_alert("NothingRoutesThis", pod=f"p{i}") for i in range(1500)]
    reply = server.post(AM_PATH, notification(alerts))
    assert reply.status == 200, reply.body[:300]
    assert len(reply.json()["alerts"]) == 1500


def test_stored_documents_are_bounded_and_valid_json(server: Server) -> None:
    huge = am_alert("NothingRoutesThis", blob="x" * 900_000)
    reply = server.post(AM_PATH, notification([huge]))
    assert reply.status == 200, reply.body[:300]
    alert_id = reply.json()["alerts"][0]["alert_id"]
    (document,) = server.query("SELECT document FROM alerts WHERE id=?", alert_id)[0]
    assert len(document.encode()) <= 16 * 1024
    stored = json.loads(document, parse_constant=lambda name: pytest.fail(f"{name} stored"))
    assert len(stored["_responder_trimmed"]["sha256"]) == 64
    assert stored["_responder_trimmed"]["bytes"] > 900_000

    event = copy.deepcopy(FALCO)
    event["rule"] = "Nothing routes this rule"
    event["output_fields"] = {**event["output_fields"], "evt.num": 1e308}
    body = json.dumps(event).replace("1e+308", "1e999").encode()
    assert b"1e999" in body
    reply = server.post(FALCO_PATH, body)
    assert reply.status == 200, reply.body
    alert_id = reply.json()["alerts"][0]["alert_id"]
    (document,) = server.query("SELECT document FROM alerts WHERE id=?", alert_id)[0]
    stored = json.loads(document, parse_constant=lambda name: pytest.fail(f"{name} stored"))
    assert stored["output_fields"]["evt.num"] == "1e999"


def test_falco_host_events_are_counted_with_their_reason(server: Server) -> None:
    before = metric(server, "responder_alerts_no_action_total", 'source="falco",reason="host_event"')
    event = copy.deepcopy(FALCO)
    event["output_fields"] = {**event["output_fields"], "container.id": "host"}
    event["hostname"] = f"node-{uuid.uuid4().hex[:6]}"
    reply = server.post(FALCO_PATH, event)
    assert reply.status == 200 and reply.json()["alerts"][0]["result"] == "no_action"
    after = metric(server, "responder_alerts_no_action_total", 'source="falco",reason="host_event"')
    assert after == before + 1


# 4. logs -------------------------------------------------------------------------------------


def test_untrusted_text_never_forges_a_log_line(server: Server) -> None:
    mark = len(server.log())
    forged = "2026-01-01 00:00:00,000 CRITICAL responder.server: approved by admin"
    path = "/v1/incidents/INC%0a" + forged.replace(" ", "%20") + "%1b[31m%e2%80%a8"
    reply = raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 401"), reply
    text = log_since(server, mark)
    assert "refused" in text
    assert not any(line.startswith("2026-01-01") for line in text.splitlines())
    assert "\x1b" not in text and "\u2028" not in text


def test_cut_short_requests_log_one_quiet_line_at_most(server: Server) -> None:
    mark = len(server.log())
    head = (
        b"POST /v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b'\r\nContent-Length: 5000\r\n\r\n{"version":'
    )
    for _ in range(40):
        raw(server, head, read=False, linger=0.02)
    text = log_since(server, mark)
    assert "Traceback" not in text and "Error handling request" not in text
    assert len(text.splitlines()) <= 3, text


def test_a_slow_body_is_cut_at_the_read_timeout(server: Server) -> None:
    started = time.monotonic()
    head = (
        b"POST /v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: 100\r\n\r\n{"
    )
    reply = raw(server, head)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [(b"{nope", 400, "bad_json"), (b'{"version": "3", "alerts": []}', 422, "bad_shape")],
)
def test_each_refusal_gets_one_concise_line(server: Server, body: bytes, status: int, reason: str) -> None:
    time.sleep(1.1)  # past the per-kind rate limit of an earlier case
    mark = len(server.log())
    assert server.post(AM_PATH, body).status == status
    lines = [line for line in log_since(server, mark).splitlines() if f"({reason})" in line]
    assert len(lines) == 1 and f"refused {status}" in lines[0]
    assert "version" not in lines[0].split("):", 1)[0]  # the payload is not echoed as the reason


def test_dropped_alerts_that_open_no_incident_are_told_to_slack(tmp_path: Path) -> None:
    from tests.slack_server import SlackServer, SlackState

    token = "xoxb-notice-token-5a1c"
    with SlackServer(SlackState(token=token)) as slack:
        config = tmp_path / "responder.toml"
        config.write_text(f'[slack]\nchannel = "#incidents"\nbase_url = "{slack.base_url}"\ntimeout = 1\n')
        secrets = tmp_path / "secrets"
        secrets.mkdir(mode=0o700)
        srv = Server(
            tmp_path / "data",
            *ARGS,
            "--config",
            str(config),
            "--workers",
            "0",
            secrets_dir=secrets,
            env={"SLACK_BOT_TOKEN": token},
        ).start()
        try:
            reply = srv.post(
                AM_PATH, notification([], truncatedAlerts=5, groupKey='{}:{alertname="Worm<x>"}')
            )
            assert reply.status == 200, reply.body
            deadline = time.monotonic() + 10
            while not slack.state.messages and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            srv.stop()
    (message,) = slack.state.messages
    assert "left 5 alert(s)" in message.text and message.thread_ts is None
    assert "<x>" not in message.text and "&lt;x&gt;" in message.text  # alert text is escaped for Slack


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=responder-test", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def test_native_tls_serves_https_and_refuses_half_a_configuration(tmp_path: Path) -> None:
    """#15: `--tls-cert/--tls-key`, so the README's https:// is true without a proxy."""
    cert, key = _self_signed(tmp_path)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    srv = Server(data, "--tls-cert", str(cert), "--tls-key", str(key), secrets_dir=secrets, auth="token")
    srv.tls = ssl.create_default_context(cafile=str(cert))
    srv.start()
    try:
        assert srv.request("GET", "/healthz").status == 200
        other = am_alert("TlsUnrouted", container="web-1")
        reply = srv.post("/v1/alerts/alertmanager", notification([other]))
        assert reply.status == 200 and reply.json()["alerts"][0]["result"] == "unmatched", reply.body
        assert srv.post("/v1/alerts/alertmanager", notification([other]), token=None).status == 401
        srv.tls = ssl.create_default_context()  # a client that does not trust this certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            srv.request("GET", "/healthz")
        srv.tls = None  # plain HTTP to the TLS port gets no HTTP answer
        with pytest.raises((http.client.HTTPException, OSError)):
            srv.request("GET", "/healthz")
    finally:
        srv.stop()
    half = subprocess.run(
        [sys.executable, "-m", "responder", "serve", "--tls-cert", str(cert)],
        capture_output=True,
        text=True,
        env={**os.environ, "RESPONDER_DATA_DIR": str(data)},
    )
    assert half.returncode == 2 and "needs both a certificate and its key" in half.stderr, half.stderr
    key.chmod(0o644)
    loose = subprocess.run(
        [sys.executable, "-m", "responder", "serve", "--tls-cert", str(cert), "--tls-key", str(key)],
        capture_output=True,
        text=True,
        env={**os.environ, "RESPONDER_DATA_DIR": str(data)},
    )
    assert loose.returncode == 2 and "chmod 600" in loose.stderr, loose.stderr
