"""Alert payloads (Alertmanager webhook v4, Falco / Falcosidekick JSON, generic JSON) turned into
one normalised `Alert` each.

Everything here is attacker-controlled input. The decoder refuses what Python's `json` would
quietly accept (duplicate keys, NaN, runaway nesting); shape errors raise `ShapeError`, which the
server answers with 422 so Alertmanager does not retry a payload that can never succeed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from responder.errors import InputError
from responder.locks import container_key
from responder.playbook.model import FALCO_PRIORITIES, AlertSource

MAX_DEPTH = 32
MAX_TEXT = 4096  # longest identifying string (rule, name, host, label value) we keep as a key
FIRING = "firing"
RESOLVED = "resolved"
_FALCO_RANK = {name: rank for rank, name in enumerate(FALCO_PRIORITIES)}
_FALCO_ALIASES = {
    "info": "informational",
    "warn": "warning",
    "err": "error",
    "crit": "critical",
    "emerg": "emergency",
}


class BadJSON(InputError, ValueError):
    """The body is not JSON we accept (400)."""


class ShapeError(InputError, ValueError):
    """Valid JSON that is not the expected payload (422)."""


@dataclass(frozen=True)
class Alert:
    """One alert occurrence, whatever sent it.

    `document` is what a playbook's `match.params` JSON Pointers read; `dedup_key` identifies the
    occurrence; `windowed` says repeats are folded by time window (Falco re-sends get new uuids)
    instead of by identity (Alertmanager's fingerprint + startsAt)."""

    source: AlertSource
    status: str
    name: str
    severity: str
    labels: Mapping[str, str]
    dedup_key: str
    windowed: bool
    host: str | None
    container: str | None
    occurred_at: str | None
    document: Mapping[str, Any]
    # What the sender said it left out or lumped together (Alertmanager's truncatedAlerts):
    # recorded on the incident's timeline, never a reason to refuse the alert.
    warnings: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What the incident's trigger records of the alert."""
        return {
            "source": str(self.source),
            "status": self.status,
            "name": self.name,
            "severity": self.severity,
            "host": self.host,
            "container": self.container,
            "occurred_at": self.occurred_at,
            "dedup_key": self.dedup_key,
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }


# strict JSON -----------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadJSON(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise BadJSON(f"{name} is not valid JSON")


def _finite_float(text: str) -> float | str:
    """`1e999` is valid JSON but no finite double: keep its text rather than store `Infinity`,
    which is not JSON (and which SQLite's json functions and every export would then choke on)."""
    value = float(text)
    return value if math.isfinite(value) else text


def decode(body: bytes) -> Any:
    """Parse a request body: UTF-8 JSON, no duplicate keys, no NaN/Infinity, bounded nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJSON(f"body is not UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise BadJSON(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise BadJSON("JSON nested too deeply") from exc
    except ValueError as exc:  # BadJSON, or an integer past Python's digit limit
        raise BadJSON(str(exc)) from exc
    # Deeper than MAX_DEPTH needs more than MAX_DEPTH opening brackets: count them (C speed) first.
    brackets = body.count(b"{") + body.count(b"[")
    if brackets > MAX_DEPTH and isinstance(value, dict | list) and _depth(value) > MAX_DEPTH:
        raise BadJSON(f"JSON nested deeper than {MAX_DEPTH} levels")
    return _clean(value) if _SURROGATE_ESCAPE.search(body) else value


def _depth(value: Any) -> int:
    """Nesting depth, visiting containers only (scalars cannot add a level)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


# A lone surrogate can only arrive as a JSON escape (UTF-8 cannot encode one): \uD800-\uDFFF.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _clean(value: Any) -> Any:
    """Replace lone surrogates (valid JSON escapes, invalid text) so SQLite and Slack can store them."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# shape helpers ---------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShapeError(f"{where} must be a JSON object, got {_kind(value)}")
    return value


def _text(container: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = container.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ShapeError(f"{where}.{key} must be a non-empty string, got {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise ShapeError(f"{where}.{key} is longer than {MAX_TEXT} characters")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    table = _object(value, where)
    for key, item in table.items():
        if not isinstance(item, str):
            raise ShapeError(f"{where}.{key} must be a string, got {_kind(item)}")
    return table


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


# Alertmanager ----------------------------------------------------------------------------------


def parse_alertmanager(payload: Any) -> list[Alert]:
    """Alertmanager webhook_config payload, version 4: one Alert per entry of `alerts`."""
    body = _object(payload, "payload")
    if body.get("version") != "4":
        raise ShapeError(
            f'payload.version must be "4" (Alertmanager webhook format), got {body.get("version")!r}'
        )
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise ShapeError(f"payload.alerts must be an array, got {_kind(alerts)}")
    # No cap on the count: Alertmanager's max_alerts defaults to unlimited, and it never retries a
    # 4xx. The request body cap bounds what one notification can carry.
    warnings = alertmanager_warnings(body)
    shared = {
        k: body.get(k)
        for k in ("receiver", "groupLabels", "commonLabels", "commonAnnotations", "externalURL")
    }
    out = []
    for index, raw in enumerate(alerts):
        where = f"alerts[{index}]"
        alert = _object(raw, where)
        labels = _string_map(alert.get("labels"), f"{where}.labels")
        _string_map(alert.get("annotations") or {}, f"{where}.annotations")
        status = alert.get("status")
        if status not in (FIRING, RESOLVED):
            raise ShapeError(f'{where}.status must be "firing" or "resolved", got {status!r}')
        starts_at = _text(alert, "startsAt", where)
        fingerprint = _text(alert, "fingerprint", where, required=False) or _label_hash(labels)
        out.append(
            Alert(
                source=AlertSource.ALERTMANAGER,
                status=status,
                name=labels.get("alertname", ""),
                severity=labels.get("severity", ""),
                labels=labels,
                dedup_key=f"alertmanager:{fingerprint}:{starts_at}",
                windowed=False,
                host=labels.get("instance"),
                container=labels.get("container") or labels.get("container_id"),
                occurred_at=starts_at,
                document={**shared, **alert},
                warnings=warnings,
            )
        )
    return out


def alertmanager_warnings(body: Mapping[str, Any]) -> tuple[str, ...]:
    """What an Alertmanager notification says it lost: `truncatedAlerts` counts the alerts of the
    group that its receiver's `max_alerts` cut off (they are not in `alerts`, and never will be:
    the next notification of the group is cut the same way)."""
    truncated = body.get("truncatedAlerts")
    group = body.get("groupKey")
    where = f" of group {group}" if isinstance(group, str) and group else ""
    out: list[str] = []
    if isinstance(truncated, int) and not isinstance(truncated, bool) and truncated > 0:
        out.append(
            f"Alertmanager left {truncated} alert(s){where} out of this notification (max_alerts in "
            f"receiver {body.get('receiver')!r}); look them up in Alertmanager: responder never saw them"
        )
    if not body.get("alerts") and not out:
        out.append(f"Alertmanager sent a notification{where} with no alerts in it")
    return tuple(out)


def _label_hash(labels: Mapping[str, str]) -> str:
    """Alertmanager always sends `fingerprint`; a hand-made payload may not: hash the label set."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


