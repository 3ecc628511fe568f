"""Unit-test plumbing for the target-side code in runbooks/module_utils: the module loaded as
Ansible ships it, and a one-connection fake dockerd on a unix socket that answers on cue."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO


def load_module_utils() -> types.ModuleType:
    """runbooks/module_utils/responder_docker.py as Ansible would ship it (it imports nothing of ours)."""
    name = "responder_docker_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, REPO / "runbooks" / "module_utils" / "responder_docker.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _read_request(conn: socket.socket) -> bytes:
    request = b""
    while b"\r\n\r\n" not in request:
        data = conn.recv(4096)
        if not data:
            return request
        request += data
    head, _, body = request.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            while len(body) < int(line.split(b":", 1)[1]):
                body += conn.recv(4096)
    return head + b"\r\n\r\n" + body


FakeDockerd = Callable[..., object]


@pytest.fixture
def fake_dockerd(tmp_path: Path) -> Iterator[FakeDockerd]:
    """`start(behaviour, ...)` serves one connection per behaviour, in order, on a unix socket and
    returns a Docker pointed at it; the requests received are in `docker.requests`."""
    rd = load_module_utils()
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    threads: list[threading.Thread] = []

    def start(*behaviours: Callable[[socket.socket], None]) -> object:
        requests: list[bytes] = []

        def serve() -> None:
            for behaviour in behaviours:
                conn, _ = server.accept()
                with conn:
                    requests.append(_read_request(conn))
                    behaviour(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        docker = rd.Docker()
        docker.socket = path
        docker.use_api = True
        docker.requests = requests
        return docker

    yield start
    server.close()
    for thread in threads:
        thread.join(timeout=5)


def respond(
    status: str, body: bytes = b"", content_type: str = "application/json"
) -> Callable[[socket.socket], None]:
    """A behaviour that sends one whole HTTP answer."""

    def send(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status.encode(), content_type.encode(), len(body), body)
        )

    return send
