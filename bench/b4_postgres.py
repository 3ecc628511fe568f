"""B4 on PostgreSQL: the same 10,000 Alertmanager notifications (1,000 unique, each sent 10 times,
shuffled, HMAC-signed, 32 keep-alive connections) against `responder serve` on a shared
PostgreSQL store (tests/postgres.py: Debian's package in a local container), with one replica
and with two behind a round-robin balancer (the connections alternate between them), and, in
the same run, against the bare aiohttp receiver (bench/bare_receiver.py).

Goals as for SQLite: accepted notifications per second at least 0.5x the bare receiver, p99
acknowledgement at most 50 ms, and dedup exact across replicas (1,000 queued, 1,000 answered
202, 9,000 counted as repeats).

`python -m bench.b4_postgres [NOTIFICATIONS] [UNIQUE] [CONNECTIONS] [ROUNDS]`
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.b4_webhook import FIXTURES, SECRET, payloads, stop, wait_healthy
from bench.common import REPO, clean_env, report, summary
from responder import db
from responder.store_location import PostgresLocation
from tests.postgres import PostgresServer, start_postgres
from tests.webhook_client import free_port


async def balanced_burst(
    ports: list[int], sends: list[bytes], connections: int
) -> tuple[float, list[float], dict[int, int]]:
    """The burst, each keep-alive connection pinned to one replica in turn (round robin)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in sends:
        queue.put_nowait(body)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) for _ in ports]

    async def client(number: int) -> None:
        session, port = sessions[number % len(ports)], ports[number % len(ports)]
        url = f"http://127.0.0.1:{port}/v1/alerts/alertmanager"
        while not queue.empty():
            body = queue.get_nowait()
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - start)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    try:
        start = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(connections)))
        wall = time.perf_counter() - start
    finally:
        for session in sessions:
            await session.close()
    return wall, latencies, statuses


def replica(
    location: PostgresLocation, password_file: Path, name: str, work: Path
) -> tuple[subprocess.Popen[bytes], int]:
    data = work / name
    data.mkdir(mode=0o700)
    env = clean_env(
        RESPONDER_DATA_DIR=str(data),
        RESPONDER_WEBHOOK_HMAC_SECRET=SECRET,
        RESPONDER_STORE_URL=location.url,
        RESPONDER_STORE_PASSWORD_FILE=str(password_file),
        RESPONDER_STORE_CONTROLLER=name,
    )
    port = free_port()
    argv = [sys.executable, "-m", "responder", "serve", "--port", str(port), "--workers", "0"]
    argv += ["--playbooks-dir", str(FIXTURES / "webhook"), "--runbooks-dir", str(FIXTURES / "runbooks")]
    with open(work / f"{name}.log", "ab") as handle:
        proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    wait_healthy(port, proc)
    return proc, port


def measure(
    server: PostgresServer, replicas: int, sends: list[bytes], unique: int, connections: int, work: Path
) -> dict[str, object]:
    work.mkdir(parents=True, exist_ok=True)
    location = server.fresh_database()
    password_file = work / f"password-{replicas}"
    password_file.write_text(f"{location.password}\n")
    password_file.chmod(0o600)
    procs = [replica(location, password_file, f"ctl-{replicas}-{n}", work) for n in range(replicas)]
    ports = [port for _, port in procs]
    warmup = [
        b.replace(b'"WhBurst"', b'"Warmup"').replace(b'"fingerprint": "', b'"fingerprint": "w')
        for b in sends[:500]
    ]
    asyncio.run(balanced_burst(ports, warmup, connections))
    wall, lat, status = asyncio.run(balanced_burst(ports, sends, connections))
    for proc, _ in procs:
        stop(proc)  # writes the repeats still counted in memory
    conn = db.connect(location)
    try:
        queued = conn.execute(
            "SELECT COUNT(*) FROM alerts WHERE state='queued' AND name='WhBurst'"
        ).fetchone()[0]
        repeats = conn.execute(
            "SELECT COALESCE(SUM(repeats), 0) FROM alerts WHERE name='WhBurst'"
        ).fetchone()[0]
    finally:
        conn.close()
    total = len(sends)
    return {
        "replicas": replicas,
        "accepted_per_s": round(total / wall, 1),
        "latency_ms": {k: round(v * 1000, 2) for k, v in summary(lat).items() if k != "n"},
        "p99_ms": round(sorted(lat)[int(0.99 * (len(lat) - 1))] * 1000, 2),
        "statuses": status,
        "queued_after_burst": int(queued),
        "duplicates_counted": int(repeats),
        "dedup_exact": queued == unique and status.get(202, 0) == unique and repeats == total - unique,
    }


def bare_rate(sends: list[bytes], connections: int) -> tuple[float, list[float]]:
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_receiver", str(port), SECRET], cwd=REPO, env=clean_env()
    )
    try:
        wait_healthy(port, bare)
        asyncio.run(balanced_burst([port], sends[:500], connections))
        wall, latencies, _ = asyncio.run(balanced_burst([port], sends, connections))
    finally:
        stop(bare)
    return len(sends) / wall, latencies


def main(total: int = 10_000, unique: int = 1_000, connections: int = 32, rounds: int = 3) -> None:
    """`rounds` rounds of bare, one replica, two replicas, back to back: each ratio is against
    the bare receiver of its own round (this machine's speed drifts by 2x between minutes), and
    the medians are reported."""
    sends = payloads(total, unique)
    work = Path(tempfile.mkdtemp(prefix="responder-b4pg-"))
    server = start_postgres()
    per_round = []
    try:
        for number in range(rounds):
            rate, bare_lat = bare_rate(sends, connections)
            bare_p99 = round(sorted(bare_lat)[int(0.99 * (len(bare_lat) - 1))] * 1000, 2)
            one = measure(server, 1, sends, unique, connections, work / f"r{number}")
            two = measure(server, 2, sends, unique, connections, work / f"r{number}")
            for side in (one, two):
                side["ratio"] = round(float(side["accepted_per_s"]) / rate, 3)  # type: ignore[arg-type]
            per_round.append(
                {
                    "bare_accepted_per_s": round(rate, 1),
                    "bare_p99_ms": bare_p99,
                    "one_replica": one,
                    "two_replicas": two,
                }
            )
    finally:
        server.stop()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    report(
        "b4_postgres",
        {
            "notifications": total,
            "unique": unique,
            "connections": connections,
            "median": {
                side: {
                    "ratio": median([float(r[side]["ratio"]) for r in per_round]),  # type: ignore[index]
                    "p99_ms": median([float(r[side]["p99_ms"]) for r in per_round]),  # type: ignore[index]
                    "dedup_exact": all(r[side]["dedup_exact"] for r in per_round),  # type: ignore[index]
                }
                for side in ("one_replica", "two_replicas")
            },
            "rounds": per_round,
        },
    )


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
