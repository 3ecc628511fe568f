"""Where responder keeps its state and finds playbooks and runbooks.

Precedence: command-line flag, then environment variable, then the config file, then defaults.
Shipped playbooks/runbooks come from the wheel (responder/_data) or, in a checkout, the repo root.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from responder.errors import ConfigError
from responder.store_location import DatabaseLocation, PostgresLocation, store_location

_CONFIG_KEYS = {
    "data_dir",
    "playbooks_dirs",
    "runbooks_dirs",
    "host_evidence_root",
    "inventory",
    "slack",
    "server",
    "docker_retry",
    "docker_call_timeout",
    "progress_interval",
    "approvals",
    "store",
}
# Seconds between attempts when dockerd is unreachable on a target (about a minute in all).
DEFAULT_DOCKER_RETRY = (2.0, 4.0, 8.0, 16.0, 30.0)
# Seconds one Docker call on a target may take before the step fails (a daemon that accepts the
# connection and never answers must not hold the step, or a webhook worker, until its step timeout).
DEFAULT_DOCKER_CALL_TIMEOUT = 60.0
# Seconds between "still running" lines when output is not a terminal (a log, a CI job).
DEFAULT_PROGRESS_INTERVAL = 30.0
SERVER_KEYS = {
    "host",
    "port",
    "workers",
    "grace",
    "body_timeout",
    "group_wait",
    "token_file",
    "hmac_secret_file",
    "tls_cert",
    "tls_key",
    "clients",
}
SLACK_KEYS = {
    "mode",
    "channel",
    "token_file",
    "webhook_url_file",
    "base_url",
    "timeout",
    "flush_timeout",
    # interactivity (buttons): the signing secret for the request URL, the app-level token for
    # Socket Mode (files; or SLACK_SIGNING_SECRET[_FILE], SLACK_APP_TOKEN[_FILE])
    "interactive",
    "signing_secret_file",
    "app_token_file",
    "socket_mode",
}


@dataclass(frozen=True)
class Settings:
    """Where responder keeps its state, finds playbooks and runbooks, and how it talks to hosts."""

    data_dir: Path
    playbook_dirs: tuple[Path, ...]
    runbook_dirs: tuple[Path, ...]
    host_evidence_root: str = "/var/lib/responder/evidence"
    inventory: str | None = None
    slack: Mapping[str, Any] = field(default_factory=dict)
    server: Mapping[str, Any] = field(default_factory=dict)
    docker_retry: tuple[float, ...] = DEFAULT_DOCKER_RETRY
    docker_call_timeout: float = DEFAULT_DOCKER_CALL_TIMEOUT
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    approvals: Mapping[str, Any] = field(default_factory=dict)  # who may decide from Slack
    store: PostgresLocation | None = None  # [store] url: a shared PostgreSQL timeline

    def private_dir(self, *parts: str) -> Path:
        """data_dir/parts..., created 0700 and walked without following links (private_dirs)."""
        from responder.private_dirs import ensure_private_dir

        return ensure_private_dir(self.data_dir.joinpath(*parts), self.data_dir)

    @property
    def database(self) -> DatabaseLocation:
        """The timeline's store: the PostgreSQL database configured, else the SQLite file."""
        return self.store or self.data_dir / "timeline.db"

    @property
    def runs_dir(self) -> Path:
        """Per-run Ansible directories (artifacts, generated playbook)."""
        return self.data_dir / "runs"

    @property
    def evidence_dir(self) -> Path:
        """Evidence fetched to the controller, by incident and host."""
        return self.data_dir / "evidence"


