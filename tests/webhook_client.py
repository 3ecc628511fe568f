"""A real `responder serve` process on loopback for tests and benchmarks, and a small HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-4f9c2a7e1b3d5c6a"  # the shared legacy token: client `webhook`, alerts + reader
HMAC_SECRET = "test-hmac-secret-8e7d6c5b4a39"
# [[server.clients]] the helper configures with a secrets directory (unless the test brings a --config)
APPROVER_TOKEN = "test-approver-ops-7c1d9e2f3a4b"  # client `ops`: approver, reader
SECOND_APPROVER_TOKEN = "test-approver-lead-2e8f6a1c9d0b"  # client `lead`: approver
ALERTS_TOKEN = "test-alerts-only-5f0e4d3c2b1a"  # client `alertmanager`: alerts
CLIENTS = (
    ("ops", ("approver", "reader"), APPROVER_TOKEN),
    ("lead", ("approver",), SECOND_APPROVER_TOKEN),
    ("alertmanager", ("alerts",), ALERTS_TOKEN),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Server:
    """`responder serve` in a subprocess; the data directory outlives restarts."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        secrets_dir: Path | None = None,
        auth: str = "both",
        store: Any = None,
    ) -> None:
        self.data_dir = data_dir
        self.store = store  # a PostgresLocation the server shares with others (set its env too)
        self.args = list(args)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
        self.env["RESPONDER_DATA_DIR"] = str(data_dir)
        self.env.update(env or {})
        if secrets_dir is not None and auth in ("both", "token"):
            (secrets_dir / "token").write_text(TOKEN + "\n")
            self.env["RESPONDER_WEBHOOK_TOKEN_FILE"] = str(secrets_dir / "token")
        if secrets_dir is not None and auth in ("both", "hmac"):
            (secrets_dir / "hmac").write_text(HMAC_SECRET + "\n")
            self.env["RESPONDER_WEBHOOK_HMAC_SECRET_FILE"] = str(secrets_dir / "hmac")
        if secrets_dir is not None and auth != "hmac" and "--config" not in self.args:
            entries = []
            for name, roles, token in CLIENTS:
                (secrets_dir / f"client-{name}").write_text(token + "\n")
                entries.append(
                    f'[[server.clients]]\nname = "{name}"\nroles = {json.dumps(list(roles))}\n'
                    f'token_file = "{secrets_dir / f"client-{name}"}"\n'
                )
            (secrets_dir / "server.toml").write_text("\n".join(entries))
            self.env["RESPONDER_CONFIG"] = str(secrets_dir / "server.toml")
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls: ssl.SSLContext | None = None  # set to speak HTTPS (a server started with --tls-cert)
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 30) -> Server:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "responder", "serve", "--port", str(self.port), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not come up: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    # HTTP -------------------------------------------------------------------------------------

    def connection(self) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        connection: http.client.HTTPConnection | None = None,
    ) -> Reply:
        conn = connection or self.connection()
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            if connection is None:
                conn.close()

    def post(self, path: str, payload: Any, token: str | None = TOKEN, **extra: str) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **extra}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", path, body, headers)

    def get(self, path: str, token: str | None = TOKEN) -> Reply:
        return self.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})

    # timeline ---------------------------------------------------------------------------------

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.store is not None:
            from responder import db as store_db

            conn = store_db.connect(self.store, 10.0)
            try:
                return [tuple(row) for row in conn.execute(sql, args).fetchall()]
            finally:
                conn.close()
        db = sqlite3.connect(self.data_dir / "timeline.db", timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def wait_for(self, condition: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n--- server log ---\n{self.log()[-4000:]}")

    def incident_for(self, alert_id: int, timeout: float = 120) -> str:
        def opened() -> Any:
            state, reason, incident = self.query(
                "SELECT state, reason, incident_id FROM alerts WHERE id=?", alert_id
            )[0]
            if state == "failed":
                raise AssertionError(f"alert {alert_id} failed: {reason}")
            return incident

        return str(self.wait_for(opened, timeout, f"alert {alert_id} to open an incident"))

    def status(self, incident_id: str) -> str:
        return str(self.query("SELECT status FROM incidents WHERE id=?", incident_id)[0][0])

    def wait_status(self, incident_id: str, statuses: set[str], timeout: float = 180) -> str:
        self.wait_for(
            lambda: self.status(incident_id) in statuses, timeout, f"{incident_id} to reach {statuses}"
        )
        return self.status(incident_id)