# Falco -----------------------------------------------------------------------------------------


def falco_priority(value: Any) -> str:
    """Falco spells priorities in several ways ("Warning", "WARNING", "Info"); one canonical name."""
    name = str(value).strip().lower()
    name = _FALCO_ALIASES.get(name, name)
    if name not in _FALCO_RANK:
        raise ShapeError(f"priority {value!r} is not a Falco priority ({', '.join(FALCO_PRIORITIES)})")
    return name


def falco_at_least(priority: str, threshold: str) -> bool:
    """Whether a Falco priority is at or above a threshold."""
    return _FALCO_RANK[priority] <= _FALCO_RANK[threshold]


def parse_falco(payload: Any) -> list[Alert]:
    """Falco's json_output (http_output, program_output) and Falcosidekick's webhook output, which
    forwards the same object with a `uuid` and `hostname`. A `container.id` of `host` (or none)
    is a host event: recorded, never a container action."""
    body = _object(payload, "payload")
    rule = _text(body, "rule", "payload")
    assert rule is not None
    priority = falco_priority(_text(body, "priority", "payload"))
    fields = body.get("output_fields") or {}
    fields = _object(fields, "payload.output_fields")
    hostname = _text(body, "hostname", "payload", required=False)
    container: str | None = None
    for key in ("container.full_id", "container.id"):
        value = fields.get(key)
        if isinstance(value, str) and value and value != "host":
            container = value
            break
    labels = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return [
        Alert(
            source=AlertSource.FALCO,
            status=FIRING,
            name=rule,
            severity=priority,
            labels=labels,
            # the short form, so Falco's 12-character ID and container.full_id fold together
            dedup_key=f"falco:{hostname or '-'}:{container_key(container) if container else 'host'}:{rule}",
            windowed=True,
            host=hostname,
            container=container,
            occurred_at=body.get("time") if isinstance(body.get("time"), str) else None,
            document=body,
        )
    ]


# generic ---------------------------------------------------------------------------------------


def parse_generic(payload: Any) -> list[Alert]:
    """`{"id": ..., "name": ..., "status": "firing", "severity": ..., "labels": {...}, "host": ...,
    "container": ...}`: for senders with neither Alertmanager's nor Falco's format. `id` is the
    sender's identity of the occurrence; a repeat with the same `id` is a duplicate."""
    body = _object(payload, "payload")
    ident = _text(body, "id", "payload")
    name = _text(body, "name", "payload")
    assert ident is not None and name is not None
    status = body.get("status", FIRING)
    if status not in (FIRING, RESOLVED):
        raise ShapeError(f'payload.status must be "firing" or "resolved", got {status!r}')
    labels = _string_map(body.get("labels") or {}, "payload.labels")
    severity = _text(body, "severity", "payload", required=False) or labels.get("severity", "")
    return [
        Alert(
            source=AlertSource.GENERIC,
            status=status,
            name=name,
            severity=severity,
            labels=labels,
            dedup_key=f"generic:{ident}",
            windowed=False,
            host=_text(body, "host", "payload", required=False),
            container=_text(body, "container", "payload", required=False),
            occurred_at=body.get("time") if isinstance(body.get("time"), str) else None,
            document=body,
        )
    ]


PARSERS = {
    AlertSource.ALERTMANAGER: parse_alertmanager,
    AlertSource.FALCO: parse_falco,
    AlertSource.GENERIC: parse_generic,
}
