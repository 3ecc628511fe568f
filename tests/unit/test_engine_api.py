"""The modules' Engine API calls (runbooks/module_utils/responder_docker.py) against a fake dockerd:
what is sent, what counts as success, how failures read, and the logs stream's framing.

The real dockerd answers the same calls in the integration tests; here the bad answers happen on
cue. When the CLI would not use the local socket, the modules call the CLI instead.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from pathlib import Path

import pytest

from tests.unit.conftest import FakeDockerd, load_module_utils, respond

rd = load_module_utils()
CID = "0123456789ab" + "c" * 52


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def _evidence_dir(tmp_path: Path) -> str:
    directory = tmp_path / "evidence"
    directory.mkdir(mode=0o700)
    return str(directory)


def test_post_sends_a_json_body_and_no_content_is_success(fake_dockerd: FakeDockerd) -> None:
    docker = fake_dockerd(respond("200 OK", b'{"Warnings":[]}'), respond("204 No Content"))
    docker.disable_restart(CID)
    docker.pause(CID)
    update, pause = docker.requests
    head, _, body = update.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /containers/%s/update HTTP/1.1" % CID.encode())
    assert json.loads(body) == {"RestartPolicy": {"Name": "no"}}
    assert pause.startswith(b"POST /containers/%s/pause " % CID.encode())


def test_not_modified_counts_as_done(fake_dockerd: FakeDockerd) -> None:
    """A stop of a container that already exited is 304: nothing to do, not a failure."""
    docker = fake_dockerd(respond("304 Not Modified"))
    docker.stop(CID, 7)
    assert docker.requests[0].startswith(b"POST /containers/%s/stop?t=7 " % CID.encode())


def test_error_answers_carry_dockerds_message(fake_dockerd: FakeDockerd) -> None:
    docker = fake_dockerd(
        respond("409 Conflict", b'{"message":"Container %s is not running"}' % CID.encode()),
        respond("500 Internal Server Error", b"plain text, not JSON"),
    )
    with pytest.raises(rd.DockerError, match="is not running") as conflict:
        docker.kill(CID)
    assert conflict.value.reason == "docker_error"
    with pytest.raises(rd.DockerError, match="plain text, not JSON"):
        docker.disconnect("net1", CID)


def test_disconnect_names_the_network_in_the_path_and_the_container_in_the_body(
    fake_dockerd: FakeDockerd,
) -> None:
    docker = fake_dockerd(respond("200 OK"))
    docker.disconnect("a/b c", CID)
    head, _, body = docker.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /networks/a%2Fb%20c/disconnect ")  # one path segment, whatever it is
    assert json.loads(body) == {"Container": CID, "Force": False}


def test_a_daemon_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    docker = rd.Docker()
    docker.use_api = True
    docker.socket = str(tmp_path / "nothing-listens-here.sock")
    with pytest.raises(rd.DockerError) as caught:
        docker.pause(CID)
    assert caught.value.reason == "docker_unavailable"  # blocked and retried, not failed for good


def test_a_daemon_that_never_answers_times_out(fake_dockerd: FakeDockerd) -> None:
    release = threading.Event()
    docker = fake_dockerd(lambda conn: release.wait(10))
    docker.timeout = 0.5
    try:
        with pytest.raises(rd.DockerError, match=r"did not answer POST .* within 0\.5s") as caught:
            docker.unpause(CID)
        assert caught.value.reason == "docker_timeout"
    finally:
        release.set()


def test_a_connection_dropped_mid_answer_is_unavailable(fake_dockerd: FakeDockerd) -> None:
    def drop(conn: socket.socket) -> None:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"Id"')
        conn.shutdown(socket.SHUT_RDWR)

    docker = fake_dockerd(drop)
    with pytest.raises(rd.DockerError) as caught:
        docker.inspect_raw(CID)
    assert caught.value.reason == "docker_unavailable"


def test_versions_say_how_docker_was_reached(fake_dockerd: FakeDockerd) -> None:
    docker = fake_dockerd(respond("200 OK", b'{"Version":"20.10.24","ApiVersion":"1.41"}'))
    assert docker.version() == {
        "runtime": "docker",
        "client": None,
        "server": "20.10.24",
        "api": "1.41",
        "via": f"Engine API on {docker.socket}",
    }


def test_versions_name_podman_when_its_compatible_api_answers(fake_dockerd: FakeDockerd) -> None:
    body = (
        b'{"Version":"4.3.1","ApiVersion":"1.41","Components":[{"Name":"Podman Engine","Version":"4.3.1"}]}'
    )
    assert fake_dockerd(respond("200 OK", body)).version()["runtime"] == "podman"


def test_demultiplexer_keeps_the_order_across_any_chunking() -> None:
    stream = _frame(1, b"out 1\n") + _frame(2, b"err 1\n") + _frame(1, b"") + _frame(1, b"out 2\n" * 1000)
    for size in (1, 3, 7, 8, 9, 4096, len(stream)):
        demuxer = rd._Demultiplexer()
        out = b"".join(demuxer.feed(stream[i : i + size]) for i in range(0, len(stream), size))
        assert out == b"out 1\nerr 1\n" + b"out 2\n" * 1000
        demuxer.close("/logs", len(stream))


def test_demultiplexer_refuses_a_stream_cut_inside_a_frame() -> None:
    demuxer = rd._Demultiplexer()
    assert demuxer.feed(_frame(1, b"whole\n") + _frame(2, b"half a line")[:-4]) == b"whole\n"
    with pytest.raises(rd.DockerError, match="cut short inside a frame"):
        demuxer.close("/containers/x/logs", 30)


def _chunked_logs(body: bytes):  # type: ignore[no-untyped-def]
    def send(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(0, len(body), 5):
            part = body[i : i + 5]
            conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        conn.sendall(b"0\r\n\r\n")

    return send


def test_logs_evidence_is_the_text_docker_logs_would_print(fake_dockerd: FakeDockerd, tmp_path: Path) -> None:
    lines = [(1, b"2026-11-29T08:00:00.1Z started\n"), (2, b"2026-11-29T08:00:01.2Z warning: x\n")]
    docker = fake_dockerd(_chunked_logs(b"".join(_frame(s, p) for s, p in lines)))
    item = rd.collect_to_evidence(docker, "logs", CID, _evidence_dir(tmp_path), CID[:12] + "-1Z")
    assert Path(item["path"]).read_bytes() == b"".join(p for _, p in lines)
    assert item["path"].endswith("-logs.txt")
    assert (
        item["method"] == "docker logs --timestamps (stdout+stderr), via Engine API GET /containers/ID/logs"
    )
    assert docker.requests[0].startswith(
        b"GET /containers/%s/logs?stdout=1&stderr=1&timestamps=1 " % CID.encode()
    )


def test_tty_logs_are_kept_as_sent(fake_dockerd: FakeDockerd, tmp_path: Path) -> None:
    raw = b"\x01\x00\x00\x00 not a frame header: a terminal's output\r\n"
    docker = fake_dockerd(_chunked_logs(raw))
    item = rd.collect_to_evidence(docker, "logs", CID, _evidence_dir(tmp_path), CID[:12] + "-1Z", tty=True)
    assert Path(item["path"]).read_bytes() == raw


def test_process_list_is_dockerds_json(fake_dockerd: FakeDockerd, tmp_path: Path) -> None:
    answer = b'{"Titles":["PID","PPID","USER","STARTED","COMMAND"],"Processes":[["1","0","root","x","sh"]]}'
    docker = fake_dockerd(_chunked_logs(answer))
    item = rd.collect_to_evidence(docker, "processes", CID, _evidence_dir(tmp_path), CID[:12] + "-1Z")
    assert Path(item["path"]).read_bytes() == answer and item["path"].endswith("-processes.json")
    assert docker.requests[0].startswith(
        b"GET /containers/%s/top?ps_args=-eo%%20pid%%2Cppid%%2Cuser%%2Clstart%%2Cargs " % CID.encode()
    )


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        ({}, None, True),
        ({"DOCKER_HOST": "tcp://10.0.0.1:2376"}, None, False),
        ({"DOCKER_CONTEXT": "remote"}, None, False),
        ({"DOCKER_CONTEXT": "default"}, None, True),
        ({}, {"currentContext": "remote"}, False),
        ({}, {"currentContext": "default"}, True),
        ({}, "not json", True),
    ],
)
def test_the_api_is_used_only_where_the_cli_would_use_the_local_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config: object, expected: bool
) -> None:
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    sock = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    try:
        assert rd._cli_uses_local_socket(str(sock)) is expected
        assert rd._cli_uses_local_socket(str(tmp_path / "absent.sock")) is False
    finally:
        listener.close()
        os.unlink(sock)


def test_reconnect_asks_for_the_recorded_aliases_and_addresses(fake_dockerd: FakeDockerd) -> None:
    docker = fake_dockerd(respond("200 OK"), respond("200 OK"))
    docker.connect("back", CID, ["db", "db.internal"], ipv4="172.20.0.5", ipv6="fd00::5")
    docker.connect("bridge", CID, [])
    with_addresses, plain = (json.loads(r.partition(b"\r\n\r\n")[2]) for r in docker.requests)
    assert with_addresses == {
        "Container": CID,
        "EndpointConfig": {
            "Aliases": ["db", "db.internal"],
            "IPAMConfig": {"IPv4Address": "172.20.0.5", "IPv6Address": "fd00::5"},
        },
    }
    assert plain == {"Container": CID, "EndpointConfig": {"Aliases": []}}


def test_a_unix_docker_host_is_spoken_to_through_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second daemon, rootless Docker or Podman's Docker-compatible socket: DOCKER_HOST=unix://PATH
    is one HTTP request per call too; ssh:// and tcp:// stay with the CLI."""
    sock = tmp_path / "other.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    try:
        monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
        assert rd._api_socket("/var/run/docker.sock") == str(sock)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
        assert rd._api_socket("/var/run/docker.sock") is None
        for remote in ("ssh://root@db1", "tcp://10.0.0.5:2376"):
            monkeypatch.setenv("DOCKER_HOST", remote)
            assert rd._api_socket("/var/run/docker.sock") is None
    finally:
        listener.close()


