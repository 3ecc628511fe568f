"""The container image (scripts/container/Dockerfile) built from this checkout's wheel and run as
a user would: non-root, the host's Docker socket mounted, the config found without flags; an
alert posted to it isolates a container on the host's dockerd.

The build is offline (no registry is reachable): its base is a Debian made with debootstrap and
the dependency wheels are gathered beforehand, both by scripts/prepare-host.sh with
RESPONDER_WITH_IMAGE=1 (scripts/test.sh sets it)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Docker, require

pytestmark = pytest.mark.integration

BASE = "responder-test/debian-python:bookworm"
IMAGE = "responder-test/responder:test"
WHEELHOUSE = REPO / ".cache" / "wheelhouse"
TOKEN = "image-test-token-5b1e9c3d7a2f4e60"
UID = 10001  # the image's `responder` user


@pytest.fixture(scope="module")
def image() -> str:
    base = subprocess.run(["docker", "image", "inspect", BASE], capture_output=True)
    require(
        base.returncode == 0 and (WHEELHOUSE / ".complete").exists(),
        "the image test's base and wheels are missing: RESPONDER_WITH_IMAGE=1 bash scripts/prepare-host.sh",
    )
    built = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "container" / "build-image.sh"),
            IMAGE,
            "--network",
            "none",  # nothing reaches out: what the image needs is in the context
            "--build-arg",
            f"BASE={BASE}",
            "--build-arg",
            "SYSTEM_PACKAGES=",
            "--build-arg",
            "PIP_OPTIONS=--no-index --find-links /tmp/dist",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RESPONDER_WHEELHOUSE": str(WHEELHOUSE)},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return IMAGE


def _request(ip: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection(ip, 8080, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        return reply.status, json.loads(data) if data.startswith((b"{", b"[")) else data.decode()
    finally:
        conn.close()


def test_the_image_runs_unprivileged_and_contains_a_container_on_the_host(
    image: str, docker: Docker, tmp_path: Path
) -> None:
    config = tmp_path / "etc-responder"
    config.mkdir(mode=0o700)
    (config / "config.toml").write_text('[server]\ntoken_file = "/etc/responder/webhook-token"\n')
    (config / "webhook-token").write_text(TOKEN + "\n")
    for path in (config, config / "config.toml", config / "webhook-token"):
        os.chown(path, UID, UID)
    (config / "webhook-token").chmod(0o600)
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    network = docker.network("img")
    victim = docker.container("imgvictim", "--network", network)
    name = docker.name("responder")
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--group-add",
        str(socket_gid),
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        f"{config}:/etc/responder:ro",
        image,
    )
    docker.containers.append(name)
    assert docker("exec", name, "id", "-u") == str(UID)  # not root
    ip = docker.inspect(name)["NetworkSettings"]["IPAddress"]
    deadline = time.monotonic() + 60
    while True:
        try:
            if _request(ip, "GET", "/healthz")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, docker("logs", name)
        time.sleep(0.3)
    # without the token from the mounted config, nothing is accepted
    conn = http.client.HTTPConnection(ip, 8080, timeout=10)
    conn.request("POST", "/v1/alerts/generic", body=b"{}", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 401
    conn.close()
    status, _ = _request(
        ip,
        "POST",
        "/v1/alerts/generic",
        {"id": "img-1", "name": "ContainerCompromised", "status": "firing", "container": victim},
    )
    assert status == 202, status
    deadline = time.monotonic() + 180
    while docker.inspect(victim)["NetworkSettings"]["Networks"]:
        assert time.monotonic() < deadline, docker("logs", name)
        time.sleep(0.5)
    # the incident goes on to its evidence steps and stops at the approval gate before `stop`
    deadline = time.monotonic() + 180
    while True:
        status, listing = _request(ip, "GET", "/v1/incidents")
        assert status == 200
        incidents = listing["incidents"] if isinstance(listing, dict) else listing
        if incidents and incidents[0]["status"] == "awaiting_approval":
            break
        assert time.monotonic() < deadline, (listing, docker("logs", name))
        time.sleep(1)
    assert docker.inspect(victim)["State"]["Running"]  # the stop waits for a person
    health = docker.inspect(name)["State"].get("Health")
    assert health is None or health["Status"] in ("starting", "healthy")
