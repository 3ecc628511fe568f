# -*- coding: utf-8 -*-
"""Fetch a step's evidence files to the controller in one task.

ansible.builtin.fetch costs a module run per file (and re-reads each file on the target for a
SHA-1 the engine does not use: it re-hashes with SHA-256 itself). This action plugin copies every
file over the task's existing connection; names are checked again here so that nothing is written
outside the destination directory.
"""

from __future__ import absolute_import, division, print_function

import fcntl
import os
import re

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

__metaclass__ = type

NAME = re.compile(r"^[0-9a-f]{12}-[0-9TZ]+-[a-z0-9_]+\.[a-z.]+$")


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
        os.makedirs(dest, mode=0o700, exist_ok=True)
        root = os.path.realpath(dest)
        fetched = []
        for item in files:
            name = str(item.get("name", ""))
            source = str(item.get("path", ""))
            if not NAME.match(name) or os.path.basename(source) != name:
                raise AnsibleError("refusing to fetch %r: not a generated evidence name" % name)
            target = os.path.join(root, name)
            if os.path.dirname(os.path.realpath(target)) != root or os.path.lexists(target):
                raise AnsibleError("refusing to write %s: exists or escapes the evidence directory" % target)
            # Copied as <name>.partial under an exclusive lock, then renamed: a cut-short fetch never
            # leaves a truncated file under an evidence name, and a later run can tell a stray
            # .partial (unlocked) from one still being written.
            partial = target + ".partial"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._connection.fetch_file(source, partial)
                os.fsync(fd)  # same inode: the copy is on disk before the engine records it
                os.chmod(partial, 0o400)
                os.rename(partial, target)
            except BaseException:
                if os.path.lexists(partial):
                    os.unlink(partial)
                raise
            finally:
                os.close(fd)
            fetched.append(name)
        if fetched:
            dir_fd = os.open(root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # and so are the renames
            finally:
                os.close(dir_fd)
        result.update(changed=bool(fetched), fetched=fetched)
        return result
