"""Who may talk to the webhook: bearer tokens, and HMAC-SHA256 over the raw body.

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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from responder.errors import ConfigError

TOLERANCE = 300  # seconds a timestamped signature stays valid
HUB_HEADER = "X-Hub-Signature-256"
SIGNATURE_HEADER = "X-Responder-Signature"
TIMESTAMP_HEADER = "X-Responder-Timestamp"
MIN_SECRET = 16


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and if not, the status and reason to answer."""

    ok: bool
    status: int = 200
    reason: str = ""


OK = Verdict(True)


@dataclass(frozen=True)
class Auth:
    """The webhook's credentials: bearer tokens and HMAC secrets (never printed)."""

    tokens: tuple[bytes, ...] = ()
    hmac_secrets: tuple[bytes, ...] = ()
    tolerance: int = TOLERANCE
    secrets_for_redaction: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"Auth(tokens={len(self.tokens)}, hmac_secrets={len(self.hmac_secrets)})"

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured."""
        return bool(self.tokens or self.hmac_secrets)

    def before_body(self, headers: Mapping[str, str]) -> Verdict | None:
        """Decide from the headers alone when possible (bearer, or nothing presented), so an
        unauthenticated body is never read. None: an HMAC header is present, read the body."""
        if not self.enabled:
            return OK
        authorization = headers.get("Authorization")
        if authorization is not None and self.tokens:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return Verdict(False, 401, "Authorization must be 'Bearer <token>'")
            return (
                OK
                if _any_equal(token.strip().encode(), self.tokens)
                else Verdict(False, 401, "invalid token")
            )
        if self.hmac_secrets and (HUB_HEADER in headers or SIGNATURE_HEADER in headers):
            return None
        if self.tokens:
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
        return OK

    def _signed(self, message: bytes, given_hex: str) -> Verdict:
        given = given_hex.strip().lower().encode()
        expected = tuple(hmac.new(s, message, hashlib.sha256).hexdigest().encode() for s in self.hmac_secrets)
        return OK if _any_equal(given, expected) else Verdict(False, 401, "signature does not match the body")


def _any_equal(given: bytes, candidates: tuple[bytes, ...]) -> bool:
    """Constant time in the secret: digests make the lengths equal; every candidate is compared."""
    digest = hashlib.sha256(given).digest()
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(digest, hashlib.sha256(candidate).digest())
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
    environ: Mapping[str, str], token_file: str | None = None, hmac_secret_file: str | None = None
) -> Auth:
    """Tokens and HMAC secrets from RESPONDER_WEBHOOK_TOKEN[_FILE] / RESPONDER_WEBHOOK_HMAC_SECRET[_FILE]
    or the config's files. A file may hold several (one per line) so secrets can be rotated."""
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
    return Auth(
        tokens=tuple(v.encode() for v in found["token"]),
        hmac_secrets=tuple(v.encode() for v in found["HMAC secret"]),
        secrets_for_redaction=tuple(found["token"] + found["HMAC secret"]),
    )


SECRET_ENV = ("RESPONDER_WEBHOOK_TOKEN", "RESPONDER_WEBHOOK_HMAC_SECRET")


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
