"""Shared test plumbing: a real dockerd, a real sshd on loopback, the real CLI in a subprocess.

Under CI=true a missing service fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from responder.store_location import DatabaseLocation
from tests.postgres import PostgresServer, start_postgres
from tests.postgres import image_available as postgres_image_available
from tests.sshd import SSHTarget, start_sshd

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
IMAGE = "responder-test/busybox:latest"
CI = os.environ.get("CI") == "true"


def require(condition: bool, why: str) -> None:
    if not condition:
        if CI:
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)


@dataclass
class CLIResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def incident_id(output: str) -> str:
    """The first incident ID a CLI command printed."""
    return next(word for word in output.split() if word.startswith("INC-"))


def _cli_env(data_dir: Path, env: dict[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    full_env.update(env or {})
    full_env["RESPONDER_DATA_DIR"] = str(data_dir)
    return full_env


def run_cli(
    *args: str,
    data_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> CLIResult:
    proc = subprocess.run(
        [sys.executable, "-m", "responder", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_cli_env(data_dir, env),
        cwd=cwd or REPO,
    )
    return CLIResult(proc.returncode, proc.stdout, proc.stderr)


def start_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The CLI in the background, for tests that signal it or watch it while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "responder", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_cli_env(data_dir, env),
        cwd=REPO,
    )


class CmdlineWatcher:
    """Collects every process command line on the machine while `proc` runs."""

    def __init__(self, proc: subprocess.Popen[str], interval: float = 0.02) -> None:
        self.proc = proc
        self.interval = interval
        self.cmdlines: list[str] = []
        self.thread = threading.Thread(target=self._watch)
        self.thread.start()

    def _watch(self) -> None:
        while self.proc.poll() is None:
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    with contextlib.suppress(OSError):
                        self.cmdlines.append(
                            Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
                        )
            time.sleep(self.interval)

    def communicate(self, timeout: float = 300) -> str:
        output, _ = self.proc.communicate(timeout=timeout)
        self.thread.join()
        return output


class Docker:
    """Thin docker CLI wrapper for tests; removes what it created."""

    def __init__(self) -> None:
        self.prefix = "rt" + uuid.uuid4().hex[:6]
        self.containers: list[str] = []
        self.networks: list[str] = []

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip()

    def name(self, base: str) -> str:
        return f"{self.prefix}-{base}-{uuid.uuid4().hex[:4]}"

    def network(self, base: str) -> str:
        name = self.name(base)
        self("network", "create", name)
        self.networks.append(name)
        return name

    def container(self, base: str, *run_args: str, command: tuple[str, ...] = ("sleep", "3600")) -> str:
        name = self.name(base)
        self("run", "-d", "--name", name, *run_args, IMAGE, *command)
        self.containers.append(name)
        return name

    def inspect(self, ref: str) -> dict:
        return json.loads(self("inspect", ref))[0]

    def ip(self, ref: str, network: str) -> str:
        return self.inspect(ref)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def can_ping(self, source: str, address: str) -> bool:
        proc = subprocess.run(
            ["docker", "exec", source, "ping", "-c", "1", "-W", "1", address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.returncode == 0

    def cleanup(self) -> None:
        for name in self.containers:
            self("rm", "-f", "-v", name, check=False)
        for name in self.networks:
            self("network", "rm", name, check=False)


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="session")
def docker_ready() -> None:
    require(_docker_available(), "dockerd is not reachable (run scripts/prepare-host.sh)")
    has_image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0
    require(has_image, f"test image {IMAGE} is missing (run scripts/prepare-host.sh)")


@pytest.fixture
def docker(docker_ready: None) -> Iterator[Docker]:
    helper = Docker()
    yield helper
    helper.cleanup()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHTarget]:
    require(
        Path("/usr/sbin/sshd").exists() and shutil.which("ssh-keygen") is not None,
        "openssh-server is missing",
    )
    require(os.geteuid() == 0, "the sshd fixture logs in as root and must run as root")
    try:
        target, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield target
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL (Debian's package, in a local container) for the session."""
    require(_docker_available(), "dockerd is not reachable (run scripts/prepare-host.sh)")
    require(
        postgres_image_available(),
        "the PostgreSQL test image is missing (RESPONDER_WITH_IMAGE=1 scripts/prepare-host.sh builds it)",
    )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg is not installed (pip install -e '.[dev]')")
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseLocation:
    """The timeline's store, once as an SQLite file and once as a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "timeline.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.fresh_database()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def canary_path() -> Iterator[Path]:
    path = Path(f"/tmp/responder-canary-{uuid.uuid4().hex[:8]}")
    yield path
    path.unlink(missing_ok=True)
