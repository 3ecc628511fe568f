"""Faults #31 and #32: dockerd unreachable when the run starts, or dropping the connection in
the middle of an isolation. The step fails fast with "docker unavailable", the incident is
`blocked` while responder waits with backoff, and the run goes on once the daemon answers again
(re-inspecting, so work already done is not redone), or fails after the last retry. Real dockerd
behind sockets these tests control (the run reaches them through DOCKER_HOST)."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import sqlite3
import struct
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import IMAGE, CLIResult, Docker, incident_id, run_cli

pytestmark = pytest.mark.integration
PLAYBOOK = (
    "name: down\ndescription: isolate while docker comes back\nseverity: high\n"
    "params:\n  container: {type: string, required: true}\n"
    "steps:\n  - id: isolate\n    action: isolate_network\n    with: {container: '{{ params.container }}'}\n"
)


class LateDockerSocket:
    """A unix socket that starts forwarding to the real dockerd only after `delay` seconds."""

    def __init__(self, path: Path, delay: float) -> None:
        self.path = path
        self.delay = delay
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        if self.stop.wait(self.delay):
            return
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(16)
        server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect("/var/run/docker.sock")
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        server.close()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            source.close()  # each socket is the source of exactly one pump


def _run_through(socket_path: Path, victim: str, data_dir: Path, tmp_path: Path, config: str) -> CLIResult:
    """`responder run` of the one-step isolation playbook, with Docker reached at `socket_path`."""
    playbook = tmp_path / "down.yml"
    playbook.write_text(PLAYBOOK)
    (tmp_path / "c.toml").write_text(config)
    return run_cli(
        "--config",
        str(tmp_path / "c.toml"),
        "run",
        str(playbook),
        "-p",
        f"container={victim}",
        data_dir=data_dir,
        env={"DOCKER_HOST": f"unix://{socket_path}"},
    )


def _contained_after_blocking(result: CLIResult, docker: Docker, victim: str, data_dir: Path) -> str:
    """The run succeeded, the victim has no network, and on the way the step failed with "docker
    unavailable" and the incident was `blocked`. Returns the incident ID."""
    assert result.returncode == 0, result.output
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    incident = incident_id(result.stdout)
    events = _events(data_dir, incident)
    assert "incident_blocked" in [k for k, _ in events]
    failed = [m for k, m in events if k == "step_finished" and "failed" in m]
    assert failed and "docker unavailable" in failed[0]  # failed fast, said why
    assert events[-1][0] == "incident_closed" and "succeeded" in events[-1][1]
    return incident


def _events(data_dir: Path, incident: str) -> list[tuple[str, str]]:
    db = sqlite3.connect(data_dir / "timeline.db")
    return db.execute(
        "SELECT kind, message FROM events WHERE incident_id=? ORDER BY seq", (incident,)
    ).fetchall()


