"""Where the timeline lives: an SQLite file in the data directory (the default, right for one
controller), or a PostgreSQL database that several controllers (`responder serve` replicas, and
the CLI next to them) share.

    [store]
    url = "postgresql://responder@db.internal:5432/responder"
    password_file = "/etc/responder/db-password"   # or RESPONDER_STORE_PASSWORD(_FILE)
    controller = "ctl-1"                            # this controller's name; default: the host name
    lease = 30                                      # seconds a dead replica's alerts wait

RESPONDER_STORE_URL, RESPONDER_STORE_CONTROLLER and RESPONDER_STORE_LEASE override the file.

The password never travels on a command line or in the URL (a URL with one is refused): it comes
from a file or the environment, and is kept out of `repr`, logs and the timeline."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from responder.errors import ConfigError

STORE_KEYS = {"url", "password_file", "controller", "lease"}
PASSWORD_ENV = "RESPONDER_STORE_PASSWORD"  # noqa: S105 - the variable name, not a password
PASSWORD_FILE_ENV = "RESPONDER_STORE_PASSWORD_FILE"  # noqa: S105 - the variable name
URL_ENV = "RESPONDER_STORE_URL"
CONTROLLER_ENV = "RESPONDER_STORE_CONTROLLER"
LEASE_ENV = "RESPONDER_STORE_LEASE"
DEFAULT_LEASE = 30.0
_CONTROLLER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class PostgresLocation:
    """A PostgreSQL database, with the password read from its file or the environment."""

    url: str  # postgresql://user@host:port/db, never with a password
    password: str | None = field(default=None, repr=False)
    controller: str = "controller"
    lease: float = DEFAULT_LEASE

    def __str__(self) -> str:
        return self.url


DatabaseLocation = Path | PostgresLocation


def store_location(
    store: Mapping[str, Any], data_dir: Path, environ: Mapping[str, str], source: str = "config"
) -> DatabaseLocation:
    """The configured store: [store] url (or RESPONDER_STORE_URL), else data_dir/timeline.db."""
    unknown = set(store) - STORE_KEYS
    if unknown:
        raise ConfigError(f"{source}: [store] takes only {sorted(STORE_KEYS)}, not {sorted(unknown)}")
    url = environ.get(URL_ENV) or store.get("url")
    if not url:
        return data_dir / "timeline.db"
    if not isinstance(url, str):
        raise ConfigError(f"{source}: [store] url must be a string like postgresql://user@host:5432/db")
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(
            f"{source}: [store] url must look like postgresql://user@host:5432/database, got {_redact(url)!r}"
        )
    if parts.password is not None:
        raise ConfigError(
            f"{source}: [store] url carries a password; put it in [store] password_file or "
            f"{PASSWORD_ENV} instead (a URL ends up on command lines and in logs)"
        )
    controller = environ.get(CONTROLLER_ENV) or store.get("controller") or socket.gethostname().split(".")[0]
    if not isinstance(controller, str) or not _CONTROLLER.match(controller):
        raise ConfigError(
            f"{source}: [store] controller must be a short name ([A-Za-z0-9_.-]), got {controller!r}"
        )
    lease: Any = store.get("lease", DEFAULT_LEASE)
    if environ.get(LEASE_ENV):
        try:
            lease = float(environ[LEASE_ENV])
        except ValueError:
            lease = environ[LEASE_ENV]
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 5 <= lease <= 3600:
        raise ConfigError(f"{source}: [store] lease must be seconds from 5 to 3600, got {lease!r}")
    return PostgresLocation(url, _password(store, environ, source), controller, float(lease))


def _password(store: Mapping[str, Any], environ: Mapping[str, str], source: str) -> str | None:
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    path = environ.get(PASSWORD_FILE_ENV) or store.get("password_file")
    if not path:
        return None  # trust, peer, or a ~/.pgpass libpq finds by itself
    try:
        text = Path(str(path)).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: [store] password_file {path}: {exc.strerror or exc}") from exc
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{source}: [store] password_file {path} is empty")
    return password


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def describe(location: DatabaseLocation) -> str:
    """For messages: the SQLite path, or the database URL (never a password)."""
    return str(location) if isinstance(location, Path) else f"PostgreSQL {location.url}"


def controller_name(location: DatabaseLocation) -> str:
    """This controller's name on the records it writes (evidence files stay where collected)."""
    if isinstance(location, PostgresLocation):
        return location.controller
    return socket.gethostname().split(".")[0] or "controller"


def is_postgres(location: DatabaseLocation) -> bool:
    """Whether the store is a (shared) PostgreSQL database."""
    return isinstance(location, PostgresLocation)


__all__ = [
    "DatabaseLocation",
    "PostgresLocation",
    "controller_name",
    "describe",
    "is_postgres",
    "store_location",
]
