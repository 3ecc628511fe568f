# -*- coding: utf-8 -*-
"""Holding the systemd unit that runs a Podman container (Quadlet, or `podman generate systemd`),
so that stopping the suspect does not bring up a fresh copy of it, and giving it back on release.

Such a container is the unit's: Podman labels it PODMAN_SYSTEMD_UNIT, the unit starts it with
`--rm --replace` and `Restart=` brings it back. Stopping the container through the runtime is
undone by systemd within seconds (a new container from the same image, not isolated) and the
old one is removed with it. So the unit is stopped instead, after a drop-in
(`<unit>.d/50-responder-hold.conf`, under /etc so that it outlasts a reboot) has given it a start
condition that never holds. Nothing starts the unit while the drop-in is there: not Restart=,
not a dependency, not a timer, not an operator's `systemctl start` (systemd reports the unmet
condition), not a reboot. `systemctl status` shows why. Release removes the drop-in, reloads, and
starts the unit again if it was running; it reports which container the unit now runs.

Only the unit's name travels from the container's labels, checked against systemd's unit name
grammar, and it is passed to systemctl as one argv element after `--`."""

from __future__ import absolute_import, division, print_function

import contextlib
import os
import re
import subprocess
import tempfile
import time

from ansible.module_utils.responder_docker import DockerError

__metaclass__ = type

UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,250}\.service$")
DROP_IN_ROOT = "/etc/systemd/system"
DROP_IN_NAME = "50-responder-hold.conf"
HOLD_MARK = "# responder hold:"


def check_unit(unit):
    if not UNIT_NAME.match(unit or ""):
        raise DockerError("%r is not a systemd service unit name" % (unit,), "rejected_input")
    return unit


def systemctl(*args, timeout=120):
    """systemctl with argv; the unit is always after `--`. Returns stdout."""
    try:
        proc = subprocess.run(
            ["systemctl", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise DockerError("systemctl not found on this host", "unsupported")
    except subprocess.TimeoutExpired:
        raise DockerError("systemctl %s did not finish within %ds" % (args[0], timeout), "timeout")
    if proc.returncode != 0:
        raise DockerError(
            "systemctl %s failed: %s"
            % (" ".join(args), proc.stderr.decode("utf-8", "replace").strip() or "exit %d" % proc.returncode)
        )
    return proc.stdout.decode("utf-8", "replace")


def unit_state(unit):
    """ActiveState, SubState, UnitFileState, FragmentPath, Restart, DropInPaths of the unit."""
    out = systemctl(
        "show", "-p", "ActiveState,SubState,UnitFileState,FragmentPath,Restart,DropInPaths,LoadState",
        "--", check_unit(unit),
    )  # fmt: skip
    state = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        state[key] = value
    return state


def drop_in_path(unit):
    return os.path.join(DROP_IN_ROOT, check_unit(unit) + ".d", DROP_IN_NAME)


def _write_drop_in(unit, incident):
    path = drop_in_path(unit)
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    if os.path.islink(directory) or os.path.islink(path):
        raise DockerError("%s is a link; not writing a hold through it" % path, "unsafe_path")
    safe_incident = re.sub(r"[^A-Za-z0-9_-]", "_", incident or "manual")
    text = (
        "%s %s\n"
        "# The unit ran a container responder contained. Nothing starts it while this file is here.\n"
        "# `responder release %s` removes it; by hand: delete this file, then `systemctl daemon-reload`.\n"
        "[Unit]\n"
        "ConditionPathExists=/run/responder-hold/%s/release-to-start\n"
        % (HOLD_MARK, safe_incident, safe_incident, safe_incident)
    )
    fd, partial = tempfile.mkstemp(prefix=".responder-", dir=directory)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(partial, path)
    return path


def _wait_inactive(unit, wait):
    deadline = time.time() + wait
    state = unit_state(unit)
    while state.get("ActiveState") not in ("inactive", "failed") and time.time() < deadline:
        time.sleep(0.5)
        state = unit_state(unit)
    return state


def hold(unit, incident, container_name, wait=90.0):
    """Give the unit a start condition that never holds, stop it, and verify it is down; the
    record release needs to give it back."""
    before = unit_state(unit)
    if before.get("LoadState") != "loaded":
        raise DockerError(
            "systemd unit %s (named by the container's PODMAN_SYSTEMD_UNIT label) is %s on this host"
            % (unit, before.get("LoadState") or "unknown"),
            "target_gone",
        )
    path = _write_drop_in(unit, incident)
    systemctl("daemon-reload")
    systemctl("stop", "--", unit, timeout=int(wait) + 30)
    after = _wait_inactive(unit, wait)
    held = path in (after.get("DropInPaths") or "").split()
    record = {
        "kind": "systemd",
        "service_name": unit,
        "service_id": unit,
        "container_name": container_name,
        "drop_in": path,
        "was_active": before.get("ActiveState") == "active",
        "unit_file_state": before.get("UnitFileState"),
        "restart": before.get("Restart"),
        "active_state": after.get("ActiveState"),
        "verified": held and after.get("ActiveState") in ("inactive", "failed"),
    }
    record["summary"] = (
        "systemd unit %s stopped and held (start condition in %s): systemd starts no replacement "
        "of container %s, not on Restart=%s, not at boot, not on request, until release"
        % (unit, path, container_name, before.get("Restart") or "?")
    )
    return record


def restore(record):
    """Remove responder's drop-in, reload, and start the unit again if it was running."""
    unit = check_unit(str(record.get("service_name") or ""))
    path = drop_in_path(unit)
    if str(record.get("drop_in") or path) != path:
        raise DockerError(
            "recorded hold %r is not one responder writes" % record.get("drop_in"), "rejected_input"
        )
    try:
        with open(path) as handle:
            ours = handle.read().startswith(HOLD_MARK)
    except (IOError, OSError):
        ours = False
    if not ours:
        return {"restored": False, "note": "the hold was already taken off; the unit is left as it is"}
    os.unlink(path)
    with contextlib.suppress(OSError):  # other drop-ins live there
        os.rmdir(os.path.dirname(path))
    systemctl("daemon-reload")
    if not record.get("was_active"):
        return {"restored": True, "started": False, "note": "the unit was not running before; left stopped"}
    systemctl("start", "--", unit, timeout=150)
    state = unit_state(unit)
    return {
        "restored": True,
        "started": state.get("ActiveState") == "active",
        "active_state": state.get("ActiveState"),
    }
