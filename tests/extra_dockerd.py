"""A second dockerd on this machine, standing in for another Docker host of a fleet.

It runs in a network namespace of its own (`ip netns add`, entered with nsenter so it keeps the
host's mounts and cgroups): its docker0 and container networks live there and never touch the
main daemon's. (Started in the host's namespace, even with --bridge=none, a second daemon can
remove the main daemon's docker0.) It listens on its own Unix socket; an inventory host reaches it
with `responder_docker_host: unix://<socket>`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

IMAGE = "responder-test/busybox"


class ExtraDockerd:
    """dockerd number `name` in netns `rsp-<name>`, state under /var/lib and /run of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.netns = f"rsp-{name}"
        self.data_root = Path(f"/var/lib/responder-test-dockerd/{name}")
        self.run_root = Path(f"/run/responder-test-dockerd/{name}")
        self.socket = self.run_root / "docker.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True) -> str:
        """The docker CLI against this daemon; stdout, stripped."""
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        env.pop("DOCKER_CONTEXT", None)
        result = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} on {self.name}: {result.stderr.strip()}")
        return result.stdout.strip()

    def start(self, timeout: float = 60) -> ExtraDockerd:
        self._teardown_leftovers()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.run_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        with open(self.run_root / "dockerd.log", "wb") as log:
            self._proc = self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd {self.name} exited: {self.log_tail()}")
            if self.socket.exists() and self.docker(
                "version", "--format", "{{.Server.Version}}", check=False
            ):
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"dockerd {self.name} did not start: {self.log_tail()}")
        self._load_image()
        return self

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                "dockerd",
                "--data-root",
                str(self.data_root),
                "--exec-root",
                str(self.run_root / "exec"),
                "--pidfile",
                str(self.run_root / "dockerd.pid"),
                "-H",
                self.docker_host,
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _load_image(self) -> None:
        """The test image, copied from the main daemon (no registry is reachable)."""
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        with subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE) as save:
            subprocess.run(
                ["docker", "load", "-q"], stdin=save.stdout, env=env, check=True, capture_output=True
            )
        if save.returncode != 0:
            raise RuntimeError(f"docker save {IMAGE} failed ({save.returncode})")

    def log_tail(self) -> str:
        path = self.run_root / "dockerd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Remove its containers, stop it, and leave no netns, mount or state behind."""
        if self._proc is not None and self._proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).split()
            for chunk in range(0, len(ids), 100):
                self.docker("rm", "-f", *ids[chunk : chunk + 100], check=False)
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        self._proc = None
        self._teardown_leftovers()

    def _teardown_leftovers(self) -> None:
        _kill_with_descendants(str(self.run_root))
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith((str(self.data_root), str(self.run_root)))
        ]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.run_root, ignore_errors=True)


def _kill_with_descendants(marker: str) -> None:
    """SIGKILL every process whose command line names `marker` (an earlier run's dockerd, its
    containerd, the containerd shims), and their descendants (the containers' processes)."""
    parents: dict[int, int] = {}
    marked: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if marker in cmdline:
            marked.add(int(entry.name))
    doomed = set(marked)
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in doomed} - doomed
        doomed |= more
        grew = bool(more)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if doomed:
        time.sleep(0.5)
