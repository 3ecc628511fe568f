"""One container, one responder: the key an open incident holds on the container it answers.

The CLI and the webhook compute it the same way, and the timeline enforces it (a unique index
over open incidents), so two runs never contain the same container at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from responder.playbook.model import Playbook

_HEX = re.compile(r"^[0-9a-f]{12,64}$")


def container_key(reference: str) -> str:
    """The form a container reference is compared in: a hex ID is cut to Docker's 12-character short
    ID, so Falco's short ID and a full ID name the same container."""
    ref = reference.strip().lower()
    return ref[:12] if _HEX.match(ref) else ref


def lock_key(
    playbook: Playbook, params: Mapping[str, Any], limit: str | None, inventory: str | None
) -> str | None:
    """Keyed on the container the playbook's `targets` param names (or, in older playbooks, its
    string param `container`) and where it runs (inventory and host limit). None when it names
    no single container: a fleet's containers are claimed one by one on their hosts."""
    # Playbooks written before the targets type name their container in a string param called
    # `container`; they keep their lock.
    spec = playbook.target_param or playbook.param("container")
    container = params.get(spec.name) if spec else None
    if not isinstance(container, str) or not container:
        return None
    return f"{inventory or 'localhost'}|{limit or 'all'}|{container_key(container)}"
