#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Rotate secrets: swarm secrets (versioned), Podman secrets, secret files, or a site command.
Values never leave this process except to where they belong."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_rotate_secrets
short_description: Rotate secrets without ever reporting a value
options:
  backend: {description: swarm, podman, file or command., type: str, required: true, choices: [swarm, podman, file, command]}
  secrets: {description: Swarm or Podman secret names., type: list, elements: str, default: []}
  files: {description: Secret file paths., type: list, elements: str, default: []}
  consumers: {description: Containers to restart after file rotation., type: list, elements: str, default: []}
  command: {description: Rotation command argv., type: list, elements: str, default: []}
  name: {description: Name of the secret for the command backend., type: str, default: secret}
  length: {description: Random bytes per value., type: int, default: 32}
  incident: {description: Incident ID., type: str, required: true}
"""

import json
import os
import re
import secrets
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import (
    INCIDENT_ID,
    Docker,
    DockerError,
    RejectedInput,
    compact_utc,
    utc_now,
)

SECRET_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
VERSIONED = re.compile(r"^(?P<base>.+?)_v(?P<version>[0-9]+)$")


def new_value(length):
    return secrets.token_urlsafe(length)


def run_with_stdin(argv, value, timeout=120):
    """argv, no shell; the value only ever travels on stdin."""
    proc = subprocess.run(
        argv,
        input=value.encode("utf-8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def services_using(docker, secret_id):
    users = []
    ids = docker.run(["service", "ls", "-q"]).split()
    if not ids:
        return users
    for service in json.loads(docker.run(["service", "inspect", "--", *ids])):
        spec = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        for ref in spec.get("Secrets") or []:
            if ref.get("SecretID") == secret_id:
                users.append(
                    {"service": service["ID"], "name": (service.get("Spec") or {}).get("Name"), "ref": ref}
                )
    return users


def rotate_swarm(docker, names, length, incident):
    rotated = []
    for name in names:
        if not SECRET_NAME.match(name):
            raise RejectedInput("%r is not a Docker secret name" % name)
        match = VERSIONED.match(name)
        base, version = (match.group("base"), int(match.group("version"))) if match else (name, 1)
        # A retried step (the daemon dropped, a service update timed out) finds the version this
        # incident already created from this secret, and finishes moving services onto it rather
        # than leaving that one behind and making another.
        made_here = docker.run(
            [
                "secret",
                "ls",
                "--filter",
                "label=responder.incident=%s" % incident,
                "--filter",
                "label=responder.rotated_from=%s" % name,
                "--format",
                "{{.Name}}",
            ]
        ).split()
        made_here = [n for n in made_here if n.startswith(base + "_v") and n[len(base) + 2 :].isdigit()]
        try:
            old = json.loads(docker.run(["secret", "inspect", "--", name]))[0]
        except DockerError as exc:
            if made_here:  # an earlier attempt got as far as removing it: nothing is left to do
                newest = max(made_here, key=lambda n: int(n[len(base) + 2 :]))
                rotated.append(
                    {
                        "backend": "swarm",
                        "name": name,
                        "new_name": newest,
                        "version": int(newest[len(base) + 2 :]),
                        "services_updated": [],
                        "old_removed": True,
                        "rotated_at": utc_now(),
                        "resumed": True,
                    }
                )
                continue
            raise DockerError("secret %s: %s" % (name, exc), "target_gone")
        if made_here:
            new_name = max(made_here, key=lambda n: int(n[len(base) + 2 :]))
            version = int(new_name[len(base) + 2 :])
        else:
            existing = set(docker.run(["secret", "ls", "--format", "{{.Name}}"]).split())
            version += 1
            while "%s_v%d" % (base, version) in existing:
                version += 1
            new_name = "%s_v%d" % (base, version)
            rc, err = run_with_stdin(
                [
                    docker.binary,
                    "secret",
                    "create",
                    "--label",
                    "responder.incident=%s" % incident,
                    "--label",
                    "responder.rotated_from=%s" % name,
                    "--",
                    new_name,
                    "-",
                ],
                new_value(length),
            )
            if rc != 0:
                raise DockerError("creating %s failed: %s" % (new_name, err.strip()))
        updated = []
        for user in services_using(docker, old["ID"]):
            ref = user["ref"]
            target = ref.get("File") or {}
            spec = "source=%s,target=%s,uid=%s,gid=%s,mode=%s" % (
                new_name,
                target.get("Name", name),
                target.get("UID", "0"),
                target.get("GID", "0"),
                oct(target.get("Mode", 0o444)).replace("0o", "0"),
            )
            # Each update redeploys the service's tasks: new containers with the new secret mounted.
            docker.run(
                [
                    "service",
                    "update",
                    "--detach=false",
                    "--quiet",
                    "--secret-rm",
                    name,
                    "--secret-add",
                    spec,
                    "--",
                    user["service"],
                ],
                timeout=300,
            )
            updated.append({"service": user["name"], "target": target.get("Name", name)})
        docker.run(["secret", "rm", "--", name])
        still = services_using(docker, old["ID"])
        if still:
            raise DockerError("services still reference %s: %s" % (name, [u["name"] for u in still]))
        rotated.append(
            {
                "backend": "swarm",
                "name": name,
                "new_name": new_name,
                "version": version,
                "services_updated": updated,
                "old_removed": True,
                "rotated_at": utc_now(),
                "resumed": bool(made_here),
            }
        )
    return rotated


def podman_consumers(podman, secret_id):
    """Containers created with the secret (Podman copies its value in at creation): name, ID,
    state, and the systemd unit that runs it, if one does."""
    ids = podman.run(["ps", "-a", "-q", "--no-trunc"]).split()
    if not ids:
        return []
    users = []
    for data in json.loads(podman.run(["container", "inspect", "--", *ids])):
        refs = (data.get("Config") or {}).get("Secrets") or []
        if any(ref.get("ID") == secret_id for ref in refs):
            labels = (data.get("Config") or {}).get("Labels") or {}
            users.append(
                {
                    "container_id": data.get("Id"),
                    "name": (data.get("Name") or "").lstrip("/"),
                    "status": (data.get("State") or {}).get("Status"),
                    "unit": labels.get("PODMAN_SYSTEMD_UNIT") or "",
                }
            )
    return users


def rotate_podman(podman, names, length, incident):
    """A new value under the same name: Podman containers name their secrets, and one created
    (or recreated by its systemd unit) after this gets the new value. Podman 4 has no
    `secret create --replace`, so the old secret is removed first and the new one created at
    once; its labels say which incident rotated it from which secret ID, so a retried step that
    finds it does not rotate twice. A container created before keeps its copy of the old value:
    each is listed, and the step warns until they are recreated."""
    rotated = []
    warnings = []
    for name in names:
        if not SECRET_NAME.match(name):
            raise RejectedInput("%r is not a Podman secret name" % name)
        try:
            old = json.loads(podman.run(["secret", "inspect", "--", name]))[0]
        except DockerError as exc:
            raise DockerError("secret %s: %s" % (name, exc), "target_gone")
        labels = (old.get("Spec") or {}).get("Labels") or {}
        resumed = labels.get("responder.incident") == incident
        rotated_from = labels.get("responder.rotated_from") if resumed else old["ID"]
        if not resumed:
            podman.run(["secret", "rm", "--", name])
            rc, err = run_with_stdin(
                [
                    podman.binary,
                    "secret",
                    "create",
                    "--label",
                    "responder.incident=%s" % incident,
                    "--label",
                    "responder.rotated_from=%s" % old["ID"],
                    "--",
                    name,
                    "-",
                ],
                new_value(length),
            )
            if rc != 0:
                raise DockerError(
                    "secret %s was removed but its new value could not be created (%s): create it by hand"
                    % (name, err.strip()),
                    "rotation_failed",
                )
        new = json.loads(podman.run(["secret", "inspect", "--", name]))[0]
        stale = [u for u in podman_consumers(podman, rotated_from) if u["container_id"]]
        live = [u for u in stale if u["status"] in ("running", "paused", "created")]
        if live:
            warnings.append(
                "Podman secret %s: %s still hold the old value (Podman copies a secret in when a container "
                "is created); recreate them%s"
                % (
                    name,
                    ", ".join("%s (%s)" % (u["name"], u["container_id"][:12]) for u in live),
                    " (for a systemd unit: systemctl restart it)" if any(u["unit"] for u in live) else "",
                )
            )
        rotated.append(
            {
                "backend": "podman",
                "name": name,
                "version": compact_utc(),
                "new_id": new.get("ID"),
                "old_id": rotated_from,
                "old_removed": True,
                "containers_with_old_value": stale,
                "rotated_at": utc_now(),
                "resumed": resumed,
            }
        )
    return rotated, warnings


def rotate_files(docker, paths, consumers, length):
    rotated = []
    for path in paths:
        if not os.path.isabs(path) or os.path.islink(path) or not os.path.isfile(path):
            raise RejectedInput("%r is not an absolute path to a regular file" % path)
        info = os.stat(path)
        directory = os.path.dirname(path)
        fd, partial = tempfile.mkstemp(prefix=".responder-", dir=directory)
        closed = False
        try:
            os.write(fd, new_value(length).encode("utf-8"))
            os.fchown(fd, info.st_uid, info.st_gid)
            os.fchmod(fd, info.st_mode & 0o7777)
            os.fsync(fd)
            os.close(fd)
            closed = True
            os.rename(partial, path)
        except BaseException:
            if not closed:
                os.close(fd)
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        rotated.append(
            {
                "backend": "file",
                "name": path,
                "version": compact_utc(),
                "owner": info.st_uid,
                "group": info.st_gid,
                "mode": oct(info.st_mode & 0o7777),
                "rotated_at": utc_now(),
            }
        )
    restarted = []
    for ref in consumers:
        data = docker.resolve(ref)
        docker.run(["restart", "--", data["Id"]], timeout=120)
        restarted.append({"container_id": data["Id"], "name": (data.get("Name") or "").lstrip("/")})
    for item in rotated:
        item["consumers_restarted"] = restarted
    return rotated


def rotate_command(argv, name, length):
    if not argv or not os.path.isabs(argv[0]):
        raise RejectedInput("command must be an argv list starting with an absolute path")
    rc, _ = run_with_stdin(argv, new_value(length))
    if rc != 0:
        # stderr is not reported: a rotation tool may echo what it was given
        raise DockerError("rotation command %s exited %d" % (argv[0], rc), "rotation_failed")
    return [
        {
            "backend": "command",
            "name": name,
            "version": compact_utc(),
            "command": argv[0],
            "rotated_at": utc_now(),
        }
    ]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backend=dict(type="str", required=True, choices=["swarm", "podman", "file", "command"]),
            secrets=dict(type="list", elements="str", default=[]),
            files=dict(type="list", elements="str", default=[]),
            consumers=dict(type="list", elements="str", default=[]),
            command=dict(type="list", elements="str", default=[]),
            name=dict(type="str", default="secret"),
            length=dict(type="int", default=32),
            incident=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not INCIDENT_ID.match(p["incident"]):
        module.fail_json(msg="malformed incident id")
    if not 16 <= p["length"] <= 512:
        module.fail_json(msg="length must be between 16 and 512 bytes")
    needs = {"swarm": "secrets", "podman": "secrets", "file": "files", "command": "command"}[p["backend"]]
    wanted = p[needs]
    if not wanted:
        module.fail_json(msg="backend %s needs %s" % (p["backend"], needs))
    docker = Docker("podman") if p["backend"] == "podman" else Docker()
    output = {"backend": p["backend"], "rotated": []}
    if module.check_mode:
        output["would_change"] = "rotate %s secret(s): %s" % (
            p["backend"],
            ", ".join(wanted if p["backend"] != "command" else [p["name"]]),
        )
        module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})
    try:
        if p["backend"] == "swarm":
            output["rotated"] = rotate_swarm(docker, p["secrets"], p["length"], p["incident"])
        elif p["backend"] == "podman":
            output["rotated"], warnings = rotate_podman(docker, p["secrets"], p["length"], p["incident"])
            if warnings:
                output["warnings"] = warnings
        elif p["backend"] == "file":
            output["rotated"] = rotate_files(docker, p["files"], p["consumers"], p["length"])
        else:
            output["rotated"] = rotate_command(p["command"], p["name"], p["length"])
    except (DockerError, OSError, subprocess.TimeoutExpired) as exc:
        module.fail_json(
            msg="rotation incomplete: %s" % exc,
            reason=getattr(exc, "reason", "rotation_failed"),
            output=output,
        )
    module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})


if __name__ == "__main__":
    main()