def test_blocked_while_docker_is_down_then_contained(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    network = docker.network("down")
    victim = docker.container("down", "--network", network)
    sock = tmp_path / "docker.sock"
    late = LateDockerSocket(sock, delay=2.5)
    try:
        started = time.monotonic()
        result = _run_through(sock, victim, data_dir, tmp_path, "docker_retry = [1, 1, 1, 1, 1, 1, 1, 1]\n")
    finally:
        late.stop.set()
        late.thread.join(timeout=5)
        time.sleep(0.3)  # let the pumps see EOF and close their sockets
    _contained_after_blocking(result, docker, victim, data_dir)
    assert time.monotonic() - started < 60


def test_gives_up_after_the_last_retry(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    victim = docker.container("neverup")
    result = _run_through(
        tmp_path / "nothing.sock", victim, data_dir, tmp_path, "docker_retry = [0.2, 0.2]\n"
    )
    assert result.returncode == 3, result.output
    kinds = [k for k, _ in _events(data_dir, incident_id(result.stdout))]
    assert kinds.count("incident_blocked") == 2 and "docker_unavailable" in kinds
    status = sqlite3.connect(data_dir / "timeline.db").execute("SELECT status FROM incidents").fetchone()[0]
    assert status == "failed"


class DroppingDockerSocket:
    """Forwards to the real dockerd, but drops the connection that carries the first network
    disconnect right after dockerd has done it (as a daemon restart would), then refuses every
    connection for `down` seconds."""

    def __init__(self, path: Path, down: float) -> None:
        self.path = path
        self.down = down
        self.dropped_at: float | None = None
        self.stop = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            if self.dropped_at is not None and time.monotonic() - self.dropped_at < self.down:
                self._reset(client)
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()
        self.server.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _drop_after_answer(self, client: socket.socket, upstream: socket.socket, data: bytes) -> None:
        """Pass the request on (its body may follow in later writes) until dockerd answers, then
        reset the client instead of handing it the answer."""
        upstream.sendall(data)
        while True:
            ready, _, _ = select.select([client, upstream], [], [], 30)
            if not ready:
                break
            if upstream in ready:  # dockerd has answered: the disconnect is done
                break
            more = client.recv(65536)
            if not more:
                break
            upstream.sendall(more)
        self.dropped_at = time.monotonic()
        self._reset(client)
        upstream.close()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect("/var/run/docker.sock")
        back = threading.Thread(target=LateDockerSocket._pump, args=(upstream, client), daemon=True)
        try:
            while data := client.recv(65536):
                if self.dropped_at is None and b"/disconnect" in data:
                    self._drop_after_answer(client, upstream, data)
                    return
                if not back.is_alive():
                    back.start()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            # The answer pump closes upstream when dockerd is done; the client is ours to close
            # (left to the garbage collector it surfaced as an unraisable ResourceWarning in a
            # later test's teardown).
            if back.is_alive():
                back.join(timeout=30)
            upstream.close()
            client.close()


def test_daemon_drop_mid_isolation_is_retried_and_release_restores_every_network(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    """Fault #32: the connection drops during the disconnect and dockerd stays away for a moment.
    The step keeps what it recorded, the incident is `blocked`, the retry re-inspects and cuts
    only what is left, and release reconnects both networks with their aliases."""
    first, second = sorted([docker.network("dropa"), docker.network("dropb")])
    victim = docker.name("drop")
    docker("create", "--name", victim, "--network", first, "--network-alias", "web-a", IMAGE, "sleep", "3600")
    docker.containers.append(victim)
    docker("network", "connect", "--alias", "web-b", second, victim)
    docker("start", victim)
    proxy = DroppingDockerSocket(tmp_path / "docker.sock", down=2.0)
    try:
        result = _run_through(proxy.path, victim, data_dir, tmp_path, "docker_retry = [1, 1, 1, 1, 1, 1]\n")
    finally:
        proxy.stop.set()
        proxy.thread.join(timeout=5)
    assert proxy.dropped_at is not None, "the disconnect never went through the proxy"
    incident = _contained_after_blocking(result, docker, victim, data_dir)
    released = run_cli("release", incident, "--reason", "false positive", data_dir=data_dir)
    assert released.returncode == 0, released.output
    networks = docker.inspect(victim)["NetworkSettings"]["Networks"]
    assert sorted(networks) == [first, second]
    assert "web-a" in (networks[first]["Aliases"] or []) and "web-b" in (networks[second]["Aliases"] or [])


def test_a_daemon_that_never_answers_fails_the_step_at_the_call_timeout(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    """Fault #34: dockerd accepts the connection and never answers. Each Docker call on the
    target gives up after docker_call_timeout; the step fails saying so, with no retry storm and
    no wait for the step's own (much longer) timeout."""
    victim = docker.container("hung")
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_ignore() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_ignore, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        result = _run_through(
            path, victim, data_dir, tmp_path, "docker_call_timeout = 2\ndocker_retry = [1, 1]\n"
        )
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in held:
            sock.close()
        server.close()
    assert result.returncode == 3, result.output
    # DOCKER_HOST=unix://PATH is spoken to through the Engine API: "docker API did not answer GET ... within 2s"
    assert re.search(r"did not answer [^\n]*within 2s", result.stdout), result.stdout
    assert elapsed < 30, elapsed  # well under any step timeout: the call gave up after 2 s
    assert held, "the run never reached the hung daemon"
    kinds = [k for k, _ in _events(data_dir, incident_id(result.stdout))]
    assert "incident_blocked" not in kinds  # a hung daemon is a failure to look at, not a retry loop
    assert docker.inspect(victim)["NetworkSettings"]["Networks"]  # nothing was done
