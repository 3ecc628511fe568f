"""Who may talk to the webhook and the API, and what each caller may do.

Callers are clients, each with its own credentials and roles: `alerts` (post alerts),
`approver` (approve, deny, release) and `reader` (incidents, timelines, exports). A client's
name is the actor the timeline records for what it decides; nothing in a request body can
change it. The older single shared token or HMAC secret (RESPONDER_WEBHOOK_TOKEN[_FILE],
RESPONDER_WEBHOOK_HMAC_SECRET[_FILE], `[server] token_file`) is the client `webhook`, with
`alerts` and `reader` only: the credential Alertmanager holds never approves a stop.

Credentials: bearer tokens, and HMAC-SHA256 over the raw body.

Two HMAC forms: GitHub's `X-Hub-Signature-256: sha256=<hex>` over the body, and a timestamped
one (`X-Responder-Timestamp: <unix seconds>`, `X-Responder-Signature: v1=<hex>` over
`<timestamp>.<body>`) that a replay outside a 5-minute window cannot pass. Every comparison is
`hmac.compare_digest` over SHA-256 digests (equal lengths, no early exit), against every
configured secret, so neither a wrong token nor a prefix of the right one answers faster.
Secrets come from files or the environment, never from the command line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from responder.errors import ConfigError

TOLERANCE = 300  # seconds a timestamped signature stays valid
HUB_HEADER = "X-Hub-Signature-256"
SIGNATURE_HEADER = "X-Responder-Signature"
TIMESTAMP_HEADER = "X-Responder-Timestamp"
MIN_SECRET = 16


ROLES = ("alerts", "approver", "reader")
LEGACY_CLIENT = "webhook"
LEGACY_ROLES = frozenset({"alerts", "reader"})
# Without any credential (a loopback-only server) callers may post alerts and read; never decide.
ANONYMOUS_ROLES = frozenset({"alerts", "reader"})
CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class Client:
    """One caller: its name (the actor on the timeline), roles and credentials (never printed)."""

    name: str
    roles: frozenset[str]
    tokens: tuple[bytes, ...] = field(default=(), repr=False)
    hmac_secrets: tuple[bytes, ...] = field(default=(), repr=False)

    def may(self, role: str) -> bool:
        """Whether this client holds `role`."""
        return role in self.roles


ANONYMOUS = Client("anonymous", ANONYMOUS_ROLES)


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and if not, the status and reason to answer; when it may,
    the client it came from."""

    ok: bool
    status: int = 200
    reason: str = ""
    client: Client | None = None


OK = Verdict(True)


