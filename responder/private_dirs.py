"""Directories responder owns, opened without following symbolic links.

Evidence, run artifacts, the timeline and the server's logs all live under the data directory.
If any directory on the way down (`evidence`, `runs/<incident>`, `evidence/quarantine`...) were a
symbolic link, evidence would be written wherever it points (`/`, another user's home) and
`evidence verify` would then vouch for it. So every directory below the data directory is walked
one name at a time with O_NOFOLLOW relative to its parent's descriptor, created 0700 where
missing, and checked: a real directory, owned by this user, writable by nobody else. Once that
holds along the whole walk, nobody else can swap a component for a link afterwards either.

The data directory's own parents belong to the operator (/var/lib, a home directory): they are
not walked. The data directory itself is held to the same rules as everything below it."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from responder.errors import ConfigError


class UnsafePath(ConfigError):
    """A directory responder would write under is a link, someone else's, or writable by others."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def ensure_private_dir(path: Path, owned_from: Path | None = None) -> Path:
    """Create or open `path` (0700) and every directory between `owned_from` (default: `path`
    itself) and it, never following a symbolic link; raise UnsafePath naming the first bad one."""
    root = Path(os.path.abspath(owned_from if owned_from is not None else path))
    target = Path(os.path.abspath(path))
    try:
        parts = target.relative_to(root).parts
    except ValueError:
        raise UnsafePath(f"{target} is not under {root}") from None
    fd = _open_root(root)
    current = root
    try:
        for name in parts:
            current = current / name
            child = _descend(fd, name, current)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return path


def _open_root(root: Path) -> int:
    if not os.path.lexists(root):
        os.makedirs(root.parent, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    return _checked(_open(lambda: os.open(root, _DIR_FLAGS), root), root)


def _descend(parent_fd: int, name: str, path: Path) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    return _checked(_open(lambda: os.open(name, _DIR_FLAGS, dir_fd=parent_fd), path), path)


def _open(opener: Callable[[], int], path: Path) -> int:
    try:
        return opener()
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and os.path.islink(path)):
            raise UnsafePath(
                f"{path} is a symbolic link (to {os.readlink(path)!r}); responder writes evidence and run "
                "data only into real directories it owns. Remove the link (and let responder create the "
                "directory), or point the data directory elsewhere"
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise UnsafePath(f"{path} is not a directory") from None
        raise UnsafePath(f"{path}: cannot open: {exc.strerror}") from None


def _checked(fd: int, path: Path) -> int:
    info = os.fstat(fd)
    problem = ""
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"is owned by uid {info.st_uid}, not by uid {os.geteuid()} that runs responder"
    elif info.st_mode & 0o022:
        problem = (
            f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"make it 0700 (chmod 700 {path})"
        )
    if problem:
        os.close(fd)
        raise UnsafePath(f"refusing to use {path}: it {problem}")
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o700)  # readable by others: evidence and artifacts are private, tighten it
    return fd


__all__ = ["UnsafePath", "ensure_private_dir"]
