"""A local Slack Web API for tests: chat.postMessage, chat.update, conversations.history and
conversations.replies (with message metadata), chat.postEphemeral, views.open,
usergroups.users.list and apps.connections.open (Socket Mode, with the app-level token), plus an
incoming-webhook endpoint. It records
every call and can answer with 429 + Retry-After, 500, an error such as invalid_auth, or hang,
either from a script (one behaviour per call) or at random rates (the B6 benchmark)."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None
    metadata: dict[str, Any]
    token: str

    @property
    def key(self) -> str | None:
        return (self.metadata.get("event_payload") or {}).get("key")


@dataclass
class SlackState:
    token: str = "xoxb-test-token"
    script: list[str] = field(default_factory=list)  # behaviours for the next write calls, in order
    rate_429: float = 0.0
    rate_500: float = 0.0
    retry_after: int = 1
    hang_seconds: float = 30.0
    seed: int = 7
    messages: list[Posted] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    webhook_posts: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[float, str, str]] = field(default_factory=list)  # (time, method, behaviour)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)  # chat.postEphemeral
    views: list[dict[str, Any]] = field(default_factory=list)  # views.open
    groups: dict[str, list[str]] = field(default_factory=dict)  # user group -> members
    app_token: str = "xapp-test-app-token"
    socket_url: str = ""  # what apps.connections.open hands out
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def behaviour(self) -> str:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            roll = self.random.random()
            if roll < self.rate_429:
                return "429"
            if roll < self.rate_429 + self.rate_500:
                return "500"
            return "ok"

    def next_ts(self) -> str:
        return f"1764380000.{next(self._ts):06d}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(raw or "{}")
        return {k: v[0] for k, v in parse_qs(raw).items()}

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self._api(url.path.rsplit("/", 1)[-1], {k: v[0] for k, v in parse_qs(url.query).items()})

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self._body()
        if url.path.startswith("/hooks/"):
            self._webhook(body)
            return
        self._api(url.path.rsplit("/", 1)[-1], {**{k: v[0] for k, v in parse_qs(url.query).items()}, **body})

    def _webhook(self, body: dict[str, Any]) -> None:
        state = self.server.state
        behaviour = state.behaviour()
        state.calls.append((time.monotonic(), "webhook", behaviour))
        if behaviour == "429":
            self._reply(429, "rate_limited", {"Retry-After": str(state.retry_after)})
        elif behaviour == "500":
            self._reply(500, "server_error")
        elif behaviour == "hang":
            time.sleep(state.hang_seconds)
        elif behaviour in ("ok", "post_then_500"):
            state.webhook_posts.append(body)
            self._reply(200 if behaviour == "ok" else 500, "ok" if behaviour == "ok" else "server_error")
        else:
            self._reply(404 if behaviour == "no_service" else 400, behaviour)

    def _api(self, method: str, args: dict[str, Any]) -> None:
        state = self.server.state
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        writes = method in ("chat.postMessage", "chat.update")
        behaviour = state.behaviour() if writes else "ok"
        state.calls.append((time.monotonic(), method, behaviour))
        if method == "apps.connections.open":
            ok = token == state.app_token and state.socket_url
            self._reply(
                200, {"ok": True, "url": state.socket_url} if ok else {"ok": False, "error": "invalid_auth"}
            )
            return
        if token != state.token:
            self._reply(200, {"ok": False, "error": "invalid_auth"})
            return
        if behaviour == "429":
            self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(state.retry_after)})
            return
        if behaviour == "500":
            self._reply(500, {"ok": False, "error": "internal_error"})
            return
        if behaviour == "hang":
            time.sleep(state.hang_seconds)
            return
        if behaviour not in ("ok", "post_then_500", "post_then_hang"):
            self._reply(200, {"ok": False, "error": behaviour})
            return
        if method == "chat.postMessage":
            posted = Posted(
                str(args.get("channel")),
                state.next_ts(),
                str(args.get("text", "")),
                args.get("blocks") or [],
                args.get("thread_ts"),
                args.get("metadata") or {},
                token,
            )
            with state.lock:
                state.messages.append(posted)
            if behaviour == "post_then_500":
                self._reply(500, {"ok": False, "error": "internal_error"})
            elif behaviour == "post_then_hang":
                time.sleep(state.hang_seconds)
            else:
                self._reply(200, {"ok": True, "channel": "C0INCIDENT", "ts": posted.ts})
        elif method == "chat.update":
            state.updates.append(args)
            self._reply(200, {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")})
        elif method in ("conversations.history", "conversations.replies"):
            thread = args.get("ts")
            found = [
                m
                for m in state.messages
                if (method == "conversations.history" and not m.thread_ts)
                or (method == "conversations.replies" and (m.thread_ts == thread or m.ts == thread))
            ]
            self._reply(
                200,
                {
                    "ok": True,
                    "messages": [
                        {"ts": m.ts, "text": m.text, "thread_ts": m.thread_ts, "metadata": m.metadata}
                        for m in found
                    ],
                },
            )
        elif method == "chat.postEphemeral":
            with state.lock:
                state.ephemerals.append(args)
            self._reply(200, {"ok": True, "message_ts": state.next_ts()})
        elif method == "views.open":
            view = args.get("view")
            with state.lock:
                state.views.append({**args, "view": json.loads(view) if isinstance(view, str) else view})
            self._reply(200, {"ok": True, "view": {"id": "V0TEST"}})
        elif method == "usergroups.users.list":
            users = state.groups.get(str(args.get("usergroup")))
            self._reply(
                200,
                {"ok": True, "users": users}
                if users is not None
                else {"ok": False, "error": "no_such_subteam"},
            )
        else:
            self._reply(200, {"ok": False, "error": "unknown_method"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: SlackState


class SlackServer:
    """`with SlackServer() as slack:` then point base_url at `slack.base_url`."""

    def __init__(self, state: SlackState | None = None) -> None:
        self.state = state or SlackState()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.state = self.state
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/T000/B000/secretpart"

    def __enter__(self) -> SlackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
