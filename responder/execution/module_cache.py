"""A module cache that outlives one ansible-playbook process.

Ansible zips every module with the module_utils it imports (AnsiballZ) the first time a run uses
it, and keeps the zip in a cache under its per-process temp directory, which it deletes at exit.
Building one zip costs about 70 ms of controller time, so a fresh ansible-playbook per incident
paid it for every action in the playbook, on every run.

responder keeps that cache in a private directory under its data directory instead. Ansible keys
its cache entries by module name only, so the directory's name is a digest of everything an
entry is built from: ansible-core's release, the controller's Python, and the content of every
file under the runbooks' library/ and module_utils/ directories (shared and per role). Editing a
module gives a new digest, hence a fresh cache: a stale module is never shipped to a host.

The entries are pickles that Ansible loads, so the directory must be ours alone: it is created
0700, and the callback plugin that links it in (callback_plugins/responder_module_cache.py)
refuses a directory that is a symlink, not owned by us, or open to group or others.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from responder.private_dirs import ensure_private_dir

CACHE_PREFIX = "module-cache-"
KEEP_UNUSED_SECONDS = 7 * 24 * 3600
CALLBACK_NAME = "responder_module_cache"
CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
ENV_VAR = "RESPONDER_MODULE_CACHE"


def _payload_files(runbook_dirs: Iterable[Path]) -> Iterator[Path]:
    """Files that can end up inside an AnsiballZ zip: modules and module_utils, shared or per role."""
    for root in runbook_dirs:
        tops = [root / "library", root / "module_utils"]
        if root.is_dir():
            for role in sorted(root.iterdir()):
                if role.is_dir():
                    tops += [role / "library", role / "module_utils"]
        for top in tops:
            if top.is_dir():
                for dirpath, dirnames, filenames in os.walk(top):
                    dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                    for name in sorted(filenames):
                        if not name.endswith((".pyc", ".pyo")):
                            yield Path(dirpath) / name


def cache_digest(runbook_dirs: Iterable[Path]) -> str:
    # Located, not imported: importing the ansible package would cost the run ~13 ms here.
    """A digest of everything a cached AnsiballZ payload depends on."""
    spec = importlib.util.find_spec("ansible")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("ansible-core is not installed")
    digest = hashlib.sha256()
    release = Path(spec.origin).resolve().parent / "release.py"
    digest.update(release.read_bytes())
    digest.update(str(release).encode())
    digest.update(repr(sys.version_info).encode())
    for path in _payload_files(runbook_dirs):
        digest.update(str(path.resolve()).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def module_cache_dir(local_tmp: Path, runbook_dirs: Iterable[Path]) -> Path:
    """The cache directory for this set of runbooks (created 0700); old unused ones are pruned."""
    path = local_tmp / (CACHE_PREFIX + cache_digest(runbook_dirs))
    if not path.is_dir():
        ensure_private_dir(path, local_tmp)
        _prune(local_tmp, keep=path)
    ensure_private_dir(path, local_tmp)
    os.utime(path)  # the mtime says when a run last used it, for pruning
    _drop_damaged_entries(path)
    return path


def _drop_damaged_entries(cache: Path) -> None:
    """Delete entries that are not a whole pickle, so that Ansible rebuilds them.

    Ansible writes an entry to a temp name and renames it, but without fsync: after a power cut
    the entry can be empty or cut short, and loading it would fail the task of every later run.
    A whole pickle starts with the PROTO opcode (0x80) and ends with STOP ("."); checking both
    bytes costs a few microseconds per entry and never unpickles anything.
    """
    for entry in cache.iterdir():
        if entry.name.endswith((".lock", "-part")) or not entry.is_file():
            continue
        try:
            with entry.open("rb") as handle:
                head = handle.read(1)
                handle.seek(-1, os.SEEK_END)
                tail = handle.read(1)
            whole = head == b"\x80" and tail == b"."
        except OSError:  # seek before the start: empty file
            whole = False
        if not whole:
            entry.unlink(missing_ok=True)


def _prune(local_tmp: Path, keep: Path) -> None:
    cutoff = time.time() - KEEP_UNUSED_SECONDS
    for entry in local_tmp.glob(CACHE_PREFIX + "*"):
        try:
            if entry != keep and not entry.is_symlink() and entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def ansible_env(cache: Path, inherited: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Environment for ansible-playbook: load the callback that links `cache` in, next to any
    callbacks the user already enables."""
    enabled = [
        name.strip() for name in inherited.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if name.strip()
    ]
    if CALLBACK_NAME not in enabled:
        enabled.append(CALLBACK_NAME)
    paths = [p for p in inherited.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep) if p]
    return {
        "ANSIBLE_CALLBACK_PLUGINS": os.pathsep.join([*paths, str(CALLBACK_DIR)]),
        "ANSIBLE_CALLBACKS_ENABLED": ",".join(enabled),
        ENV_VAR: str(cache),
    }
