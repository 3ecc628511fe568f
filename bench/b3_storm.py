"""B3: alert to isolated, timed from the POST to dockerd's own `disconnect` events (`docker events`
timeNano), against `responder serve` with the shipped contain-container playbook and default workers.

- B3a: one Alertmanager notification carrying N firing ContainerCompromised alerts (N containers
  on one host). Goal: the last container isolated within 5 s of the POST (N = 50).
- B3c: one alert, one container, repeated; each alert is posted once the previous incident has
  reached its approval gate (so no run is still busy). Goal: median <= 0.7 s over >= 20.

`python -m bench.b3_storm [--containers N] [--rounds R] [--singles S]`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.common import IMAGE, clean_env, docker, report, summary
from tests.integration.test_storm import notification
from tests.webhook_client import Server


class Disconnects:
    """`docker events` for network disconnects: container full ID -> first disconnect time (ns),
    on the default daemon or the one at `docker_host`."""

    def __init__(self, docker_host: str | None = None) -> None:
        self.seen: dict[str, int] = {}
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--filter",
                "type=network",
                "--filter",
                "event=disconnect",
                "--format",
                "{{json .}}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)  # let the subscription start before anything is posted

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            event = json.loads(line)
            cid = ((event.get("Actor") or {}).get("Attributes") or {}).get("container", "")
            with self._lock:
                self.seen.setdefault(cid, int(event["timeNano"]))

    def wait(self, ids: list[str], timeout: float = 300) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(i in self.seen for i in ids):
                    return [self.seen[i] for i in ids]
            time.sleep(0.02)
        with self._lock:
            missing = [i[:12] for i in ids if i not in self.seen]
        raise SystemExit(f"not isolated within {timeout}s: {missing}")

    def close(self) -> None:
        self._proc.terminate()


def containers(net: str, count: int) -> tuple[list[str], list[str]]:
    names = [f"b3-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    ids = [docker("run", "-d", "--name", n, "--network", net, IMAGE, "sleep", "3600") for n in names]
    return names, ids


def wait_gates(server: Server, timeout: float = 600) -> None:
    """Until no incident is running (every run has reached its gate or ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = server.query("SELECT count(*) FROM incidents WHERE status IN ('running','blocked')")[0][0]
        queued = server.query("SELECT count(*) FROM alerts WHERE state IN ('queued','claimed')")[0][0]
        if not busy and not queued:
            return
        time.sleep(0.1)
    raise SystemExit("runs did not settle")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--singles", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="responder-b3-"))
    data = work / "data"
    data.mkdir(mode=0o700)
    secrets = work / "secrets"
    secrets.mkdir(mode=0o700)
    server = Server(data, "--workers", "2", env=clean_env(), secrets_dir=secrets, auth="token").start()
    events = Disconnects()
    net = f"b3-{uuid.uuid4().hex[:6]}"
    docker("network", "create", net)
    created: list[str] = []
    storm_last: list[float] = []
    storm_first: list[float] = []
    singles: list[float] = []
    try:
        for _ in range(args.rounds):
            names, ids = containers(net, args.containers)
            created += names
            posted = time.time_ns()
            reply = server.post("/v1/alerts/alertmanager", notification(names))
            assert reply.status == 202, reply.body
            times = events.wait(ids)
            storm_first.append((min(times) - posted) / 1e9)
            storm_last.append((max(times) - posted) / 1e9)
            print(
                f"storm of {len(ids)}: first {storm_first[-1]:.2f} s, last {storm_last[-1]:.2f} s", flush=True
            )
            wait_gates(server)
        for _ in range(args.singles):
            names, ids = containers(net, 1)
            created += names
            posted = time.time_ns()
            reply = server.post("/v1/alerts/alertmanager", notification(names))
            assert reply.status == 202, reply.body
            singles.append((events.wait(ids)[0] - posted) / 1e9)
            print(f"single: {singles[-1]:.3f} s", flush=True)
            wait_gates(server)
        incidents = server.query("SELECT count(*) FROM incidents")[0][0]
    finally:
        events.close()
        server.stop()
        for chunk in range(0, len(created), 50):
            subprocess.run(
                ["docker", "rm", "-f", *created[chunk : chunk + 50]], capture_output=True, check=False
            )
        subprocess.run(["docker", "network", "rm", net], capture_output=True, check=False)
    storm = summary(storm_last)
    single = summary(singles) if singles else {}
    report(
        "b3_storm",
        {
            "containers_per_storm": args.containers,
            "b3a_last_isolated_s": storm,
            "b3a_first_isolated_s": summary(storm_first),
            "b3a_goal_s": 5.0,
            "b3a_met": storm["max"] <= 5.0,
            "b3c_single_s": single,
            "b3c_goal_median_s": 0.7,
            "b3c_met": bool(single) and single["median"] <= 0.7,
            "incidents_opened": incidents,
            "workers": 2,
        },
    )


if __name__ == "__main__":
    main()
