"""Why responder serve is on aiohttp: the same bare receiver (HMAC + JSON parse + list) on aiohttp,
the standard library's ThreadingHTTPServer (HTTP/1.1 keep-alive) and Starlette on uvicorn, under
B4's load (10,000 HMAC-signed Alertmanager notifications over 32 connections), in one run.

Starlette and uvicorn are not responder dependencies: that side runs only when the receivers'
interpreter has them. B4_RECEIVER_PYTHON names that interpreter (default: this one), e.g. a
scratch venv with `pip install aiohttp starlette uvicorn`; all receivers then run on it.
`python -m bench.b4_frameworks [NOTIFICATIONS] [CONNECTIONS]`
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from bench.b4_webhook import SECRET, burst, payloads, wait_healthy
from bench.common import REPO, clean_env, report, summary
from tests.webhook_client import free_port


def main(total: int = 10_000, connections: int = 32) -> None:
    sends = payloads(total, 1000)
    python = os.environ.get("B4_RECEIVER_PYTHON", sys.executable)
    frameworks = ["aiohttp", "stdlib"]
    probe = subprocess.run([python, "-c", "import starlette, uvicorn"], capture_output=True)
    if probe.returncode == 0:
        frameworks.append("starlette")
    results: dict[str, object] = {"notifications": total, "connections": connections, "python": python}
    for framework in frameworks:
        port = free_port()
        proc = subprocess.Popen(
            [python, "-m", "bench.receivers", framework, str(port), SECRET], cwd=REPO, env=clean_env()
        )
        try:
            wait_healthy(port, proc)
            asyncio.run(burst(port, sends[:500], connections))  # warm-up
            wall, latencies, statuses = asyncio.run(burst(port, sends, connections))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        results[framework] = {
            "accepted_per_s": round(total / wall, 1),
            "latency_ms": {k: round(v * 1000, 2) for k, v in summary(latencies).items() if k != "n"},
            "statuses": statuses,
        }
    report("b4_frameworks", results)


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
