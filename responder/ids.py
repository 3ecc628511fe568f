"""Incident identifiers: sortable by creation time, short enough to say on a call."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

INCIDENT_ID = re.compile(r"^INC-\d{8}-\d{6}-[0-9a-f]{4}$")


def new_incident_id(now: datetime | None = None) -> str:
    """`INC-20261129-013644-7f3a`: UTC date and time, then 16 random bits against collisions."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"INC-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def utc_now() -> str:
    """UTC timestamp with microseconds, the timeline's one time format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_iso(epoch: float) -> str:
    """A Unix time in the timeline's time format (it sorts as text)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def incident_time_now() -> str:
    """Now as an incident ID spells it (`20261129-013644`): ordered like the IDs themselves."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}"


def default_actor() -> str:
    """`user@host` of whoever runs this process: the actor when nobody said who they are."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
