"""A param's value, made to its declared type: used when a playbook is loaded (its defaults) and
when it is run (values from the CLI, an alert or the API), so both agree."""

from __future__ import annotations

import json
import re
from typing import Any

from responder import targets
from responder.errors import UsageError
from responder.playbook.model import ParamSpec, ParamType

MAX_STRING = 4096
MAX_LIST = 256


class ParamValueError(UsageError, ValueError):
    """A value that does not fit its param (type, pattern, size, text that is not text)."""


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
    elif spec.type is ParamType.TARGETS:
        items = _as_list(
            raw, "a container reference, or a list of references and selectors (a,b,c or a JSON list)"
        )
        try:
            value = targets.normalise(_clean(i) for i in items)
        except targets.TargetSyntaxError as exc:
            raise ParamValueError(str(exc)) from exc
    else:
        raw = _as_list(raw, "a list of strings (a,b,c or a JSON list)")
        if len(raw) > MAX_LIST:
            raise ParamValueError(f"list longer than {MAX_LIST} items")
        value = [_clean(i) for i in raw]
    if spec.pattern:
        for item in value if isinstance(value, list) else [value]:
            if not re.fullmatch(spec.pattern, str(item)):
                raise ParamValueError(f"{item!r} does not match the pattern {spec.pattern}")
    return value


def _as_list(raw: Any, what: str) -> list[str]:
    """A CLI string (a,b,c or a JSON list) or a JSON/YAML value as a list of strings."""
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
        raise ParamValueError(f"expected {what}")
    return raw


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