@dataclass(frozen=True)
class Auth:
    """The server's clients. `tokens`/`hmac_secrets` are the shared legacy credentials."""

    tokens: tuple[bytes, ...] = ()
    hmac_secrets: tuple[bytes, ...] = ()
    tolerance: int = TOLERANCE
    secrets_for_redaction: tuple[str, ...] = field(default=(), repr=False)
    clients: tuple[Client, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Auth(tokens={len(self.tokens)}, hmac_secrets={len(self.hmac_secrets)}, "
            f"clients={[c.name for c in self.clients]})"
        )

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured."""
        return bool(self.tokens or self.hmac_secrets or self.clients)

    @cached_property
    def all_clients(self) -> tuple[Client, ...]:
        """Every client, the legacy shared credentials as `webhook` first."""
        legacy = (
            (Client(LEGACY_CLIENT, LEGACY_ROLES, self.tokens, self.hmac_secrets),)
            if self.tokens or self.hmac_secrets
            else ()
        )
        return legacy + self.clients

    @cached_property
    def _token_candidates(self) -> list[tuple[Client, tuple[bytes, ...]]]:
        return [(c, c.tokens) for c in self.all_clients if c.tokens]

    def _with_tokens(self) -> bool:
        return bool(self._token_candidates)

    def _with_hmac(self) -> bool:
        return any(c.hmac_secrets for c in self.all_clients)

    def before_body(self, headers: Mapping[str, str]) -> Verdict | None:
        """Decide from the headers alone when possible (bearer, or nothing presented), so an
        unauthenticated body is never read. None: an HMAC header is present, read the body."""
        if not self.enabled:
            return Verdict(True, client=ANONYMOUS)
        authorization = headers.get("Authorization")
        if authorization is not None and self._with_tokens():
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return Verdict(False, 401, "Authorization must be 'Bearer <token>'")
            client = _match(token.strip().encode(), self._token_candidates)
            return Verdict(True, client=client) if client else Verdict(False, 401, "invalid token")
        if self._with_hmac() and (HUB_HEADER in headers or SIGNATURE_HEADER in headers):
            return None
        if self._with_tokens():
            return Verdict(False, 401, "missing bearer token")
        return Verdict(False, 400, f"missing {HUB_HEADER} or {SIGNATURE_HEADER} header")

    def with_body(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Verdict:
        """The HMAC check, over exactly the bytes received (never a re-serialised body)."""
        hub = headers.get(HUB_HEADER)
        if hub is not None:
            algorithm, _, given = hub.partition("=")
            if algorithm != "sha256" or not given:
                return Verdict(False, 401, f"{HUB_HEADER} must be 'sha256=<hex>'")
            return self._signed(body, given)
        signature = headers.get(SIGNATURE_HEADER, "")
        stamp = headers.get(TIMESTAMP_HEADER)
        if stamp is None or not stamp.isdigit() or len(stamp) > 12:
            return Verdict(False, 401, f"{SIGNATURE_HEADER} needs {TIMESTAMP_HEADER} (unix seconds)")
        version, _, given = signature.partition("=")
        if version != "v1" or not given:
            return Verdict(False, 401, f"{SIGNATURE_HEADER} must be 'v1=<hex>'")
        verdict = self._signed(stamp.encode() + b"." + body, given)
        if not verdict.ok:
            return verdict
        skew = abs((time.time() if now is None else now) - int(stamp))
        if skew > self.tolerance:
            return Verdict(False, 401, f"stale signature: timestamp is {int(skew)} s away from now")
        return verdict

    def _signed(self, message: bytes, given_hex: str) -> Verdict:
        given = given_hex.strip().lower().encode()
        expected = [
            (c, tuple(hmac.new(s, message, hashlib.sha256).hexdigest().encode() for s in c.hmac_secrets))
            for c in self.all_clients
        ]
        client = _match(given, expected)
        return (
            Verdict(True, client=client)
            if client
            else Verdict(False, 401, "signature does not match the body")
        )


def _match(given: bytes, candidates: list[tuple[Client, tuple[bytes, ...]]]) -> Client | None:
    """The client whose credential `given` is. Constant time in the secrets: digests make the
    lengths equal, and every candidate of every client is compared (no early exit)."""
    digest = hashlib.sha256(given).digest()
    found: Client | None = None
    for client, values in candidates:
        for candidate in values:
            if hmac.compare_digest(digest, hashlib.sha256(candidate).digest()) and found is None:
                found = client
    return found


def sign_hub(secret: bytes, body: bytes) -> str:
    """`sha256=<hex>`, GitHub's form of an HMAC over the body (for senders and tests)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_timestamped(secret: bytes, body: bytes, timestamp: int) -> dict[str, str]:
    """The timestamped signature header value over `<timestamp>.<body>`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"v1={mac}"}


def _read_secret(path: str, what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    return text


def load_auth(
    environ: Mapping[str, str],
    token_file: str | None = None,
    hmac_secret_file: str | None = None,
    clients: Sequence[Mapping[str, Any]] = (),
) -> Auth:
    """The shared tokens and HMAC secrets from RESPONDER_WEBHOOK_TOKEN[_FILE] /
    RESPONDER_WEBHOOK_HMAC_SECRET[_FILE] or the config's files, and the `[[server.clients]]`
    (each with its name, roles and its own token_file / hmac_secret_file). A file may hold
    several secrets (one per line) so they can be rotated."""
    found: dict[str, list[str]] = {"token": [], "HMAC secret": []}
    for what, env_name, file_name in (
        ("token", "RESPONDER_WEBHOOK_TOKEN", token_file),
        ("HMAC secret", "RESPONDER_WEBHOOK_HMAC_SECRET", hmac_secret_file),
    ):
        if environ.get(env_name):
            found[what].append(environ[env_name].strip())
        for path in (environ.get(env_name + "_FILE"), file_name):
            if path:
                found[what].extend(
                    line.strip() for line in _read_secret(path, what).splitlines() if line.strip()
                )
        for value in found[what]:
            if len(value) < MIN_SECRET:
                raise ConfigError(
                    f"a webhook {what} must be at least {MIN_SECRET} characters (got {len(value)})"
                )
    loaded = [_load_client(entry) for entry in clients]
    names = [c.name for c in loaded]
    if len(set(names)) != len(names) or (LEGACY_CLIENT in names and (found["token"] or found["HMAC secret"])):
        raise ConfigError(
            f"[[server.clients]] names must be distinct (and {LEGACY_CLIENT!r} is the shared token's)"
        )
    every = [*found["token"], *found["HMAC secret"]]
    every += [s.decode() for c in loaded for s in (*c.tokens, *c.hmac_secrets)]
    if len(set(every)) != len(every):
        raise ConfigError("two clients share a secret: every client needs its own token or HMAC secret")
    return Auth(
        tokens=tuple(v.encode() for v in found["token"]),
        hmac_secrets=tuple(v.encode() for v in found["HMAC secret"]),
        secrets_for_redaction=tuple(every),
        clients=tuple(loaded),
    )


def _load_client(entry: Mapping[str, Any]) -> Client:
    name = entry.get("name")
    if not isinstance(name, str) or not CLIENT_NAME.match(name):
        raise ConfigError(
            f"[[server.clients]] name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', e.g. \"alertmanager\""
        )
    roles = entry.get("roles")
    if not isinstance(roles, list) or not roles or not set(roles) <= set(ROLES):
        raise ConfigError(
            f"[[server.clients]] {name}: roles must be a non-empty list of {', '.join(ROLES)}, got {roles!r}"
        )
    secrets: dict[str, list[bytes]] = {"token": [], "HMAC secret": []}
    for what, key in (("token", "token_file"), ("HMAC secret", "hmac_secret_file")):
        path = entry.get(key)
        if path is None:
            continue
        if not isinstance(path, str):
            raise ConfigError(f"[[server.clients]] {name}: {key} must be a path, got {path!r}")
        for line in _read_secret(path, f"{name} {what}").splitlines():
            if line.strip():
                if len(line.strip()) < MIN_SECRET:
                    raise ConfigError(f"client {name}: a {what} must be at least {MIN_SECRET} characters")
                secrets[what].append(line.strip().encode())
    if not secrets["token"] and not secrets["HMAC secret"]:
        raise ConfigError(
            f"[[server.clients]] {name}: needs token_file or hmac_secret_file (and it is empty)"
        )
    unknown = set(entry) - {"name", "roles", "token_file", "hmac_secret_file"}
    if unknown:
        raise ConfigError(f"[[server.clients]] {name}: unknown key(s) {', '.join(sorted(unknown))}")
    return Client(name, frozenset(roles), tuple(secrets["token"]), tuple(secrets["HMAC secret"]))


# The server's own secrets: worker processes never see them (the bot token they need stays).
SECRET_ENV = (
    "RESPONDER_WEBHOOK_TOKEN",
    "RESPONDER_WEBHOOK_HMAC_SECRET",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
)


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker process gets: everything but the webhook's own secrets."""
    return {k: v for k, v in environ.items() if not any(k.startswith(name) for name in SECRET_ENV)}


def is_loopback(host: str) -> bool:
    """Whether a listen address is on this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
