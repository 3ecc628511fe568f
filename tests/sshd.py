"""A real sshd on loopback with generated keys, for Ansible over SSH (tests and benchmarks).

It logs in as root with a key only; host key checking stays on, against a known_hosts file
written here. Several inventory host names may point at it (each with its own Docker socket, see
tests/extra_dockerd.py) to stand for several hosts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class SSHTarget:
    port: int
    key: Path
    known_hosts: Path

    def host_vars(self) -> dict[str, Any]:
        """Inventory variables that reach this sshd as root, host key checked."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(self, path: Path, hosts: dict[str, dict] | None = None) -> Path:
        """An inventory file: one host `dockerhost`, or `hosts` (name -> extra vars), all here."""
        base = self.host_vars()
        data: dict[str, Any] = {"all": {"hosts": {}}}
        for name, extra in (hosts or {"dockerhost": {}}).items():
            data["all"]["hosts"][name] = {**base, **extra}
        path.write_text(yaml.safe_dump(data))
        return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sshd(root: Path, timeout: float = 15) -> tuple[SSHTarget, subprocess.Popen[bytes]]:
    """sshd on a free loopback port, its keys and config under `root`; RuntimeError if it fails."""
    os.chmod(root, 0o700)
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root}/sshd.pid\n"
        f"AuthorizedKeysFile {root}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    with open(root / "sshd.log", "w") as log:
        proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
    host_pub = (root / "host_ed25519.pub").read_text().split()
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return SSHTarget(port=port, key=client_key, known_hosts=known), proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()}")
