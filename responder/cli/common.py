"""What every command needs: settings and catalog from the flags, finding a playbook, the
timeline, and how a run's outcome is printed and turned into an exit code."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from responder.exit_codes import STATUS_EXIT

if TYPE_CHECKING:
    from responder.catalog import Catalog
    from responder.engine import RunOutcome
    from responder.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the command's location flags (then environment, config file, defaults)."""
    from responder.settings import load_settings

    return load_settings(
        data_dir=getattr(args, "data_dir", None),
        playbooks_dirs=getattr(args, "playbooks_dir", None) or [],
        runbooks_dirs=getattr(args, "runbooks_dir", None) or [],
        config=getattr(args, "config", None),
    )


def catalog_for(settings: Settings) -> Catalog:
    """Every role under the settings' runbooks directories."""
    from responder.catalog import load_catalog

    return load_catalog(settings.runbook_dirs)


def playbook_files(settings: Settings) -> list[Path]:
    """The playbook files in the settings' playbook directories, sorted."""
    files: list[Path] = []
    for directory in settings.playbook_dirs:
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    return files


def find_playbook(ref: str, settings: Settings) -> Path:
    """A playbook by path or by name; UsageError listing the known names otherwise."""
    from responder.errors import UsageError

    path = Path(ref)
    if path.is_file():
        return path.resolve()
    for candidate in playbook_files(settings):
        if candidate.stem == ref:
            return candidate
    known = ", ".join(p.stem for p in playbook_files(settings)) or "none"
    raise UsageError(f"no playbook file or name {ref!r} (known: {known})")


def timeline_for(settings: Settings) -> Any:
    """The timeline, its data directory checked first."""
    from responder.service import open_timeline

    return open_timeline(settings)


def report(outcome: RunOutcome) -> int:
    """Print how a run ended (or where it waits) and return its exit code."""
    from responder.outcomes import tally_mapping

    if outcome.awaiting_step:
        print(
            f"\n{outcome.incident_id} is paused before step {outcome.awaiting_step}.\n"
            f"  approve: responder approve {outcome.incident_id} {outcome.awaiting_step}\n"
            f"  deny:    responder deny {outcome.incident_id}"
        )
    else:
        print(
            f"\n{outcome.incident_id}: {outcome.status} ({tally_mapping(outcome.steps).line()}). "
            f"Timeline: responder show {outcome.incident_id}"
        )
    return STATUS_EXIT.get(outcome.status, 1)


def inventory_for(args: argparse.Namespace, settings: Settings) -> str | None:
    """The inventory from the flag or the settings, as an absolute path."""
    inventory = getattr(args, "inventory", None) or settings.inventory
    return str(Path(inventory).resolve()) if inventory else None
