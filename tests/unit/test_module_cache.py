"""The cross-run AnsiballZ cache: its key, its pruning, and the callback's refusal to use a
directory that is not private."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

from responder.execution import module_cache
from responder.execution.callback_plugins.responder_module_cache import link_cache, private_directory


def _runbooks(root: Path) -> Path:
    (root / "module_utils").mkdir(parents=True)
    (root / "module_utils" / "shared.py").write_text("X = 1\n")
    (root / "role_a" / "library").mkdir(parents=True)
    (root / "role_a" / "library" / "mod_a.py").write_text("print('a')\n")
    (root / "role_a" / "tasks").mkdir()
    (root / "role_a" / "tasks" / "main.yml").write_text("- debug: {msg: a}\n")
    return root


def test_digest_follows_module_and_module_utils_content_only(tmp_path: Path) -> None:
    root = _runbooks(tmp_path / "rb")
    first = module_cache.cache_digest([root])
    assert module_cache.cache_digest([root]) == first
    (root / "role_a" / "tasks" / "main.yml").write_text("- debug: {msg: b}\n")  # not in any zip
    (root / "role_a" / "library" / "__pycache__").mkdir()
    (root / "role_a" / "library" / "__pycache__" / "mod_a.cpython-311.pyc").write_bytes(b"\0")
    assert module_cache.cache_digest([root]) == first
    (root / "role_a" / "library" / "mod_a.py").write_text("print('b')\n")
    second = module_cache.cache_digest([root])
    assert second != first
    (root / "module_utils" / "shared.py").write_text("X = 2\n")
    third = module_cache.cache_digest([root])
    assert third not in (first, second)
    (root / "role_b" / "module_utils").mkdir(parents=True)
    (root / "role_b" / "module_utils" / "helper.py").write_text("")
    assert module_cache.cache_digest([root]) != third


def test_cache_dir_is_private_and_old_unused_ones_are_pruned(tmp_path: Path) -> None:
    root = _runbooks(tmp_path / "rb")
    local = tmp_path / "local"
    local.mkdir()
    stale = local / (module_cache.CACHE_PREFIX + "0" * 24)
    recent = local / (module_cache.CACHE_PREFIX + "1" * 24)
    stale.mkdir()
    recent.mkdir()
    week_ago = time.time() - module_cache.KEEP_UNUSED_SECONDS - 60
    os.utime(stale, (week_ago, week_ago))
    path = module_cache.module_cache_dir(local, [root])
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700
    assert not stale.exists() and recent.exists()
    path.chmod(0o755)
    assert module_cache.module_cache_dir(local, [root]) == path
    assert (path.stat().st_mode & 0o777) == 0o700


def test_damaged_entries_are_dropped_whole_ones_kept(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    whole = pickle.dumps({"zip_data": b"x" * 100})
    (cache / "ansible.legacy.a-ZIP_DEFLATED-none").write_bytes(whole)
    (cache / "ansible.legacy.b-ZIP_DEFLATED-none").write_bytes(b"")
    (cache / "ansible.legacy.c-ZIP_DEFLATED-none").write_bytes(whole[:50])
    (cache / "ansible.legacy.a-ZIP_DEFLATED-none.lock").write_bytes(b"")
    module_cache._drop_damaged_entries(cache)
    assert sorted(p.name for p in cache.iterdir()) == [
        "ansible.legacy.a-ZIP_DEFLATED-none",
        "ansible.legacy.a-ZIP_DEFLATED-none.lock",
    ]


def test_ansible_env_keeps_the_users_callbacks() -> None:
    env = module_cache.ansible_env(
        Path("/data/c"),
        {"ANSIBLE_CALLBACKS_ENABLED": "timer, profile_roles", "ANSIBLE_CALLBACK_PLUGINS": "/mine"},
    )
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == "timer,profile_roles,responder_module_cache"
    assert env["ANSIBLE_CALLBACK_PLUGINS"].split(os.pathsep) == ["/mine", str(module_cache.CALLBACK_DIR)]
    assert env[module_cache.ENV_VAR] == "/data/c"
    assert module_cache.ansible_env(Path("/c"), {})["ANSIBLE_CALLBACKS_ENABLED"] == "responder_module_cache"


def test_callback_links_only_a_private_absolute_directory(tmp_path: Path) -> None:
    local = tmp_path / "ansible-local-1"
    local.mkdir(mode=0o700)
    target = tmp_path / "cache"
    target.mkdir(mode=0o700)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    alias = tmp_path / "alias"
    alias.symlink_to(target)
    assert private_directory(str(target)) and not private_directory(str(open_dir))
    assert not private_directory(str(alias)) and not private_directory(str(tmp_path / "missing"))
    assert not link_cache(str(local), str(open_dir))
    assert not link_cache(str(local), str(alias))
    assert not link_cache(str(local), "relative/cache")
    assert not (local / "ansiballz_cache").exists()
    assert link_cache(str(local), str(target))
    assert (local / "ansiballz_cache").resolve() == target
    assert not link_cache(str(local), str(target))  # already there: left as it is
    if os.geteuid() == 0:
        os.chown(target, 4242, -1)
        assert not private_directory(str(target))