def shipped_dir(name: str) -> Path:
    """`playbooks` or `runbooks` as shipped: inside the installed wheel, else the checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_data" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"shipped {name} directory not found next to {package}")


def _default_data_dir(environ: Mapping[str, str]) -> Path:
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "responder"


SYSTEM_CONFIG = Path("/etc/responder/config.toml")


def _config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else RESPONDER_CONFIG, else the user's ~/.config/responder/config.toml, else the
    system's /etc/responder/config.toml (a daemon's, found without flags)."""
    if explicit:
        return Path(explicit)
    if environ.get("RESPONDER_CONFIG"):
        return Path(environ["RESPONDER_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(base) / "responder" / "config.toml", SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_CONFIG_KEYS)}")
    slack = data.get("slack", {})
    if not isinstance(slack, dict) or set(slack) - SLACK_KEYS:
        # no `token` key on purpose: secrets live in token_file / webhook_url_file or the environment
        raise ConfigError(f"{path}: [slack] takes only {sorted(SLACK_KEYS)}")
    server = data.get("server", {})
    if not isinstance(server, dict) or set(server) - SERVER_KEYS:
        # no `token` key either: the webhook's secrets live in files or the environment
        raise ConfigError(f"{path}: [server] takes only {sorted(SERVER_KEYS)}")
    for key, kinds, low, high in (
        ("port", (int,), 1, 65535),
        ("workers", (int,), 0, 64),
        ("grace", (int, float), 0, 3600),
        ("body_timeout", (int, float), 0.1, 300),
        ("group_wait", (int, float), 0, 60),
    ):
        value = server.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high
        ):
            raise ConfigError(f"{path}: [server] {key} must be a number from {low} to {high}, got {value!r}")
    retry = data.get("docker_retry", [])
    if not isinstance(retry, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 600 for v in retry
    ):
        raise ConfigError(
            f"{path}: docker_retry must be a list of seconds (0 to 600), e.g. [2, 4, 8, 16, 30]"
        )
    call = data.get("docker_call_timeout", DEFAULT_DOCKER_CALL_TIMEOUT)
    if isinstance(call, bool) or not isinstance(call, int | float) or not 1 <= call <= 3600:
        raise ConfigError(f"{path}: docker_call_timeout must be seconds from 1 to 3600, got {call!r}")
    interval = data.get("progress_interval", DEFAULT_PROGRESS_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 1 <= interval <= 3600:
        raise ConfigError(f"{path}: progress_interval must be seconds from 1 to 3600, got {interval!r}")
    clients = server.get("clients", [])
    if not isinstance(clients, list) or not all(isinstance(c, dict) for c in clients):
        raise ConfigError(
            f'{path}: [[server.clients]] entries are tables: name = "alertmanager", roles = ["alerts"], '
            'token_file = "/etc/responder/tokens/alertmanager"'
        )
    for key in ("host", "token_file", "hmac_secret_file", "tls_cert", "tls_key"):
        if key in server and not isinstance(server[key], str):
            raise ConfigError(f"{path}: [server] {key} must be a string, got {server[key]!r}")
    return data


def load_settings(
    *,
    data_dir: str | None = None,
    playbooks_dirs: Sequence[str] = (),
    runbooks_dirs: Sequence[str] = (),
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from flags, then environment, then the config file, then defaults."""
    env = os.environ if environ is None else environ
    cfg = _read_config(_config_path(config, env))
    chosen_data = data_dir or env.get("RESPONDER_DATA_DIR") or cfg.get("data_dir")
    store = cfg.get("store", {})
    if not isinstance(store, dict):
        raise ConfigError('[store] must be a table: [store] url = "postgresql://user@host/db"')
    location = store_location(store, Path("."), env, str(_config_path(config, env) or "environment"))
    playbooks = [Path(p) for p in (*playbooks_dirs, *cfg.get("playbooks_dirs", []))]
    runbooks = [Path(p) for p in (*runbooks_dirs, *cfg.get("runbooks_dirs", []))]
    return Settings(
        data_dir=Path(chosen_data).expanduser().resolve() if chosen_data else _default_data_dir(env),
        playbook_dirs=(*[p.resolve() for p in playbooks], shipped_dir("playbooks")),
        runbook_dirs=(*[p.resolve() for p in runbooks], shipped_dir("runbooks")),
        host_evidence_root=cfg.get("host_evidence_root", "/var/lib/responder/evidence"),
        inventory=cfg.get("inventory"),
        slack=dict(cfg.get("slack", {})),
        server=dict(cfg.get("server", {})),
        docker_retry=tuple(float(v) for v in cfg.get("docker_retry", DEFAULT_DOCKER_RETRY)),
        docker_call_timeout=float(cfg.get("docker_call_timeout", DEFAULT_DOCKER_CALL_TIMEOUT)),
        progress_interval=float(cfg.get("progress_interval", DEFAULT_PROGRESS_INTERVAL)),
        approvals=dict(cfg.get("approvals", {})),
        store=location if isinstance(location, PostgresLocation) else None,
    )
