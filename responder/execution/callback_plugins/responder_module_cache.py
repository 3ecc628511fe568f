"""Ansible callback plugin: point this ansible-playbook's AnsiballZ cache at responder's own.

Loaded by the ansible-playbook that responder starts (never by the responder process itself).
Its only work happens when Ansible loads callbacks, before the first task: it links
`<Ansible's per-process temp dir>/ansiballz_cache` to the directory named in
RESPONDER_MODULE_CACHE, so a module zipped by one incident's run is reused by the next. See
responder/execution/module_cache.py for how that directory is keyed and why.

Anything unexpected (no variable, a directory that is not private, a cache already created) and
the plugin does nothing: Ansible then builds its modules as usual, only slower.
"""

from __future__ import annotations

import os
import stat

from ansible import constants as C
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: responder_module_cache
    type: aggregate
    short_description: reuse responder's AnsiballZ module cache across runs
    description:
      - Links the per-process AnsiballZ cache to the private directory in RESPONDER_MODULE_CACHE.
"""


def private_directory(path: str) -> bool:
    """A real directory (not a symlink), ours, closed to group and others."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )


def link_cache(local_tmp: str, target: str) -> bool:
    """Make `local_tmp`/ansiballz_cache a link to `target`; True when it now is one."""
    link = os.path.join(local_tmp, "ansiballz_cache")
    if not os.path.isabs(target) or not private_directory(target) or not private_directory(local_tmp):
        return False
    try:
        os.symlink(target, link)
    except OSError:  # already there: Ansible built a module before callbacks loaded
        return False
    return True


class CallbackModule(CallbackBase):  # type: ignore[misc]
    """Links Ansible's AnsiballZ cache to responder's content-keyed cache directory."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "responder_module_cache"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):  # type: ignore[no-untyped-def]
        super().__init__(display)
        target = os.environ.get("RESPONDER_MODULE_CACHE")
        if target:
            link_cache(str(C.DEFAULT_LOCAL_TMP), target)
