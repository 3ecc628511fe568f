#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Take stop_container's hold off a Swarm service (the undo of hold_orchestrator)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_restore_service
short_description: Scale a held Swarm service back
options:
  held_service: {description: stop_container's held_service output., type: dict, required: true}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import Docker, DockerError
from ansible.module_utils.responder_swarm import restore


def main():
    module = AnsibleModule(
        argument_spec=dict(held_service=dict(type="dict", required=True)), supports_check_mode=True
    )
    record = module.params["held_service"]
    output = {"service_id": record.get("service_id"), "service_name": record.get("service_name")}
    if module.check_mode:
        output["would_change"] = "take the hold (%s) off Swarm service %s" % (
            record.get("constraint"),
            record.get("service_name"),
        )
        module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})
    try:
        output.update(restore(Docker(), record))
    except DockerError as exc:
        module.fail_json(
            msg="restoring Swarm service %s failed: %s" % (record.get("service_name"), exc), output=output
        )
    module.exit_json(
        changed=bool(output.get("restored")), output=output, ansible_facts={"responder_output": output}
    )


if __name__ == "__main__":
    main()
