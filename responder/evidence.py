"""Controller side of the chain of custody: find what a step fetched, re-hash it, record both
hashes. A file is only trusted if it sits inside the incident's evidence directory."""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from responder.errors import ResponderError
from responder.ids import utc_now
from responder.private_dirs import ensure_private_dir
from responder.store_location import is_postgres
from responder.timeline import EvidenceRecord, Timeline

_NAME = re.compile(r"^[0-9a-f]{12}-[0-9TZ]+-[a-z0-9_]+\.[a-z.]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:\-\[\]]{1,255}$")


_DIRECT_CHUNK = 8 << 20  # a multiple of any block size O_DIRECT asks for


def sha256_file(path: Path) -> str:
    """SHA-256 of the file as stored: read with O_DIRECT where the filesystem allows it, so the
    bytes come from the disk rather than the page cache, and a multi-gigabyte export is hashed
    through one reused buffer instead of filling the controller's page cache."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | getattr(os, "O_DIRECT", 0))
    except OSError:  # tmpfs and some others refuse O_DIRECT
        fd = os.open(path, flags)
    digest = hashlib.sha256()
    try:
        buffer = mmap.mmap(-1, _DIRECT_CHUNK)  # page-aligned, as O_DIRECT needs
        view = memoryview(buffer)
        offset = 0
        try:
            while True:
                try:
                    count = os.preadv(fd, [buffer], offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL or offset:
                        raise
                    os.close(fd)  # O_DIRECT accepted at open, refused at read: read normally
                    fd = os.open(path, flags)
                    continue
                if not count:
                    break
                digest.update(view[:count])
                offset += count
        finally:
            view.release()
            buffer.close()
    finally:
        os.close(fd)
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


class EvidenceProblem(ResponderError):
    """An evidence item a role reported cannot be recorded (missing, outside the root, malformed)."""


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
    details = {k: item[k] for k in ("started_at", "tool_versions", "mount") if k in item}
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
        details=details,
    )


def write_manifest(timeline: Timeline, incident_id: str, directory: Path) -> Path:
    """The per-incident evidence manifest (JSON), rewritten atomically after each collection."""
    ensure_private_dir(directory, directory.parent)
    artifacts = []
    for record in timeline.evidence(incident_id):
        path = Path(record.path)
        artifacts.append(
            {
                "file": str(path.relative_to(directory)) if path.is_relative_to(directory) else str(path),
                "kind": record.kind,
                "size": record.size,
                "sha256_source": record.sha256_source,
                "sha256_controller": record.sha256_controller,
                "method": record.method,
                "host": record.host,
                "container_id": record.container_id,
                "source_path": record.source_path,
                "collector": record.collector,
                "collected_at_utc": record.collected_at,
                "recorded_at_utc": record.recorded_at,
                **dict(record.details),
            }
        )
    manifest = {
        "incident_id": incident_id,
        "generated_at_utc": utc_now(),
        "hash_algorithm": "sha256",
        "artifacts": artifacts,
    }
    target = directory / "manifest.json"
    partial = directory / "manifest.json.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    return target


@dataclass(frozen=True)
class Verification:
    """One artifact re-hashed: ok, missing, mismatch or unsafe (or pruned, or elsewhere)."""

    record: EvidenceRecord
    # ok, pruned (evidence prune), missing, mismatch, unsafe (reached through a link), elsewhere
    # (collected by another controller sharing this PostgreSQL timeline: verify it there)
    status: str
    sha256_now: str | None


def verify(timeline: Timeline, incident_id: str, evidence_root: Path | None = None) -> list[Verification]:
    """Re-hash every artifact of an incident against the hash recorded at collection. A file
    reached through a symbolic link below `evidence_root` is `unsafe`, whatever it hashes to:
    the bytes behind a link are not the evidence that was recorded there."""
    from responder.evidence_prune import pruned_paths

    results = []
    pruned = pruned_paths(timeline, incident_id)
    for record in timeline.evidence(incident_id):
        path = Path(record.path)
        if record.path in pruned and not path.exists():
            results.append(Verification(record, "pruned", None))  # deleted on purpose, on the record
            continue
        if evidence_root is not None and _linked_below(evidence_root, path):
            results.append(Verification(record, "unsafe", None))
            continue
        if is_postgres(timeline.path) and record.controller and record.controller != timeline.controller:
            # Several controllers share a PostgreSQL timeline, and evidence stays on the one that
            # collected it: a file at that path here is not that file. Verify it there.
            results.append(Verification(record, "elsewhere", None))
            continue
        if not path.is_file():
            results.append(Verification(record, "missing", None))
            continue
        digest = sha256_file(path)
        ok = digest == record.sha256_controller == record.sha256_source
        results.append(Verification(record, "ok" if ok else "mismatch", digest))
    return results


def _linked_below(root: Path, path: Path) -> bool:
    """Whether the root itself, or any component from it down to `path`, is a symbolic link."""
    if not path.is_relative_to(root):
        return False
    current = root
    for name in ("", *path.relative_to(root).parts):
        current = current / name if name else current
        if current.is_symlink():
            return True
    return False


def quarantine_stray_partials(evidence_root: Path) -> list[tuple[str, Path, int]]:
    """Move `<root>/<incident>/<host>/*.partial` files that no fetch holds (its lock is gone with
    its process) into `<root>/quarantine/`: never hashed, never recorded, so never evidence, but
    kept for the investigation. Returns (incident, new path, size) for each."""
    import errno
    import fcntl
    import os
    import re

    moved: list[tuple[str, Path, int]] = []
    incident_re = re.compile(r"^INC-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
    if not evidence_root.is_dir():
        return moved
    for partial in sorted(evidence_root.glob("INC-*/*/*.partial")):
        incident = partial.parent.parent.name
        if not incident_re.match(incident) or partial.is_symlink():
            continue
        try:
            fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # a fetch is writing it right now
                raise
            quarantine = ensure_private_dir(evidence_root / "quarantine", evidence_root)
            target = quarantine / f"{incident}-{partial.parent.name}-{partial.name}"
            suffix = 1
            while target.exists():
                target = quarantine / f"{incident}-{partial.parent.name}-{partial.name}.{suffix}"
                suffix += 1
            size = os.fstat(fd).st_size
            os.rename(partial, target)
            os.chmod(target, 0o400)
            moved.append((incident, target, size))
        finally:
            os.close(fd)
    return moved
