#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Resolve a fleet incident's selectors to this host's containers (full IDs); changes nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_resolve_targets
short_description: Resolve container references, label and image selectors to full container IDs
options:
  selectors:
    description: Container names or ID prefixes, label:KEY=VALUE, image:REF.
    type: list
    elements: str
    required: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import Docker, DockerError
from ansible.module_utils.responder_targets import resolve_selectors


def main():
    module = AnsibleModule(
        argument_spec=dict(selectors=dict(type="list", elements="str", required=True)),
        supports_check_mode=True,
    )
    try:
        found, unmatched = resolve_selectors(Docker(), module.params["selectors"])
    except DockerError as exc:
        module.fail_json(msg="could not resolve the targets: %s" % exc, reason=exc.reason)
    targets = [dict(entry, container_id=cid) for cid, entry in found.items()]
    output = {"targets": targets, "count": len(targets), "unmatched": unmatched}
    module.exit_json(
        changed=False,
        output=output,
        ansible_facts={"responder_output": output, "responder_targets": list(found)},
    )


if __name__ == "__main__":
    main()
