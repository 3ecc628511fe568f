#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Reconnect a container to the networks isolate_network recorded."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_reconnect_networks
short_description: Undo network isolation
options:
  container: {description: Container ID., type: str, required: true}
  networks: {description: Recorded networks., type: list, elements: dict, required: true}
  firewall: {description: The firewall record of a cgroup-matched isolation., type: dict, default: {}}
"""

import ipaddress
import os
import re

from ansible.module_utils import responder_firewall as firewall
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import Docker, DockerError, RejectedInput

NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
ALIAS = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")


def checked(record):
    """Recorded data comes back through the timeline: check it before it becomes argv."""
    name = record.get("name") or ""
    network_id = record.get("network_id") or ""
    # Docker records a hex ID; Podman's Docker-compatible API reports the network's name as its ID.
    valid_id = not network_id or re.match(r"^[0-9a-f]{12,64}$", network_id) or network_id == name
    if not NETWORK_NAME.match(name) or not valid_id:
        raise RejectedInput("recorded network %r is malformed" % name)
    aliases = [a for a in record.get("aliases") or [] if isinstance(a, str) and ALIAS.match(a)]
    addresses = {}
    for key, version in (("ipv4_address", 4), ("ipv6_address", 6)):
        value = record.get(key) or ""
        if value:
            if ipaddress.ip_address(value).version != version:
                raise RejectedInput("recorded %s %r is not an IPv%d address" % (key, value, version))
            addresses["ipv%d" % version] = value
    return name, aliases, addresses


def remove_firewall(module, docker, record):
    """Undo a cgroup-matched isolation (--network host or container:X): delete its table in the
    namespace it was made in. A namespace that is gone took its rules with it."""
    table = str(record.get("table") or "")
    owner = str(record.get("namespace_owner") or "")
    if not firewall.TABLE.match(table) or (owner and not re.match(r"^[0-9a-f]{64}$", owner)):
        module.fail_json(msg="recorded firewall table %r is malformed" % table, reason="rejected_input")
    pid = os.getpid()  # the host's namespace
    if owner:
        try:
            pid = int((docker.inspect(owner).get("State") or {}).get("Pid") or 0)
        except DockerError:
            pid = 0
    output = {"firewall_table": table, "container_id": module.params["container"]}
    if not pid:
        output["note"] = "the network namespace is gone, and its rules with it"
        module.exit_json(changed=False, output=output, ansible_facts={"responder_output": output})
    if module.check_mode:
        present = firewall.exists(pid, table)
        output["would_change"] = "delete nftables table inet %s" % table if present else "nothing: no table"
        module.exit_json(changed=present, output=output, ansible_facts={"responder_output": output})
    try:
        removed = firewall.delete(pid, table)
    except (firewall.FirewallUnavailable, OSError) as exc:
        module.fail_json(msg=str(exc), reason="verification_failed", output=output)
    if firewall.exists(pid, table):
        module.fail_json(msg="table %s is still there" % table, reason="verification_failed", output=output)
    output["removed"] = removed
    module.exit_json(changed=removed, output=output, ansible_facts={"responder_output": output})


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="str", required=True),
            networks=dict(type="list", elements="dict", required=True),
            firewall=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    docker = Docker()
    if (module.params["firewall"] or {}).get("table"):
        remove_firewall(module, docker, module.params["firewall"])
    try:
        data = docker.resolve(module.params["container"])
        cid = data["Id"]
        current = set(((data.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        plan = [checked(r) for r in module.params["networks"]]
    except DockerError as exc:
        if exc.reason != "target_gone":
            module.fail_json(msg=str(exc), reason=exc.reason)
        # Removed since it was isolated (--rm on stop, its systemd unit, an operator): there is
        # nothing left to reconnect, which is not a failure of the release. Said, not hidden.
        ref = module.params["container"]
        output = {
            "container_id": ref,
            "reconnected": [],
            "gone": True,
            "warnings": [
                "container %s no longer exists on this host (removed since it was isolated); nothing to "
                "reconnect" % ref[:12]
            ],
        }
        module.exit_json(changed=False, output=output, ansible_facts={"responder_output": output})
    except ValueError as exc:
        module.fail_json(msg=str(exc), reason="rejected_input")
    todo = [item for item in plan if item[0] not in current]
    output = {"container_id": cid, "reconnected": [], "already_connected": sorted(current)}
    if module.check_mode:
        output["would_change"] = "connect to %s" % (", ".join(n for n, _, _ in todo) or "nothing")
        module.exit_json(changed=bool(todo), output=output, ansible_facts={"responder_output": output})
    for name, aliases, addresses in todo:
        # Docker adds the short ID as an alias by itself on user networks; giving it again is harmless.
        aliases = [alias for alias in aliases if alias != cid[:12]]
        try:
            docker.connect(name, cid, aliases, **addresses)
            output["reconnected"].append({"name": name, "addresses": addresses, "same_address": True})
        except DockerError as exc:
            if not addresses:
                module.fail_json(msg="reconnecting %s failed: %s" % (name, exc), output=output)
            # The default bridge, and networks without a configured subnet, refuse a chosen address.
            try:
                docker.connect(name, cid, aliases)
            except DockerError as exc2:
                module.fail_json(msg="reconnecting %s failed: %s" % (name, exc2), output=output)
            output["reconnected"].append(
                {"name": name, "addresses": {}, "same_address": False, "note": "address not kept: %s" % exc}
            )
    after = set(((docker.inspect(cid).get("NetworkSettings") or {}).get("Networks") or {}).keys())
    missing = sorted({n for n, _, _ in plan} - after)
    if missing:
        module.fail_json(
            msg="not reconnected: %s" % ", ".join(missing), reason="verification_failed", output=output
        )
    module.exit_json(changed=bool(todo), output=output, ansible_facts={"responder_output": output})


if __name__ == "__main__":
    main()
