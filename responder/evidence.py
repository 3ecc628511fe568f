"""Controller side of the chain of custody: find what a step fetched, re-hash it, record both
hashes. A file is only trusted if it sits inside the incident's evidence directory."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from responder.timeline import EvidenceRecord

_NAME = re.compile(r"^[0-9a-f]{12}-[0-9TZ]+-[a-z_]+\.[a-z.]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:\-\[\]]{1,255}$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def controller_path(evidence_root: Path, incident_id: str, host: str, name: str) -> Path | None:
    """Where fetch put the file, or None if the names would lead outside the evidence root."""
    if not _NAME.match(name) or not _HOST.match(host) or host in (".", ".."):
        return None
    root = (evidence_root / incident_id).resolve()
    candidate = (root / host / name).resolve()
    if not str(candidate).startswith(str(root) + os.sep):
        return None
    return candidate


class EvidenceProblem(Exception):
    pass


def record_from_output(
    item: Mapping[str, Any],
    *,
    evidence_root: Path,
    incident_id: str,
    step_id: str,
    host: str,
    collector: str,
) -> EvidenceRecord:
    """Verify one evidence item a role reported and build its custody record."""
    name = str(item.get("name", ""))
    source_hash = str(item.get("sha256", ""))
    if not _HEX64.match(source_hash):
        raise EvidenceProblem(f"evidence {name!r} from {host} has no valid source SHA-256")
    path = controller_path(evidence_root, incident_id, host, name)
    if path is None:
        raise EvidenceProblem(f"evidence name {name!r} from {host} is not a generated name; refused")
    if not path.is_file():
        raise EvidenceProblem(f"evidence {name} from {host} was not fetched to {path}")
    os.chmod(path, 0o400)
    os.chmod(path.parent, 0o700)  # fetch creates the per-host directory with the umask's mode
    controller_hash = sha256_file(path)
    container_id = item.get("container_id")
    return EvidenceRecord(
        incident_id=incident_id,
        step_id=step_id,
        host=host,
        container_id=str(container_id) if container_id else None,
        kind=str(item.get("kind", "file")),
        path=str(path),
        source_path=str(item.get("path", "")),
        sha256_source=source_hash,
        sha256_controller=controller_hash,
        size=int(item.get("size", path.stat().st_size)),
        method=str(item.get("method", "")),
        collector=collector,
        collected_at=str(item.get("collected_at", "")),
    )
