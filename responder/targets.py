"""Which containers an incident acts on: the value of a playbook's `targets` param.

A `targets` value is one container reference (a name or an ID prefix) or a list of selectors,
each of which is one of:

- a name or ID prefix: `web-1`, `4f2a9c`;
- `label:KEY=VALUE`: every container carrying that label;
- `image:REF`: every container started from that image (`repo:tag`, `sha256:<id>`, `repo@sha256:<digest>`).

One plain reference keeps the single-container path (the role resolves it; nothing else runs).
Anything else is a fleet: a first `targets` step resolves the selectors on every host to full
container IDs, refuses the run if they are more than the playbook's `max_targets`, and every
acting step then runs once per host over that host's containers, with a result per container.

The grammar is checked here, at the door, and again on each host (module_utils) before Docker
sees it: selectors come from alerts, which are attacker-controlled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from responder.errors import InputError

CONTAINER_REF = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
LABEL_SELECTOR = re.compile(r"label:([a-zA-Z0-9][a-zA-Z0-9._/-]{0,127})=([^\x00-\x1f,\x7f]{0,256})")
IMAGE_SELECTOR = re.compile(r"image:([a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,255})")
MAX_SELECTORS = 1000

# The synthetic first step of a fleet run, and the role it runs.
TARGETS_STEP = "targets"
RESOLVE_ROLE = "resolve_targets"


class TargetSyntaxError(InputError, ValueError):
    """A selector that is none of: a container name or ID prefix, label:KEY=VALUE, image:REF."""


def check_selector(text: str) -> str:
    """`text` if it is a well-formed selector; TargetSyntaxError saying what would be right if not."""
    if CONTAINER_REF.fullmatch(text) or LABEL_SELECTOR.fullmatch(text) or IMAGE_SELECTOR.fullmatch(text):
        return text
    if text.startswith("label:"):
        raise TargetSyntaxError(f"{text!r}: expected label:KEY=VALUE (a key, '=', a value without commas)")
    if text.startswith("image:"):
        raise TargetSyntaxError(
            f"{text!r}: expected image:REPOSITORY[:TAG], image:sha256:ID or image:REPO@sha256:DIGEST"
        )
    raise TargetSyntaxError(
        f"{text!r} is not a container name or ID prefix ([a-zA-Z0-9][a-zA-Z0-9_.-]*), "
        "label:KEY=VALUE or image:REF"
    )


def normalise(items: Iterable[str]) -> str | list[str]:
    """Checked, de-duplicated selectors in order; a single plain reference stays a string, so
    single-container playbooks and their templates see exactly what they always did."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(check_selector(item.strip()), None)
    if not seen:
        raise TargetSyntaxError("no container given")
    if len(seen) > MAX_SELECTORS:
        raise TargetSyntaxError(f"more than {MAX_SELECTORS} selectors")
    selectors = list(seen)
    if len(selectors) == 1 and CONTAINER_REF.fullmatch(selectors[0]):
        return selectors[0]
    return selectors


def is_fleet(value: Any) -> bool:
    """Whether a targets value needs the fleet path (a list, or any selector that is not a plain reference)."""
    return isinstance(value, list)


def is_selection(value: Any) -> bool:
    """Whether any selector picks containers by label or image (it may match more than anyone
    listed); a value of names and IDs only counts exactly what its author named."""
    return any(not CONTAINER_REF.fullmatch(s) for s in selectors_of(value))


def selectors_of(value: Any) -> list[str]:
    """The value as a list of selectors (a single reference becomes a list of one)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def describe(value: Any) -> str:
    """A short human description: `web-1`, `3 containers: a, b, c`, `image:nginx:1.25`."""
    selectors = selectors_of(value)
    if len(selectors) == 1:
        return selectors[0]
    shown = ", ".join(selectors[:5]) + (f", and {len(selectors) - 5} more" if len(selectors) > 5 else "")
    return f"{len(selectors)} selectors: {shown}"


__all__ = [
    "RESOLVE_ROLE",
    "TARGETS_STEP",
    "TargetSyntaxError",
    "check_selector",
    "describe",
    "is_fleet",
    "is_selection",
    "normalise",
    "selectors_of",
]
