"""#16: a Podman host, driven through Podman's Docker-compatible API socket (Debian's podman,
rootful), chosen per host with the inventory variable `responder_docker_host`: the shipped
playbooks contain, collect evidence, stop, and release as on Docker, and the evidence records
that Podman answered, with its version."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IMAGE, incident_id, require, run_cli

pytestmark = pytest.mark.integration
# This machine refuses the rlimits Podman sets by default (RLIMIT_NPROC, RLIMIT_NOFILE at their
# maximum); containers here get explicit ones. Nothing responder does depends on them.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")


@dataclass
class Podman:
    socket: Path
    names: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def inspect(self, ref: str) -> dict:
        return json.loads(self("inspect", ref))[0]

    def inventory(self, path: Path) -> Path:
        path.write_text(
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
            "      ansible_python_interpreter: /usr/bin/python3\n"
            f"      responder_docker_host: unix://{self.socket}\n"
        )
        return path


@pytest.fixture(scope="module")
def podman_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require(
        shutil.which("podman") is not None, "podman is not installed (scripts/prepare-host.sh installs it)"
    )
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0:
        saved = subprocess.run(["docker", "save", IMAGE], capture_output=True, check=True).stdout
        subprocess.run(["podman", "load", "-q"], input=saved, capture_output=True, check=True)
    socket_path = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        assert time.monotonic() < deadline and service.poll() is None, "podman system service did not start"
        time.sleep(0.1)
    yield socket_path
    service.terminate()
    service.wait(timeout=30)


@pytest.fixture
def podman(podman_service: Path) -> Iterator[Podman]:
    handle = Podman(podman_service)
    yield handle
    for name in handle.names:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
    for network in handle.networks:
        subprocess.run(["podman", "network", "rm", "-f", network], capture_output=True)


def db_warnings(data_dir: Path, incident: str) -> list[str]:
    db = sqlite3.connect(data_dir / "timeline.db")
    return [
        m
        for (m,) in db.execute(
            "SELECT message FROM events WHERE incident_id=? AND kind='step_warning'", (incident,)
        )
    ]


def test_contain_and_release_a_podman_container_through_its_docker_api(
    podman: Podman, data_dir: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    network, victim = f"rtp-{tag}", f"rtp-victim-{tag}"
    podman("network", "create", network)
    podman.networks.append(network)
    podman("run", "-d", "--name", victim, "--network", network, "--restart", "always", *ULIMITS,
           IMAGE, "sh", "-c", "while true; do echo beacon; sleep 0.3; done")  # fmt: skip
    podman.names.append(victim)
    time.sleep(1)
    inventory = podman.inventory(tmp_path / "podman-host.yml")
    result = run_cli(
        "run", "contain-container", "-i", str(inventory), "-p", f"container={victim}",
        "--approve", "all", "--as", "lead@oncall", data_dir=data_dir, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    incident = incident_id(result.stdout)
    info = podman.inspect(victim)
    assert not info["NetworkSettings"].get("Networks")  # cut off every Podman network
    assert info["State"]["Status"] == "exited"
    # Podman 4's Docker API cannot change a restart policy; the step says so, and a stop asked
    # for is one Podman does not undo: still exited a while later
    warned = db_warnings(data_dir, incident)
    assert any("Podman cannot change the restart policy" in w for w in warned), warned
    time.sleep(3)
    assert podman.inspect(victim)["State"]["Status"] == "exited"
    db = sqlite3.connect(data_dir / "timeline.db")
    rows = db.execute("SELECT kind, details FROM evidence WHERE incident_id=?", (incident,)).fetchall()
    kinds = {kind for kind, _ in rows}
    assert {"logs", "inspect", "filesystem"} <= kinds or any("rootfs" in str(r) for r in rows), kinds
    versions = [json.loads(details).get("tool_versions", {}).get("docker", {}) for _, details in rows]
    assert any(v.get("runtime") == "podman" and v.get("server") for v in versions), versions
    logs = db.execute(
        "SELECT path FROM evidence WHERE incident_id=? AND kind='logs'", (incident,)
    ).fetchone()[0]
    assert "beacon" in Path(logs).read_text()
    verified = run_cli("evidence", "verify", incident, data_dir=data_dir)
    assert verified.returncode == 0, verified.output
    released = run_cli("release", incident, "--reason", "podman host cleared", data_dir=data_dir, timeout=600)
    assert released.returncode == 0, released.output
    assert network in (podman.inspect(victim)["NetworkSettings"].get("Networks") or {})
