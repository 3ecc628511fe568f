"""B4: 10,000 Alertmanager notifications (1,000 unique fingerprints, each sent 10 times, shuffled)
over 32 keep-alive connections, HMAC-signed, against `responder serve` and, in the same run, against
a bare aiohttp receiver (HMAC + JSON parse + in-memory list: bench/bare_receiver.py).

Reports accepted notifications per second for both and their ratio (goal >= 0.5), p50/p99
acknowledgement latency (goal p99 <= 50 ms), and checks dedup: exactly 1,000 alerts queued. Then
the server is restarted with workers and every queued alert must open exactly one incident (runs
started == unique alerts). The burst runs with `--workers 0` so the intake is measured on its own
(workers are separate processes; on 2 cores they would otherwise share the CPU with the intake).

`python -m bench.b4_webhook [NOTIFICATIONS] [UNIQUE] [CONNECTIONS] [--no-runs]`
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import REPO, clean_env, report, summary
from tests.unit.test_alert_intake import AM
from tests.webhook_client import free_port

SECRET = "bench-hmac-secret-0123456789"
FIXTURES = REPO / "tests" / "fixtures"


def payloads(total: int, unique: int) -> list[bytes]:
    bodies = []
    for n in range(unique):
        payload = copy.deepcopy(AM)
        payload["alerts"][0]["labels"] = {
            "alertname": "WhBurst",
            "value": f"b{n}",
            "severity": "warning",
            "instance": f"node{n % 7}:9100",
            "job": "cadvisor",
        }
        payload["alerts"][0]["fingerprint"] = f"{n:016x}"
        payload["alerts"][0]["annotations"] = {"summary": f"suspicious process in b{n}", "runbook": "x" * 900}
        bodies.append(json.dumps(payload).encode())
    sends = [bodies[i % unique] for i in range(total)]
    random.Random(20261129).shuffle(sends)
    return sends


async def burst(port: int, sends: list[bytes], connections: int) -> tuple[float, list[float], dict[int, int]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in sends:
        queue.put_nowait(body)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    url = f"http://127.0.0.1:{port}/v1/alerts/alertmanager"
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - start)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(connections)))
        wall = time.perf_counter() - start
    return wall, latencies, statuses


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def serve(data_dir: Path, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = clean_env(RESPONDER_DATA_DIR=str(data_dir), RESPONDER_WEBHOOK_HMAC_SECRET=SECRET)
    argv = [sys.executable, "-m", "responder", "serve", "--port", str(port), "--workers", str(workers)]
    argv += ["--playbooks-dir", str(FIXTURES / "webhook"), "--runbooks-dir", str(FIXTURES / "runbooks")]
    with open(log, "ab") as handle:
        proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    wait_healthy(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=120)


def main(total: int = 10_000, unique: int = 1_000, connections: int = 32, runs: bool = True) -> None:
    sends = payloads(total, unique)
    work = Path(tempfile.mkdtemp(prefix="responder-b4-"))
    data_dir = work / "data"
    data_dir.mkdir(mode=0o700)
    warm = sends[: min(500, total)]

    # Same run, both sides: the bare receiver first, then responder; each warmed up first.
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_receiver", str(port), SECRET], cwd=REPO, env=clean_env()
    )
    wait_healthy(port, bare)
    asyncio.run(burst(port, warm, connections))
    bare_wall, bare_lat, bare_status = asyncio.run(burst(port, sends, connections))
    stop(bare)

    port = free_port()
    server = serve(data_dir, port, 0, work / "server.log")
    # warm-up alerts of their own (other fingerprints, a name no playbook takes)
    warmup = [
        b.replace(b'"WhBurst"', b'"Warmup"').replace(b'"fingerprint": "', b'"fingerprint": "w') for b in warm
    ]
    asyncio.run(burst(port, warmup, connections))
    wall, lat, status = asyncio.run(burst(port, sends, connections))
    stop(server)
    db = sqlite3.connect(data_dir / "timeline.db")
    queued = db.execute("SELECT COUNT(*) FROM alerts WHERE state='queued'").fetchone()[0]
    repeats = db.execute("SELECT COALESCE(SUM(repeats), 0) FROM alerts WHERE name='WhBurst'").fetchone()[0]

    result: dict[str, object] = {
        "notifications": total,
        "unique": unique,
        "connections": connections,
        "bare_accepted_per_s": round(total / bare_wall, 1),
        "bare_latency_ms": {k: round(v * 1000, 2) for k, v in summary(bare_lat).items() if k != "n"},
        "bare_statuses": bare_status,
        "responder_accepted_per_s": round(total / wall, 1),
        "responder_latency_ms": {k: round(v * 1000, 2) for k, v in summary(lat).items() if k != "n"},
        "responder_p99_ms": round(sorted(lat)[int(0.99 * (len(lat) - 1))] * 1000, 2),
        "responder_statuses": status,
        "ratio": round((total / wall) / (total / bare_wall), 3),
        "queued_after_burst": queued,
        "duplicates_counted": repeats,
        "dedup_exact": queued == unique and status.get(202, 0) == unique and repeats == total - unique,
    }
    if runs:
        started = time.perf_counter()
        port = free_port()
        server = serve(data_dir, port, 2, work / "server.log")
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            pending = db.execute(
                "SELECT COUNT(*) FROM alerts WHERE state IN ('queued', 'claimed') AND name='WhBurst'"
            ).fetchone()[0]
            running = db.execute("SELECT COUNT(*) FROM incidents WHERE status='running'").fetchone()[0]
            print(
                f"\r  runs: {unique - pending}/{unique} started, {running} running   ",
                end="",
                file=sys.stderr,
            )
            if pending == 0 and running == 0:
                break
            time.sleep(2)
        print(file=sys.stderr)
        stop(server)
        result["runs_started"] = db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        result["runs_distinct_alerts"] = db.execute(
            "SELECT COUNT(DISTINCT alert_id) FROM incidents"
        ).fetchone()[0]
        result["runs_by_status"] = dict(
            db.execute("SELECT status, COUNT(*) FROM incidents GROUP BY status").fetchall()
        )
        result["runs_wall_s"] = round(time.perf_counter() - started, 1)
        result["runs_equal_unique"] = result["runs_started"] == unique == result["runs_distinct_alerts"]
    report("b4_webhook", result)


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    numbers = [int(a) for a in sys.argv[1:] if not a.startswith("--")]
    main(*numbers, runs="--no-runs" not in flags)  # type: ignore[arg-type]
