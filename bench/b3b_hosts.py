"""B3b: a fleet over several hosts reached over SSH, timed to dockerd's own `disconnect` events.

Five inventory host names for one loopback sshd, each with its own dockerd (tests/extra_dockerd.py:
own network namespace, own socket, reached through `responder_docker_host`) and its own 40
containers: 200 in all, shipped contain-container playbook. Two ways in, each timed from its start
to the last container's disconnect event (goal: all isolated within 10 s):

- webhook: one Alertmanager notification carrying 200 firing alerts, posted to `responder serve`
  (default workers); grouped into fleet incidents of at most max_targets each.
- cli: `responder run contain-container -p container=label:b3b=ROUND --max-targets 200`: one
  incident, one Ansible run over the five hosts (Ansible's default 5 forks).
- bare (the floor, same run): every container disconnected straight through each daemon's Engine
  API from 40 threads, no Ansible, no SSH. On a small machine dockerd's own work is most of it.

`python -m bench.b3b_hosts [--hosts 5] [--per-host 40] [--rounds 2]`. Needs root (netns, dockerd).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

from bench.b3_storm import Disconnects, wait_gates
from bench.common import IMAGE, REPO, clean_env, report, summary
from tests.extra_dockerd import ExtraDockerd
from tests.integration.test_storm import notification
from tests.sshd import start_sshd
from tests.webhook_client import Server


def populate(host: ExtraDockerd, round_tag: str, count: int) -> dict[str, str]:
    """`count` containers on the host's own network, labelled for this round: name -> full ID."""
    names = [f"b3b-{host.name}-{round_tag}-{i}" for i in range(count)]

    def start(name: str) -> str:
        return host.docker(
            "run", "-d", "--name", name, "--network", "b3b", "--label", f"b3b={round_tag}",
            IMAGE, "sleep", "3600",
        )  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        return dict(zip(names, pool.map(start, names), strict=True))


def clear(host: ExtraDockerd) -> None:
    ids = host.docker("ps", "-aq").split()
    for chunk in range(0, len(ids), 100):
        host.docker("rm", "-f", *ids[chunk : chunk + 100], check=False)


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def bare_disconnect(hosts: list[ExtraDockerd], made: list[dict[str, str]]) -> None:
    """The floor: POST /networks/b3b/disconnect for every container, 40 at a time, no Ansible."""

    def one(job: tuple[ExtraDockerd, str]) -> None:
        connection = _UnixConnection(str(job[0].socket))
        body = json.dumps({"Container": job[1]})
        connection.request("POST", "/networks/b3b/disconnect", body, {"Content-Type": "application/json"})
        reply = connection.getresponse()
        reply.read()
        connection.close()
        if reply.status >= 300:
            raise SystemExit(f"disconnect {job[1][:12]}: HTTP {reply.status}")

    jobs = [(host, cid) for host, per in zip(hosts, made, strict=True) for cid in per.values()]
    with ThreadPoolExecutor(40) as pool:
        list(pool.map(one, jobs))


def last_disconnect(
    watchers: list[Disconnects], ids_per_host: list[list[str]], started: int
) -> tuple[float, float]:
    times = [t for watch, ids in zip(watchers, ids_per_host, strict=True) for t in watch.wait(ids)]
    return (min(times) - started) / 1e9, (max(times) - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--per-host", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="responder-b3b-"))
    (work / "sshd").mkdir()
    ssh, sshd = start_sshd(work / "sshd")
    hosts = [ExtraDockerd(f"b3b{i}") for i in range(args.hosts)]
    watchers: list[Disconnects] = []
    results: dict[str, list[tuple[float, float]]] = {"bare": [], "webhook": [], "cli": []}
    server: Server | None = None
    try:
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda h: h.start(), hosts))
        for host in hosts:
            host.docker("network", "create", "b3b")
        watchers = [Disconnects(h.docker_host) for h in hosts]
        inventory = ssh.inventory(
            work / "inventory.yml",
            {f"host{i + 1}": {"responder_docker_host": h.docker_host} for i, h in enumerate(hosts)},
        )
        data = work / "data"
        data.mkdir(mode=0o700)
        secrets = work / "secrets"
        secrets.mkdir(mode=0o700)
        server = Server(
            data, "-i", str(inventory), env=clean_env(), secrets_dir=secrets, auth="token"
        ).start()
        for round_no in range(args.rounds):
            for way in results:
                tag = f"{way[0]}{round_no}{uuid.uuid4().hex[:4]}"
                with ThreadPoolExecutor(len(hosts)) as pool:
                    made = list(pool.map(lambda h, t=tag: populate(h, t, args.per_host), hosts))
                names = [n for per in made for n in per]
                ids = [list(per.values()) for per in made]
                started = time.time_ns()
                if way == "bare":
                    bare_disconnect(hosts, made)
                    figure = last_disconnect(watchers, ids, started)
                elif way == "webhook":
                    reply = server.post("/v1/alerts/alertmanager", notification(names))
                    assert reply.status == 202, reply.body
                    figure = last_disconnect(watchers, ids, started)
                    wait_gates(server)
                else:
                    run = subprocess.Popen(
                        [
                            sys.executable, "-m", "responder", "run", "contain-container", "-i", str(inventory),
                            "-p", f"container=label:b3b={tag}", "--max-targets", str(len(names)),
                        ],
                        env=clean_env(RESPONDER_DATA_DIR=str(work / "cli-data")),
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                    )  # fmt: skip
                    figure = last_disconnect(watchers, ids, started)
                    output, _ = run.communicate(timeout=1800)
                    if run.returncode not in (0, 10):  # 10: stopped at its approval gate
                        raise SystemExit(f"responder run exited {run.returncode}:\n{output[-3000:]}")
                results[way].append(figure)
                print(
                    f"{way}: {len(names)} containers, first {figure[0]:.2f} s, last {figure[1]:.2f} s",
                    flush=True,
                )
                for host in hosts:
                    clear(host)
        incidents = server.query("SELECT count(*) FROM incidents")[0][0]
    finally:
        for watch in watchers:
            watch.close()
        if server is not None:
            server.stop()
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda h: h.stop(), hosts))
        sshd.terminate()
    figures: dict[str, object] = {
        "hosts": args.hosts,
        "containers_per_host": args.per_host,
        "goal_s": 10.0,
        "webhook_incidents_opened": incidents,
    }
    for way, samples in results.items():
        last = summary([s[1] for s in samples])
        figures[f"{way}_last_isolated_s"] = last
        figures[f"{way}_first_isolated_s"] = summary([s[0] for s in samples])
        if way != "bare":
            figures[f"{way}_met"] = last["max"] <= 10.0
            figures[f"{way}_over_bare_median"] = (
                last["median"] / summary([s[1] for s in results["bare"]])["median"]
            )
    report("b3b_hosts", figures)


if __name__ == "__main__":
    main()
