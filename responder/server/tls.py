"""HTTPS for `responder serve` without a proxy: a certificate and key from files.

The key file is read once at start (it must be readable only by the server's user, like the
token files) and never logged. TLS 1.2 is the floor; Python's server defaults pick the ciphers.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from responder.errors import ConfigError


def server_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The TLS context for a certificate chain and its key; None when neither is given."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError(
            "TLS needs both a certificate and its key: --tls-cert FILE --tls-key FILE "
            "(or [server] tls_cert and tls_key)"
        )
    for what, path in (("certificate", cert), ("key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"TLS {what} {path}: no such file")
    mode = os.stat(key).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"TLS key {key} is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS certificate {cert} and key {key} could not be loaded: {exc}") from exc
    return context