def test_a_host_with_podmans_socket_and_no_dockerd_is_detected_as_podman(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#16: no inventory variable needed on a Podman host. Without DOCKER_HOST or another
    context, dockerd's socket wins where it exists; where it does not, Podman's rootful socket
    is used; a host with neither falls back to the CLI, which says what is missing."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    dockerd, podman = tmp_path / "docker.sock", tmp_path / "podman.sock"
    listeners = []
    try:
        for path in (dockerd, podman):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listeners.append(listener)
        assert rd._api_socket(str(dockerd), str(podman)) == str(dockerd)
        assert rd._api_socket(str(tmp_path / "no-dockerd.sock"), str(podman)) == str(podman)
        assert rd._api_socket(str(tmp_path / "no-dockerd.sock"), str(tmp_path / "no-podman.sock")) is None
        monkeypatch.setenv("DOCKER_CONTEXT", "remote")  # a context chosen on purpose is the CLI's
        assert rd._api_socket(str(tmp_path / "no-dockerd.sock"), str(podman)) is None
    finally:
        for listener in listeners:
            listener.close()


def test_the_cli_is_podmans_where_only_podman_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert rd._cli_binary("docker") == "docker"  # neither: the error names docker
    podman = bin_dir / "podman"
    podman.write_text("#!/bin/sh\n")
    podman.chmod(0o755)
    assert rd._cli_binary("docker") == "podman"
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    assert rd._cli_binary("docker") == "docker"
