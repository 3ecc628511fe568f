"""#16: containers Docker cannot disconnect (--network host, --network container:X) are cut off
by nftables rules matching their cgroup, in the namespace they use; everything else there keeps
its network; release removes the rules. Real dockerd, nft, network namespaces and Ansible."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Docker, incident_id, require, run_cli

pytestmark = pytest.mark.integration


@dataclass
class Listener:
    """A TCP listener in this process (the host's own network) that counts the lines it gets."""

    port: int
    lines: int = 0

    def start(self) -> Listener:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 0))
        server.listen(16)
        self.port = server.getsockname()[1]

        def serve() -> None:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return self

    def _read(self, conn: socket.socket) -> None:
        with conn:
            for _line in conn.makefile("rb"):
                self.lines += 1


@dataclass
class Netns:
    name: str
    address: str
    port: int


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A network namespace of the test's own, reached over a veth pair, with a listener in it."""
    require(
        subprocess.run(["nft", "--version"], capture_output=True).returncode == 0, "nftables is not installed"
    )
    tag = uuid.uuid4().hex[:6]
    name, host_if, ns_if = f"rtns{tag}", f"rth{tag}", f"rtn{tag}"
    octet = int(tag[:2], 16) % 200 + 20
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", name)
    run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
    run("ip", "link", "set", ns_if, "netns", name)
    run("ip", "addr", "add", f"10.213.{octet}.1/30", "dev", host_if)
    run("ip", "link", "set", host_if, "up")
    run("ip", "netns", "exec", name, "ip", "addr", "add", f"10.213.{octet}.2/30", "dev", ns_if)
    run("ip", "netns", "exec", name, "ip", "link", "set", ns_if, "up")
    run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
    server = subprocess.Popen(
        ["ip", "netns", "exec", name, "python3", "-c",
         "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('0.0.0.0',7070))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n c.close()\n"],
    )  # fmt: skip
    time.sleep(0.5)
    try:
        yield Netns(name, f"10.213.{octet}.2", 7070)
    finally:
        server.kill()
        server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _reaches(docker: Docker, container: str, address: str, port: int) -> bool:
    """A connection from inside the container (docker exec joins its cgroup and namespace)."""
    done = subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"nc -w 2 {address} {port} </dev/null"],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


def _host_reaches(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
        return True
    except OSError:
        return False


def _responder_tables(pid: int | None = None) -> list[str]:
    prefix = ["nsenter", "--target", str(pid), "--net", "--"] if pid else []
    listed = subprocess.run([*prefix, "nft", "list", "tables"], capture_output=True, text=True, check=True)
    return [line.split()[-1] for line in listed.stdout.splitlines() if "responder_" in line]


def _outputs(data_dir: Path, incident: str) -> dict:
    db = sqlite3.connect(data_dir / "timeline.db")
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='isolate'", (incident,)
    ).fetchone()
    return json.loads(outputs)


