"""Turning `-p key=value` strings (and later alert fields) into typed, validated param values.

Values stay data: nothing here renders them, and secret params never leave the SecretValues box
except through the secrets file the runner hands to Ansible."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from responder.errors import UsageError
from responder.playbook.model import ParamSpec, ParamType, Playbook

MAX_STRING = 4096
MAX_LIST = 256


class ParamValueError(UsageError, ValueError):
    pass


def coerce(spec: ParamSpec, raw: Any) -> Any:
    """One value to the param's type, from a CLI string or a YAML/JSON value."""
    if spec.type is ParamType.STRING:
        if not isinstance(raw, str):
            raise ParamValueError(f"expected a string, got {type(raw).__name__}")
        value: Any = _clean(raw)
    elif spec.type is ParamType.INT:
        if isinstance(raw, bool):
            raise ParamValueError("expected an integer, got a boolean")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and re.fullmatch(r"[-+]?[0-9]{1,18}", raw.strip()):
            value = int(raw)
        else:
            raise ParamValueError(f"expected an integer, got {raw!r}")
    elif spec.type is ParamType.BOOL:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        else:
            raise ParamValueError(f"expected true or false, got {raw!r}")
    else:
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith("["):
                try:
                    raw = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ParamValueError(f"not a JSON list: {exc.msg}") from exc
            else:
                raw = [item.strip() for item in text.split(",") if item.strip()]
        if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
            raise ParamValueError("expected a list of strings (a,b,c or a JSON list)")
        if len(raw) > MAX_LIST:
            raise ParamValueError(f"list longer than {MAX_LIST} items")
        value = [_clean(i) for i in raw]
    if spec.pattern:
        for item in value if isinstance(value, list) else [value]:
            if not re.fullmatch(spec.pattern, str(item)):
                raise ParamValueError(f"{item!r} does not match the pattern {spec.pattern}")
    return value


def _clean(text: str) -> str:
    if len(text) > MAX_STRING:
        raise ParamValueError(f"string longer than {MAX_STRING} characters")
    # A lone surrogate passes json but breaks SQLite and Slack later: refuse it at the door.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParamValueError("string is not valid Unicode text") from exc
    if "\x00" in text:
        raise ParamValueError("string contains a NUL byte")
    return text


@dataclass(frozen=True)
class SecretValues:
    """Secret param values; repr never shows them."""

    values: Mapping[str, str]

    def __repr__(self) -> str:
        return f"SecretValues({sorted(self.values)})"


def secret_env_name(name: str) -> str:
    return f"RESPONDER_SECRET_{name.upper()}"


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings from -p; the first '=' splits."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-p {pair!r}: expected key=value")
        if key in out:
            raise UsageError(f"-p {key}: given twice")
        out[key] = value
    return out


def resolve(
    playbook: Playbook, given: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], SecretValues]:
    """Typed values for every param, defaults applied; every problem reported at once."""
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    values: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for name in given:
        if playbook.param(name) is None:
            known = ", ".join(p.name for p in playbook.params) or "none"
            errors.append(f"unknown param {name!r} for playbook {playbook.name!r} (params: {known})")
    for spec in playbook.params:
        if spec.secret:
            if spec.name in given:
                errors.append(
                    f"param {spec.name!r} is secret: set {secret_env_name(spec.name)} (or "
                    f"{secret_env_name(spec.name)}_FILE) instead of -p, so it stays off command lines"
                )
                continue
            secret = _secret_from_env(spec.name, environ)
            if secret is None:
                if spec.required:
                    errors.append(f"secret param {spec.name!r} is required: set {secret_env_name(spec.name)}")
                continue
            secrets[spec.name] = secret
            continue
        if spec.name in given:
            try:
                values[spec.name] = coerce(spec, given[spec.name])
            except ParamValueError as exc:
                errors.append(f"param {spec.name!r}: {exc}")
        elif spec.default is not None:
            values[spec.name] = spec.default
        elif spec.required:
            hint = f" ({spec.description})" if spec.description else ""
            errors.append(f"param {spec.name!r} is required{hint}: add -p {spec.name}=VALUE")
        else:
            values[spec.name] = None
    if errors:
        raise UsageError("\n".join(errors))
    return values, SecretValues(secrets)


def secret_values(playbook: Playbook, environ: Mapping[str, str] | None = None) -> SecretValues:
    """The playbook's secret params from the environment alone: for a run whose other params were
    resolved and checked already (an alert's, by its route). Secrets never travel in the queue."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    missing: list[str] = []
    for spec in playbook.params:
        if not spec.secret:
            continue
        value = _secret_from_env(spec.name, environ)
        if value is not None:
            found[spec.name] = value
        elif spec.required:
            missing.append(f"secret param {spec.name!r} is required: set {secret_env_name(spec.name)}")
    if missing:
        raise UsageError("\n".join(missing))
    return SecretValues(found)


def _secret_from_env(name: str, environ: Mapping[str, str]) -> str | None:
    env_name = secret_env_name(name)
    if env_name in environ:
        return environ[env_name]
    file_name = environ.get(env_name + "_FILE")
    if file_name:
        with open(file_name, encoding="utf-8") as handle:
            return handle.read().rstrip("\n")
    return None
