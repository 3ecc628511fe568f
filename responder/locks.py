"""One container, one responder: the key an open incident holds on the container it answers.

The CLI and the webhook compute it the same way, and the timeline enforces it (a unique index
over open incidents), so two runs never contain the same container at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_HEX = re.compile(r"^[0-9a-f]{12,64}$")


def container_key(reference: str) -> str:
    """The form a container reference is compared in: a hex ID is cut to Docker's 12-character short
    ID, so Falco's short ID and a full ID name the same container."""
    ref = reference.strip().lower()
    return ref[:12] if _HEX.match(ref) else ref


def lock_key(params: Mapping[str, Any], limit: str | None, inventory: str | None) -> str | None:
    """Keyed on the playbook's `container` param (the shipped playbooks' convention) and where it
    runs (inventory and host limit). None when the playbook names no container."""
    container = params.get("container")
    if not isinstance(container, str) or not container:
        return None
    return f"{inventory or 'localhost'}|{limit or 'all'}|{container_key(container)}"
