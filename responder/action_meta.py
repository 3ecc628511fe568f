"""`meta/responder.yml`: what a role tells the engine about itself, validated like a playbook.

A role is self-describing so that adding an action never means editing the engine. Besides the
words `responder actions` prints (changes, undo, requires, outputs, example), a role declares:

- `target_output`: the output that names the container it acted on (its full ID). The engine
  records claims and scope from it, whatever the role calls it.
- `containment: true`: this role cuts the container off (isolate, pause, stop). Once such a step
  has finished, `responder serve` lets the run go on with its evidence steps outside the worker
  slots, so that the next alert's containment never waits behind a filesystem export.
- `approval_for`: option values that reach beyond the suspect, so that a step setting one (or a
  template that might) must be gated (`approval: required`), e.g.
  `approval_for: {shared_namespace: {values: [whole], why: "it cuts every container sharing ..."}}`.
- `timeline`: outputs whose items each become a timeline event of their own, e.g.

      timeline:
        rotated:                       # output name: a list of objects (or one object)
          kind: secret_rotated         # the event kind
          message: "{backend} secret {name} rotated[ to {new_name}] (version {version})"
          fields: [backend, name, new_name, version]   # copied into the event, nothing else

  Only the listed fields are copied (a role must never report a secret's value, and this keeps
  anything else it reports off the timeline); `{field}` in the message is replaced by the
  field's value, a `[part]` is kept only when every field in it has one, and nothing else in
  the message is interpreted (it is never a template).

Unknown keys are refused with file, line and a "did you mean", as in playbooks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from responder import strict_yaml
from responder.errors import ConfigError, Problem
from responder.vocabulary import EventKind

_TOP = {
    "changes",
    "undo",
    "requires",
    "outputs",
    "example",
    "target_output",
    "timeline",
    "containment",
    "approval_for",
}
_UNDO = {"description", "action", "with", "gather", "when_output"}
_EVENT = {"kind", "message", "fields"}
_KIND = re.compile(r"^[a-z][a-z0-9_]{2,39}$")
_FIELD_REF = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
# Kinds the engine writes itself: a role may not impersonate them on the timeline.
RESERVED_KINDS = frozenset(
    {
        EventKind.INCIDENT_OPENED,
        EventKind.INCIDENT_CLOSED,
        EventKind.INCIDENT_INTERRUPTED,
        EventKind.INCIDENT_RESUMED,
        EventKind.INCIDENT_RELEASED,
        EventKind.STEP_STARTED,
        EventKind.STEP_FINISHED,
        EventKind.TASK_RESULT,
        EventKind.APPROVAL_REQUESTED,
        EventKind.APPROVAL_GRANTED,
        EventKind.APPROVAL_DENIED,
        EventKind.EVIDENCE_RECORDED,
        EventKind.EVIDENCE_PROBLEM,
        EventKind.CONTAINER_HELD,
        EventKind.CONTAINER_CLAIMED,
        EventKind.DUPLICATE_INCIDENT,
        EventKind.RELEASE_REQUESTED,
        EventKind.RELEASE_FAILED,
        EventKind.CONTAINER_RELEASED,
        EventKind.RUN_ABANDONED,
        EventKind.BATCH_STARTED,
    }
)


@dataclass(frozen=True)
class TimelineOutput:
    """An output whose items each become a timeline event."""

    output: str
    kind: str
    message: str
    fields: tuple[str, ...]

    def events(self, outputs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(message, data) for each item the role reported under this output."""
        value = outputs.get(self.output)
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        out = []
        for item in items:
            if not isinstance(item, dict):
                continue
            data = {name: item.get(name) for name in self.fields}
            out.append((fill(self.message, data), data))
        return out


@dataclass(frozen=True)
class GatedValues:
    """Values of one option that make a step need `approval: required`, and why."""

    values: tuple[Any, ...]
    why: str


@dataclass(frozen=True)
class ActionMeta:
    """What a role's meta/responder.yml says, checked."""

    changes: str = ""
    undo: str = ""
    undo_action: str | None = None
    undo_with: Mapping[str, Any] = field(default_factory=dict)
    undo_gather: Mapping[str, str] = field(default_factory=dict)
    undo_when: str | None = None  # the undo applies only where this output is set (a held service)
    requires: tuple[str, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)
    example: Mapping[str, Any] = field(default_factory=dict)
    target_output: str | None = None
    timeline: tuple[TimelineOutput, ...] = ()
    containment: bool = False
    approval_for: Mapping[str, GatedValues] = field(default_factory=dict)


def fill(message: str, data: Mapping[str, Any]) -> str:
    """`{field}` replaced by its value; a `[part]` kept only when every field in it has a value
    (`rotated[ to {new_name}]`). Nothing else in `message` means anything."""

    def present(name: str) -> bool:
        return data.get(name) not in (None, "")

    def optional(match: re.Match[str]) -> str:
        inner = match.group(1)
        return inner if all(present(n) for n in _FIELD_REF.findall(inner)) else ""

    text = _OPTIONAL.sub(optional, message)
    return _FIELD_REF.sub(lambda m: str(data[m.group(1)]) if present(m.group(1)) else "", text)


def load_meta(path: Path) -> ActionMeta:
    """Read and check one role's meta/responder.yml (absent: an action that says nothing)."""
    if not path.is_file():
        return ActionMeta()
    doc, problems = strict_yaml.load(path.read_text(encoding="utf-8"), str(path))
    if problems:
        raise ConfigError("\n".join(p.render() for p in problems))
    meta, problems = _check(doc)
    if problems:
        raise ConfigError("\n".join(p.render() for p in problems))
    return meta


