"""B4's baseline: the least a webhook receiver on the same framework can do. aiohttp, HMAC-SHA256
over the raw body with a constant-time compare, JSON parse, an in-memory list; no routing, no
dedup, no persistence. `python -m bench.bare_receiver PORT SECRET`"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys

from aiohttp import web


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2].encode()
    received: list[object] = []

    async def alerts(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get("X-Hub-Signature-256", "").partition("=")[2].encode()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest()):
            return web.json_response({"error": "signature"}, status=401)
        received.append(json.loads(body))
        return web.json_response({"result": "queued"}, status=202)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "received": len(received)})

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v1/alerts/alertmanager", alerts)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: None)


if __name__ == "__main__":
    main()