def test_a_host_network_container_is_cut_off_by_its_cgroup_and_release_gives_it_back(
    docker: Docker, data_dir: Path, netns: Netns
) -> None:
    host = Listener(0).start()
    hostnet = docker.container(
        "hostnet",
        "--network",
        "host",
        command=("sh", "-c", f"while true; do echo ping; sleep 0.2; done | nc 127.0.0.1 {host.port}"),
    )
    time.sleep(1.5)
    assert host.lines > 0  # the established connection carries data
    assert _reaches(docker, hostnet, "127.0.0.1", host.port) and _reaches(
        docker, hostnet, netns.address, netns.port
    )
    result = run_cli(
        "run",
        "isolate-container",
        "-p",
        f"container={hostnet}",
        "-p",
        "preserve_logs=false",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.output
    incident = incident_id(result.stdout)
    cid = docker.inspect(hostnet)["Id"]
    # cut both ways: the host's loopback services, the test namespace, and the open connection
    assert not _reaches(docker, hostnet, "127.0.0.1", host.port)
    assert not _reaches(docker, hostnet, netns.address, netns.port)
    time.sleep(0.5)
    settled = host.lines
    time.sleep(1.5)
    assert host.lines == settled, "the established connection still carries data"
    # the host's own processes keep their network
    assert _host_reaches("127.0.0.1", host.port) and _host_reaches(netns.address, netns.port)
    table = f"responder_{incident.replace('-', '_')}_{cid[:12]}"
    assert table in _responder_tables()
    firewall = _outputs(data_dir, incident)["firewall"]
    assert firewall["table"] == table and firewall["before"] == "ECONNREFUSED"
    assert firewall["after"] in ("EPERM", "ETIMEDOUT")  # checked from inside the container's cgroup
    assert docker.inspect(hostnet)["State"]["Running"]  # its live state is still there for evidence
    released = run_cli("release", incident, "--reason", "false positive", data_dir=data_dir)
    assert released.returncode == 0, released.output
    assert _responder_tables() == []  # no rule left behind
    assert _reaches(docker, hostnet, "127.0.0.1", host.port) and _reaches(
        docker, hostnet, netns.address, netns.port
    )


def test_a_container_sharing_anothers_namespace_is_cut_off_alone(docker: Docker, data_dir: Path) -> None:
    network = docker.network("shared")
    peer = docker.container(
        "peer", "--network", network, command=("sh", "-c", "while true; do nc -l -p 8080 </dev/null; done")
    )
    owner = docker.container("owner", "--network", network)
    sidecar = docker.container("sidecar", "--network", f"container:{owner}")
    other = docker.container("other", "--network", f"container:{owner}")
    peer_ip = docker.ip(peer, network)
    time.sleep(1)
    assert _reaches(docker, sidecar, peer_ip, 8080) and _reaches(docker, owner, peer_ip, 8080)
    # the plan names the namespace's owner and who else shares it, and says they keep their network
    planned = run_cli(
        "run",
        "isolate-container",
        "-p",
        f"container={sidecar}",
        "-p",
        "preserve_logs=false",
        "--dry-run",
        data_dir=data_dir,
    )
    assert planned.returncode == 0, planned.output
    assert owner in planned.stdout and other in planned.stdout and "keep their network" in planned.stdout
    result = run_cli(
        "run",
        "isolate-container",
        "-p",
        f"container={sidecar}",
        "-p",
        "preserve_logs=false",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.output
    incident = incident_id(result.stdout)
    assert not _reaches(docker, sidecar, peer_ip, 8080)
    assert _reaches(docker, owner, peer_ip, 8080) and _reaches(docker, other, peer_ip, 8080)  # spared
    outputs = _outputs(data_dir, incident)
    assert outputs["namespace_owner"] == docker.inspect(owner)["Id"] and other in outputs["sharing_namespace"]
    owner_pid = docker.inspect(owner)["State"]["Pid"]
    assert len(_responder_tables(owner_pid)) == 1 and _responder_tables() == []  # in the owner's namespace
    released = run_cli("release", incident, "--reason", "cleared", data_dir=data_dir)
    assert released.returncode == 0, released.output
    assert _responder_tables(owner_pid) == []
    assert _reaches(docker, sidecar, peer_ip, 8080)


def test_a_shared_namespace_is_cut_as_a_whole_only_behind_a_gate(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    """`shared_namespace: whole`: the plan names X and everyone in its namespace, the step waits
    for a person, then X is disconnected and they all lose their network; release reconnects X."""
    network = docker.network("whole")
    peer = docker.container(
        "peer", "--network", network, command=("sh", "-c", "while true; do nc -l -p 8080 </dev/null; done")
    )
    owner = docker.container("owner", "--network", network)
    sidecar = docker.container("sidecar", "--network", f"container:{owner}")
    other = docker.container("other", "--network", f"container:{owner}")
    peer_ip = docker.ip(peer, network)
    time.sleep(1)
    playbook = tmp_path / "cut-pod.yml"
    playbook.write_text(
        "version: 1\nname: cut-pod\nseverity: critical\n"
        "description: Cut the suspect's whole shared network namespace, once someone agrees.\n"
        "params:\n  container: {type: targets, required: true}\n"
        "steps:\n  - id: isolate\n    action: isolate_network\n    approval: required\n"
        "    with:\n      container: '{{ params.container }}'\n      shared_namespace: whole\n"
    )
    planned = run_cli("run", str(playbook), "-p", f"container={sidecar}", "--dry-run", data_dir=data_dir)
    assert planned.returncode == 0, planned.output
    assert "approval required" in planned.stdout
    assert all(name in planned.stdout for name in (owner, other)), planned.stdout
    assert "loses its network with it" in planned.stdout
    waiting = run_cli("run", str(playbook), "-p", f"container={sidecar}", data_dir=data_dir)
    incident = incident_id(waiting.stdout)
    assert _reaches(docker, sidecar, peer_ip, 8080)  # nothing is cut before the approval
    approved = run_cli("approve", incident, "--all", "--as", "lead@oncall", data_dir=data_dir, timeout=600)
    assert approved.returncode == 0, approved.output
    for name in (sidecar, owner, other):
        assert not _reaches(docker, name, peer_ip, 8080), name
    assert docker.inspect(owner)["NetworkSettings"]["Networks"] == {}
    outputs = _outputs(data_dir, incident)
    assert outputs["reconnect_container"] == docker.inspect(owner)["Id"] and outputs["cut_whole_namespace"]
    assert outputs["container_id"] == docker.inspect(sidecar)["Id"]  # the suspect, for claims and scope
    mine = incident.replace("-", "_")
    owner_pid = docker.inspect(owner)["State"]["Pid"]
    assert not [t for t in _responder_tables() + _responder_tables(owner_pid) if mine in t]  # no rule here
    released = run_cli("release", incident, "--reason", "cleared", data_dir=data_dir, timeout=600)
    assert released.returncode == 0, released.output
    assert network in docker.inspect(owner)["NetworkSettings"]["Networks"]
    assert _reaches(docker, sidecar, peer_ip, 8080) and _reaches(docker, other, peer_ip, 8080)