def _check(doc: strict_yaml.Document) -> tuple[ActionMeta, list[Problem]]:
    data = doc.data if doc.data is not None else {}
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return ActionMeta(), [doc.problem((), "meta/responder.yml must be a mapping")]
    _unknown(doc, data, _TOP, (), problems)
    undo = data.get("undo") or {}
    if isinstance(undo, str):
        undo = {"description": undo}
    if not isinstance(undo, dict):
        problems.append(
            doc.problem(
                ("undo",), "undo must be a sentence or a mapping", "keys: " + ", ".join(sorted(_UNDO))
            )
        )
        undo = {}
    _unknown(doc, undo, _UNDO, ("undo",), problems)
    gather = undo.get("gather") or {}
    if not isinstance(gather, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in gather.items()
    ):
        problems.append(
            doc.problem(
                ("undo", "gather"),
                "undo.gather maps a list output to the item field that identifies an entry",
                "e.g. {networks: name}",
            )
        )
        gather = {}
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        problems.append(doc.problem(("outputs",), "outputs maps each output name to what it holds"))
        outputs = {}
    when_output = undo.get("when_output")
    if when_output is not None and (not isinstance(when_output, str) or when_output not in outputs):
        problems.append(
            doc.problem(
                ("undo", "when_output"),
                f"undo.when_output must name one of this role's outputs, got {when_output!r}",
                f"outputs: {', '.join(outputs) or 'none declared'}",
            )
        )
        when_output = None
    requires = data.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        problems.append(doc.problem(("requires",), "requires is a list of names, e.g. [docker]"))
        requires = []
    target = data.get("target_output")
    if target is not None and (not isinstance(target, str) or target not in outputs):
        problems.append(
            doc.problem(
                ("target_output",),
                f"target_output must name one of this role's outputs, got {target!r}",
                f"outputs: {', '.join(outputs) or 'none declared'}",
            )
        )
        target = None
    timeline = _timeline(doc, data.get("timeline") or {}, outputs, problems)
    containment = data.get("containment", False)
    if not isinstance(containment, bool):
        problems.append(doc.problem(("containment",), "containment is true or false", "containment: true"))
        containment = False
    approval_for = _approval_for(doc, data.get("approval_for") or {}, problems)
    meta = ActionMeta(
        approval_for=approval_for,
        changes=_text(data.get("changes", "")),
        undo=_text(undo.get("description", "")),
        undo_action=undo.get("action"),
        undo_with=dict(undo.get("with") or {}),
        undo_gather=dict(gather),
        undo_when=when_output,
        requires=tuple(requires),
        outputs={str(k): _text(v) for k, v in outputs.items()},
        example=dict(data.get("example") or {}),
        target_output=target,
        timeline=timeline,
        containment=containment,
    )
    return meta, problems


def _approval_for(doc: strict_yaml.Document, raw: Any, problems: list[Problem]) -> dict[str, GatedValues]:
    shape = "approval_for maps an option to {values: [...], why: ...}"
    if not isinstance(raw, dict):
        problems.append(doc.problem(("approval_for",), shape))
        return {}
    gated: dict[str, GatedValues] = {}
    for option, spec in raw.items():
        values = spec.get("values") if isinstance(spec, dict) else None
        why = spec.get("why") if isinstance(spec, dict) else None
        if not isinstance(values, list) or not values or not isinstance(why, str) or not why.strip():
            problems.append(doc.problem(("approval_for", option), shape, "e.g. {values: [whole], why: ...}"))
            continue
        _unknown(doc, spec, {"values", "why"}, ("approval_for", option), problems)
        gated[str(option)] = GatedValues(tuple(values), why.strip())
    return gated


def _timeline(
    doc: strict_yaml.Document, raw: Any, outputs: Mapping[str, Any], problems: list[Problem]
) -> tuple[TimelineOutput, ...]:
    if not isinstance(raw, dict):
        problems.append(doc.problem(("timeline",), "timeline maps an output name to {kind, message, fields}"))
        return ()
    declared: list[TimelineOutput] = []
    for name, spec in raw.items():
        where = ("timeline", name)
        if name not in outputs:
            problems.append(
                doc.problem(
                    where, f"timeline names {name!r}, which is not one of the role's outputs", key=True
                )
            )
            continue
        if not isinstance(spec, dict):
            problems.append(doc.problem(where, "each timeline entry is {kind, message, fields}"))
            continue
        _unknown(doc, spec, _EVENT, where, problems)
        kind, message, fields = spec.get("kind"), spec.get("message", ""), spec.get("fields")
        if not isinstance(kind, str) or not _KIND.match(kind) or kind in RESERVED_KINDS:
            problems.append(
                doc.problem(
                    (*where, "kind"),
                    f"kind must be a snake_case event name of the role's own, got {kind!r}",
                    "the engine's own kinds (step_finished, incident_closed, ...) are reserved",
                )
            )
            continue
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            problems.append(doc.problem((*where, "fields"), "fields lists the item fields the event keeps"))
            continue
        if not isinstance(message, str):
            problems.append(doc.problem((*where, "message"), "message is a sentence with {field} references"))
            continue
        unknown = sorted(set(_FIELD_REF.findall(message)) - set(fields))
        if unknown:
            problems.append(
                doc.problem((*where, "message"), f"message refers to {unknown}, which fields does not list")
            )
            continue
        declared.append(TimelineOutput(str(name), kind, message, tuple(fields)))
    return tuple(declared)


def _unknown(
    doc: strict_yaml.Document,
    data: Mapping[str, Any],
    allowed: set[str],
    where: tuple[str, ...],
    problems: list[Problem],
) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(sorted(allowed))
            problems.append(doc.problem((*where, key), f"unknown key {key!r}", hint, key=True))


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value or "")
