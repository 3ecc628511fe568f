"""The action catalogue: every Ansible role under the runbooks directories that declares
`meta/argument_specs.yml`. The role is the contract; the engine knows no action by name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from responder import strict_yaml
from responder.action_meta import GatedValues, TimelineOutput, load_meta
from responder.errors import ConfigError

_TYPES = {"str", "int", "bool", "list", "dict", "path", "raw", "float"}
# Entry-point constraints Ansible's ArgumentSpecValidator takes, as written in argument_specs.yml.
CONSTRAINTS = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")


@dataclass(frozen=True)
class OptionSpec:
    """One argument of a role, from its argument_specs."""

    name: str
    type: str = "str"
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    elements: str | None = None
    description: str = ""
    no_log: bool = False


@dataclass(frozen=True)
class Action:
    """One role, described by its argument_specs and its meta/responder.yml."""

    name: str
    path: Path
    summary: str
    options: Mapping[str, OptionSpec]
    changes: str = ""
    undo: str = ""  # how to undo it, in words ("" if it cannot be undone)
    undo_action: str | None = None  # the action `responder release` runs to undo it
    undo_with: Mapping[str, Any] = field(default_factory=dict)  # its arguments, templated over `outputs`
    # List outputs that undo gathers from every attempt of the step, not only the last, keyed by
    # an item field: a retried isolation sees only the networks an earlier attempt did not cut.
    undo_gather: Mapping[str, str] = field(default_factory=dict)
    undo_when: str | None = None  # undo only where this output was recorded (responder.yml undo.when_output)
    requires: tuple[str, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)
    example: Mapping[str, Any] = field(default_factory=dict)
    target_output: str | None = None  # the output naming the container it acted on (full ID)
    timeline: tuple[TimelineOutput, ...] = ()  # outputs whose items become timeline events
    containment: bool = False  # it cuts the container off (see action_meta)
    approval_for: Mapping[str, GatedValues] = field(default_factory=dict)  # values that need a gate
    # The options as written in argument_specs.yml and the entry point's constraints
    # (mutually_exclusive, required_if, ...): what Ansible's ArgumentSpecValidator takes.
    argument_spec: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    constraints: Mapping[str, Any] = field(default_factory=dict)


class Catalog:
    """Roles by name. A role's YAML is read when the role is first asked for, so a run reads only
    the roles its playbook uses (pure-Python YAML parsing of every role would cost every start)."""

    def __init__(self, paths: Mapping[str, Path], roots: tuple[Path, ...]) -> None:
        self.paths = dict(paths)
        self.roots = roots
        self._loaded: dict[str, Action] = {}

    def get(self, name: str) -> Action | None:
        """A role by name, loaded on first use; None if there is none."""
        if name not in self.paths:
            return None
        if name not in self._loaded:
            action = _load_action(self.paths[name])
            if action.undo_action and action.undo_action not in self.paths:
                raise ConfigError(f"{action.path}: undo action {action.undo_action!r} is not a known action")
            self._loaded[name] = action
        return self._loaded[name]

    @property
    def actions(self) -> dict[str, Action]:
        """Every action, loaded; problems in any role are reported together."""
        problems: list[str] = []
        for name in sorted(self.paths):
            try:
                self.get(name)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("\n".join(problems))
        return {name: self._loaded[name] for name in sorted(self.paths)}

    def suggest(self, name: str) -> str:
        """The closest known action name, for a 'did you mean'."""
        close = difflib.get_close_matches(name, list(self.paths), n=1, cutoff=0.6)
        return f"did you mean {close[0]!r}?" if close else f"known actions: {', '.join(sorted(self.paths))}"


def load_catalog(roots: Iterable[Path]) -> Catalog:
    """Find every role under `roots`. Two roles with one name are an error, never an override."""
    paths: dict[str, Path] = {}
    problems: list[str] = []
    root_list = tuple(Path(r) for r in roots)
    for root in root_list:
        if not root.is_dir():
            raise ConfigError(f"runbooks directory {root} does not exist")
        for role_dir in sorted(p for p in root.iterdir() if (p / "meta" / "argument_specs.yml").is_file()):
            if role_dir.name in paths:
                problems.append(
                    f"action {role_dir.name!r} is defined twice: {paths[role_dir.name]} and {role_dir}"
                )
                continue
            paths[role_dir.name] = role_dir
    if problems:
        raise ConfigError("\n".join(problems))
    return Catalog(paths, root_list)


def _read_yaml(path: Path) -> Any:
    doc, problems = strict_yaml.load(path.read_text(encoding="utf-8"), str(path))
    if problems:
        raise ConfigError("\n".join(p.render() for p in problems))
    return doc.data


def _load_action(role_dir: Path) -> Action:
    specs = _read_yaml(role_dir / "meta" / "argument_specs.yml")
    try:
        main = specs["argument_specs"]["main"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{role_dir}/meta/argument_specs.yml: needs argument_specs.main") from exc
    options: dict[str, OptionSpec] = {}
    for name, raw in (main.get("options") or {}).items():
        opt_type = raw.get("type", "str")
        if opt_type not in _TYPES:
            raise ConfigError(f"{role_dir}: option {name!r} has unsupported type {opt_type!r}")
        options[name] = OptionSpec(
            name=name,
            type=opt_type,
            required=bool(raw.get("required", False)),
            default=raw.get("default"),
            choices=tuple(raw.get("choices") or ()),
            elements=raw.get("elements"),
            description=_text(raw.get("description", "")),
            no_log=bool(raw.get("no_log", False)),
        )
    meta = load_meta(role_dir / "meta" / "responder.yml")
    constraints = {key: main[key] for key in CONSTRAINTS if main.get(key)}
    return Action(
        name=role_dir.name,
        path=role_dir,
        summary=_text(main.get("short_description", "")),
        options=options,
        changes=meta.changes,
        undo=meta.undo,
        undo_action=meta.undo_action,
        undo_with=meta.undo_with,
        undo_gather=meta.undo_gather,
        undo_when=meta.undo_when,
        requires=meta.requires,
        outputs=meta.outputs,
        example=meta.example,
        target_output=meta.target_output,
        timeline=meta.timeline,
        containment=meta.containment,
        approval_for=meta.approval_for,
        argument_spec=dict(main.get("options") or {}),
        constraints=constraints,
    )


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value or "")
