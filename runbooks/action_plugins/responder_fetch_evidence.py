# -*- coding: utf-8 -*-
"""Fetch a step's evidence files to the controller in one task.

On the local connection a file is moved rather than copied where it can be (see `ours`): host
and controller are one machine, and one copy of a large export is enough. Within one
filesystem that is a rename; across two, a copy and then the host file's removal.

ansible.builtin.fetch costs a module run per file (and re-reads each file on the target for a
SHA-1 the engine does not use: it re-hashes with SHA-256 itself). This action plugin copies every
file over the task's existing connection; names are checked again here so that nothing is written
outside the destination directory.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import fcntl
import os
import re
import stat

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

__metaclass__ = type

NAME = re.compile(r"^[0-9a-f]{12}-[0-9TZ]+-[a-z0-9_]+\.[a-z.]+$")
STEP = 16 * 1024 * 1024
_WAIT_WRITE_WAIT = 1 | 2 | 4  # sync_file_range: WAIT_BEFORE | WRITE | WAIT_AFTER
_sync_file_range = None


def _sync_range(fd, offset, length, flags):
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = function
        except (OSError, AttributeError):
            _sync_file_range = False
    return bool(_sync_file_range) and _sync_file_range(fd, offset, length, flags) == 0


def _drop(fd, offset, length):
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _copy_range(source, target, offset, count):
    """Up to `count` bytes at `offset`, in the kernel when it can; returns how many were copied."""
    done = 0
    while done < count:
        try:
            n = os.copy_file_range(source, target, count - done, offset + done, offset + done)
        except (AttributeError, OSError):
            data = os.pread(source, min(count - done, 1024 * 1024), offset + done)
            n = os.pwrite(target, data, offset + done) if data else 0
        if not n:
            break
        done += n
    return done


def copy_write_behind(source_path, target_fd):
    """The local connection's fetch, done here: the same bytes, copied 16 MiB at a time, each range
    waited for and dropped from the page cache (both copies) while the next one is copied, like
    the module wrote it. A multi-gigabyte export then neither fills the controller's page cache
    nor pays for fresh pages at every megabyte."""
    source = os.open(source_path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        offset, behind = 0, None
        while True:
            n = _copy_range(source, target_fd, offset, STEP)
            if not n:
                break
            _sync_range(target_fd, offset, n, 2)  # start writing it
            if behind is not None and _sync_range(target_fd, behind[0], behind[1], _WAIT_WRITE_WAIT):
                _drop(target_fd, behind[0], behind[1])
                _drop(source, behind[0], behind[1])
            behind = (offset, n)
            offset += n
        if offset != os.fstat(source).st_size:
            raise AnsibleError("copy of %s stopped at %d bytes" % (source_path, offset))
    finally:
        os.close(source)


def ours(source_path):
    """On the local connection the host and the controller are one machine, and a copy would
    leave two full copies of a multi-gigabyte export there. The host's file may be given up
    once the controller has it when it is a regular file of ours in a directory we may change
    (not, say, a root-owned file written with become)."""
    try:
        info = os.lstat(source_path)
        return (
            stat.S_ISREG(info.st_mode)
            and info.st_uid == os.geteuid()
            and os.access(os.path.dirname(source_path), os.W_OK | os.X_OK)
        )
    except OSError:
        return False


def same_filesystem(source_path, root):
    """A move is a rename (no bytes copied) only within one filesystem."""
    try:
        return os.lstat(source_path).st_dev == os.stat(root).st_dev
    except OSError:
        return False


def fsync_dir(path):
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def move(source_path, target):
    """Give the host's file its controller name: link (never replaces an existing name), then
    drop the host name. One inode throughout, so no moment holds two copies."""
    os.link(source_path, target, follow_symlinks=False)
    try:
        os.unlink(source_path)
    except OSError:
        os.unlink(target)
        raise
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(target, 0o400)
    fsync_dir(os.path.dirname(source_path))


def private_host_dir(dest):
    """<evidence>/<incident>/<host>: the engine has walked <evidence>/<incident> without following
    links; the host's directory is created here and held to the same rules (a real directory,
    ours, writable by nobody else), so a planted link never sends evidence elsewhere."""
    parent = os.path.dirname(dest)
    if os.path.islink(parent) or not os.path.isdir(parent):
        raise AnsibleError("refusing to fetch into %s: %s is not a real directory" % (dest, parent))
    with contextlib.suppress(FileExistsError):
        os.mkdir(dest, 0o700)
    info = os.lstat(dest)
    if stat.S_ISLNK(info.st_mode):
        raise AnsibleError("refusing to fetch into %s: it is a symbolic link" % dest)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise AnsibleError(
            "refusing to fetch into %s: not a directory owned by uid %d and writable only by it"
            % (dest, os.geteuid())
        )
    return dest


class ActionModule(ActionBase):
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        files = self._task.args.get("files") or []
        dest = self._task.args.get("dest")
        if not dest or not os.path.isabs(dest):
            raise AnsibleError("responder_fetch_evidence needs an absolute dest")
        if self._play_context.check_mode:
            result.update(changed=False, skipped=True, msg="check mode: nothing fetched")
            return result
        root = os.path.realpath(private_host_dir(dest))
        local = getattr(self._connection, "transport", None) == "local"
        fetched, moved = [], []
        for item in files:
            name = str(item.get("name", ""))
            source = str(item.get("path", ""))
            if not NAME.match(name) or os.path.basename(source) != name:
                raise AnsibleError("refusing to fetch %r: not a generated evidence name" % name)
            target = os.path.join(root, name)
            if os.path.dirname(os.path.realpath(target)) != root or os.path.lexists(target):
                raise AnsibleError("refusing to write %s: exists or escapes the evidence directory" % target)
            give_up = local and ours(source)
            if give_up and same_filesystem(source, root):
                move(source, target)
                fetched.append(name)
                moved.append(name)
                continue
            # Copied as <name>.partial under an exclusive lock, then renamed: a cut-short fetch never
            # leaves a truncated file under an evidence name, and a later run can tell a stray
            # .partial (unlocked) from one still being written.
            partial = target + ".partial"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if local:
                    copy_write_behind(source, fd)
                else:
                    self._connection.fetch_file(source, partial)
                os.fsync(fd)  # same inode: the copy is on disk before the engine records it
                if os.fstat(fd).st_size >= STEP:
                    _drop(fd, 0, 0)
                os.chmod(partial, 0o400)
                os.rename(partial, target)
                if give_up:  # another filesystem: copied, and now the host copy goes
                    fsync_dir(root)
                    with contextlib.suppress(OSError):  # if it cannot, two copies, as over SSH
                        os.unlink(source)
                        fsync_dir(os.path.dirname(source))
                        moved.append(name)
            except BaseException:
                if os.path.lexists(partial):
                    os.unlink(partial)
                raise
            finally:
                os.close(fd)
            fetched.append(name)
        if fetched:
            fsync_dir(root)  # and so are the renames
        # moved: on the local connection these now exist only on the controller (one copy)
        result.update(changed=bool(fetched), fetched=fetched, moved=moved)
        return result
