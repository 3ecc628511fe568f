#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Take stop_container's hold off what owned the container: a Swarm service, or the systemd unit
that runs a Podman container (the undo of hold_orchestrator, and of a unit's stop)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_restore_service
short_description: Give a held Swarm service or systemd unit back
options:
  held_service: {description: stop_container's held_service output., type: dict, required: true}
"""

import json
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import Docker, DockerError
from ansible.module_utils.responder_swarm import restore as restore_swarm
from ansible.module_utils.responder_systemd import restore as restore_unit


def unit_containers(docker, unit):
    """What the unit runs now: (short ID, name, image) of its running containers."""
    filters = json.dumps({"label": ["PODMAN_SYSTEMD_UNIT=%s" % unit], "status": ["running"]})
    found = docker.api_get("/containers/json?filters=%s" % quote(filters)) if docker.use_api else []
    return [
        {
            "container_id": c.get("Id"),
            "name": ((c.get("Names") or ["?"])[0]).lstrip("/"),
            "image": c.get("Image"),
        }
        for c in found or []
    ]


def describe(record):
    if record.get("kind") == "systemd":
        return "systemd unit %s" % record.get("service_name")
    return "Swarm service %s" % record.get("service_name")


def main():
    module = AnsibleModule(
        argument_spec=dict(held_service=dict(type="dict", required=True)), supports_check_mode=True
    )
    record = module.params["held_service"]
    systemd = record.get("kind") == "systemd"
    output = {
        "kind": "systemd" if systemd else "swarm",
        "service_id": record.get("service_id"),
        "service_name": record.get("service_name"),
    }
    if module.check_mode:
        output["would_change"] = "remove the hold (%s) from %s%s" % (
            record.get("drop_in") if systemd else record.get("constraint"),
            describe(record),
            ", and start it again" if systemd and record.get("was_active") else "",
        )
        module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})
    docker = Docker()
    try:
        if systemd:
            output.update(restore_unit(record))
            if output.get("started"):
                running = unit_containers(docker, str(record.get("service_name")))
                output["restored_unit"] = {
                    "unit": record.get("service_name"),
                    "now_running": running,
                    "summary": "systemd unit %s started again; it now runs %s, a new container (the suspect "
                    "container %s is not restarted)"
                    % (
                        record.get("service_name"),
                        ", ".join(
                            "%s (%s) from %s" % (c["name"], str(c["container_id"])[:12], c["image"])
                            for c in running
                        )
                        or "no container yet",
                        record.get("container_name"),
                    ),
                }
        else:
            output.update(restore_swarm(docker, record))
    except DockerError as exc:
        module.fail_json(msg="restoring %s failed: %s" % (describe(record), exc), output=output)
    module.exit_json(
        changed=bool(output.get("restored")), output=output, ansible_facts={"responder_output": output}
    )


if __name__ == "__main__":
    main()
