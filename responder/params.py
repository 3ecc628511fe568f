"""Turning `-p key=value` strings (and later alert fields) into typed, validated param values.

Values stay data: nothing here renders them, and secret params never leave the SecretValues box
except through the secrets file the runner hands to Ansible."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from responder.errors import UsageError
from responder.playbook.model import Playbook
from responder.playbook.param_values import ParamValueError, coerce

__all__ = [
    "ParamValueError",
    "SecretValues",
    "coerce",
    "parse_assignments",
    "resolve",
    "secret_env_name",
    "secret_values",
]


@dataclass(frozen=True)
class SecretValues:
    """Secret param values; repr never shows them."""

    values: Mapping[str, str]

    def __repr__(self) -> str:
        return f"SecretValues({sorted(self.values)})"


def secret_env_name(name: str) -> str:
    """The environment variable a secret param is read from."""
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
