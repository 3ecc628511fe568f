#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Logs and inspect JSON of a container, written to hashed, read-only evidence files on the host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_preserve_logs
short_description: Preserve container logs and inspect JSON as evidence
options:
  container: {description: Container name or ID prefix., type: str, required: true}
  evidence_root: {description: Absolute directory for evidence on this host., type: str, required: true}
  incident: {description: Incident ID., type: str, required: true}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import (
    Docker,
    DockerError,
    capture_logs_and_inspect,
    claim_for_run,
    evidence_dir,
    exit_cleanly_on_termination,
    summary,
)
from ansible.module_utils.responder_targets import run_for_targets


def act(module, docker, ref):
    """Act on one container (`ref`); ends with module.exit_json or module.fail_json."""
    try:
        data = docker.resolve(ref)
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    cid = data["Id"]
    facts = summary(data)
    output = dict(container_id=cid, container_name=facts["container_name"], log_driver=facts["log_driver"])
    claimed_from = claim_for_run(module, data)
    if claimed_from:
        output["claimed_from"] = claimed_from
    if module.check_mode:
        output["would_change"] = "write logs and inspect JSON of %s to %s/%s" % (
            cid[:12],
            module.params["evidence_root"],
            module.params["incident"],
        )
        output["evidence"] = []
        module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})

    try:
        warnings = output.setdefault("warnings", [])
        directory = evidence_dir(module.params["evidence_root"], module.params["incident"], warnings)
        evidence = capture_logs_and_inspect(
            docker,
            directory,
            cid,
            facts["log_driver"],
            warnings,
            tty=bool((data.get("Config") or {}).get("Tty")),
        )
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason, output=output)
    except OSError as exc:
        module.fail_json(
            msg="writing evidence failed: %s" % exc, reason="evidence_write_failed", output=output
        )

    output["evidence"] = evidence
    module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="raw", required=True),
            evidence_root=dict(type="str", required=True),
            incident=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    exit_cleanly_on_termination()
    run_for_targets(module, Docker(), act, workers=8)


if __name__ == "__main__":
    main()
