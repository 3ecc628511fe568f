"""Bare webhook receivers on three frameworks, doing the same minimum: HMAC-SHA256 over the raw
body (constant-time compare), JSON parse, append to a list, answer 202. What B4's framework
comparison runs: `python -m bench.receivers FRAMEWORK PORT SECRET`."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys

received: list[object] = []


def _valid(secret: bytes, body: bytes, header: str) -> bool:
    given = header.partition("=")[2].encode()
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def run_stdlib(port: int, secret: bytes) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the other two

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._answer(200, b'{"status": "ok"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not _valid(secret, body, self.headers.get("X-Hub-Signature-256", "")):
                self._answer(401, b'{"error": "signature"}')
                return
            received.append(json.loads(body))
            self._answer(202, b'{"result": "queued"}')

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def run_starlette(port: int, secret: bytes) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def alerts(request: Request) -> JSONResponse:
        body = await request.body()
        if not _valid(secret, body, request.headers.get("X-Hub-Signature-256", "")):
            return JSONResponse({"error": "signature"}, status_code=401)
        received.append(json.loads(body))
        return JSONResponse({"result": "queued"}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/v1/alerts/alertmanager", alerts, methods=["POST"]), Route("/healthz", healthz)]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    framework, port_text, secret_text = sys.argv[1:4]
    if framework == "aiohttp":
        sys.argv = [sys.argv[0], port_text, secret_text]
        from bench.bare_receiver import main

        main()
    elif framework == "stdlib":
        run_stdlib(int(port_text), secret_text.encode())
    elif framework == "starlette":
        run_starlette(int(port_text), secret_text.encode())
    else:
        raise SystemExit(f"unknown framework {framework}")
