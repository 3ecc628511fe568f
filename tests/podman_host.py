"""A Podman host in a box, reached by Ansible over SSH: a container of the local dockerd running
systemd as PID 1, journald, Debian's rootful podman with podman.socket, and sshd
(tests/fixtures/podman-host/Dockerfile, built by scripts/prepare-host.sh).

Everything a real Podman host has that matters to responder is real here: containers whose log
driver is journald (Podman's default under systemd) or k8s-file, containers run by systemd units
(`podman generate systemd --new`, which sets PODMAN_SYSTEMD_UNIT as Quadlet does), `podman
secret`, Podman's own networks, and no dockerd socket (so responder must detect Podman by
itself). It runs with SYS_ADMIN and NET_ADMIN but not --privileged, which this machine refuses.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

IMAGE = "responder-test/podman-host:bookworm"


@dataclass
class PodmanHost:
    container: str
    volume: str
    address: str
    key: Path
    known_hosts: Path

    def sh(self, script: str, *, check: bool = True, timeout: float = 120, stdin: bytes | None = None) -> str:
        """Run a shell script on the host (as root, through docker exec: test set-up only)."""
        done = subprocess.run(
            ["docker", "exec", "-i", self.container, "sh", "-c", script],
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"on the Podman host: {script}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace").strip()

    def podman(self, *args: str) -> str:
        done = subprocess.run(
            ["docker", "exec", self.container, "podman", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self.podman("inspect", ref))[0]

    def host_vars(self) -> dict[str, Any]:
        """Over SSH as root, host key checked; no runtime or socket named: responder detects it."""
        return {
            "ansible_host": self.address,
            "ansible_port": 22,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(self, path: Path, name: str = "podmanhost") -> Path:
        path.write_text(yaml.safe_dump({"all": {"hosts": {name: self.host_vars()}}}))
        return path

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=120)
        subprocess.run(["docker", "volume", "rm", "-f", self.volume], capture_output=True, timeout=60)


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Podman host did not come up: {what}")
        time.sleep(0.3)


def start_podman_host(root: Path, busybox_image: str) -> PodmanHost:
    """Start the box, authorise a fresh client key for root, record its host key, and load
    `busybox_image` from the local dockerd into its Podman."""
    tag = uuid.uuid4().hex[:8]
    name, volume = f"responder-podman-host-{tag}", f"responder-podman-host-{tag}"
    subprocess.run(["docker", "volume", "create", volume], check=True, capture_output=True)
    subprocess.run(
        [
            "docker", "run", "-d", "--name", name, "--hostname", "podmanhost",
            "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v", f"{volume}:/var/lib/containers",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            IMAGE,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, check=True).stdout)[0]
    address = info["NetworkSettings"]["IPAddress"]
    host = PodmanHost(name, volume, address, root / "client_ed25519", root / "known_hosts")
    try:
        _wait(
            lambda: host.sh("systemctl is-system-running || true", check=False) in ("running", "degraded"),
            "systemd",
            90,
        )
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.key)], check=True)
        host.sh(
            "cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
            stdin=(root / "client_ed25519.pub").read_bytes(),
        )
        host_key = host.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
        host.known_hosts.write_text(f"{address} {' '.join(host_key)}\n")

        def ssh_listens() -> bool:
            with socket.socket() as probe:
                probe.settimeout(1)
                return probe.connect_ex((address, 22)) == 0

        _wait(ssh_listens, "sshd", 60)
        _wait(lambda: _has_socket(host), "podman.socket", 30)
        saved = subprocess.run(["docker", "save", busybox_image], capture_output=True, check=True).stdout
        host.sh("podman load -q", stdin=saved, timeout=300)
    except BaseException:
        host.stop()
        raise
    return host


def _has_socket(host: PodmanHost) -> bool:
    return (
        subprocess.run(
            ["docker", "exec", host.container, "test", "-S", "/run/podman/podman.sock"], capture_output=True
        ).returncode
        == 0
    )
