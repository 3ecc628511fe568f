"""A real PostgreSQL for the store tests, from Debian's postgresql package, in a local Docker
container (tests/fixtures/postgres: PostgreSQL refuses to run as root, and on this kind of
machine a non-root process cannot exec from the host's filesystem; in a container it can).

One server per test session, password-protected (scram-sha-256, as a real deployment would be);
each test gets a database of its own, so tests never see each other's rows."""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from responder.store_location import PostgresLocation

IMAGE = "responder-test/postgres:15"


@dataclass
class PostgresServer:
    container: str
    address: str
    password: str

    def location(
        self, database: str = "responder", controller: str = "ctl-a", lease: float = 30.0
    ) -> PostgresLocation:
        return PostgresLocation(
            f"postgresql://responder@{self.address}:5432/{database}", self.password, controller, lease
        )

    def fresh_database(self, controller: str = "ctl-a", lease: float = 30.0) -> PostgresLocation:
        """A new empty database on this server."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.location().url, password=self.password, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return replace(self.location(name, controller, lease))

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=60)

    def pause(self) -> None:
        """Make the database unreachable (the server keeps its data)."""
        subprocess.run(["docker", "pause", self.container], check=True, capture_output=True)

    def unpause(self) -> None:
        subprocess.run(["docker", "unpause", self.container], check=True, capture_output=True)


def image_available() -> bool:
    return subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0


def start_postgres(timeout: float = 60) -> PostgresServer:
    """Start the server and wait until it takes connections."""
    import psycopg

    password = secrets.token_urlsafe(18)
    name = f"responder-pg-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as private:  # the password never on a command line
        env_file = Path(private) / "env"
        env_file.write_text(f"POSTGRES_PASSWORD={password}\n")
        env_file.chmod(0o600)
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "--env-file", str(env_file),
             "--tmpfs", "/var/lib/postgresql/data:uid=100,gid=103,mode=0700", IMAGE],
            check=True,
            capture_output=True,
        )  # fmt: skip
    info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, check=True).stdout)[0]
    server = PostgresServer(name, info["NetworkSettings"]["IPAddress"], password)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.location().url, password=password, connect_timeout=2):
                return server
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
                server.stop()
                raise RuntimeError(f"PostgreSQL did not start: {exc}\n{logs[-2000:]}") from exc
            time.sleep(0.3)
