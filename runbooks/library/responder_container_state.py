#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Pause or unpause a container, idempotently, and verify."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_container_state
short_description: Pause or unpause a container
options:
  container: {description: Container name or ID prefix., type: str, required: true}
  state: {description: paused or running., type: str, required: true, choices: [paused, running]}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import Docker, DockerError, claim_for_run
from ansible.module_utils.responder_targets import run_for_targets


def act(module, docker, ref):
    """Act on one container (`ref`); ends with module.exit_json or module.fail_json."""
    want_paused = module.params["state"] == "paused"
    try:
        data = docker.resolve(ref)
        cid = data["Id"]
        state = data.get("State") or {}
        output = {"container_id": cid, "already_paused": bool(state.get("Paused"))}
        if want_paused:  # pausing acts on the container; unpausing is release's undo
            claimed_from = claim_for_run(module, data)
            if claimed_from:
                output["claimed_from"] = claimed_from
        if want_paused and not state.get("Running"):
            module.fail_json(msg="container %s is not running; nothing to pause" % cid[:12], output=output)
        change = bool(state.get("Paused")) != want_paused
        if module.check_mode:
            output["would_change"] = ("pause" if want_paused else "unpause") if change else "nothing"
            module.exit_json(changed=change, output=output, ansible_facts={"responder_output": output})
        if change:
            (docker.pause if want_paused else docker.unpause)(cid)
        paused = bool((docker.inspect(cid).get("State") or {}).get("Paused"))
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    if paused != want_paused:
        module.fail_json(
            msg="container %s is %spaused after the change" % (cid[:12], "" if paused else "not "),
            reason="verification_failed",
            output=output,
        )
    module.exit_json(changed=change, output=output, ansible_facts={"responder_output": output})


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="raw", required=True),
            state=dict(type="str", required=True, choices=["paused", "running"]),
        ),
        supports_check_mode=True,
    )
    run_for_targets(module, Docker(), act, workers=16)


if __name__ == "__main__":
    main()
