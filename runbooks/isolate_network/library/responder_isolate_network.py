#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Isolate a container: record every network, disconnect from all, verify none is left."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_isolate_network
short_description: Disconnect a container from all its networks and verify
options:
  container:
    description: Container name or ID prefix.
    type: str
    required: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import Docker, DockerError, claim_for_run, summary
from ansible.module_utils.responder_targets import run_for_targets


def network_record(name, cfg):
    ipam = cfg.get("IPAMConfig") or {}
    return {
        "name": name,
        "network_id": cfg.get("NetworkID"),
        "aliases": cfg.get("Aliases") or [],
        "links": cfg.get("Links") or [],
        "ipv4_address": cfg.get("IPAddress") or "",
        "ipv6_address": cfg.get("GlobalIPv6Address") or "",
        "ipam_ipv4_address": ipam.get("IPv4Address") or "",
        "ipam_ipv6_address": ipam.get("IPv6Address") or "",
        "mac_address": cfg.get("MacAddress") or "",
    }


def published(data):
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    return {port: bindings for port, bindings in ports.items() if bindings}


def refuse_shared_namespace(docker, data):
    mode = (data.get("HostConfig") or {}).get("NetworkMode") or ""
    name = (data.get("Name") or "").lstrip("/")
    if mode == "host":
        return (
            "container %s (%s) runs in the host's network namespace (--network host): Docker cannot "
            "disconnect it, and cutting that namespace would cut the host. Alternatives: stop it with "
            "stop_container, or block its traffic with a host firewall rule that matches its cgroup "
            "(iptables -m cgroup in OUTPUT)." % (name, data["Id"][:12])
        )
    if mode.startswith("container:"):
        owner_ref = mode[len("container:") :]
        try:
            owner = docker.inspect(owner_ref)
            owner_text = "%s (%s)" % ((owner.get("Name") or "").lstrip("/"), owner["Id"])
        except DockerError:
            owner_text = owner_ref
        return (
            "container %s (%s) has no network of its own: it shares the network namespace of container "
            "%s. Isolate that namespace owner instead (this cuts every container sharing it), or stop "
            "this container with stop_container." % (name, data["Id"][:12], owner_text)
        )
    return None


def act(module, docker, ref):
    """Act on one container (`ref`); ends with module.exit_json or module.fail_json."""
    try:
        data = docker.resolve(ref)
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    cid = data["Id"]
    facts = summary(data)
    refusal = refuse_shared_namespace(docker, data)
    if refusal:
        module.fail_json(msg=refusal, reason="unsupported_network_mode", container=facts)
    claimed_from = claim_for_run(module, data)

    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    records = [network_record(name, cfg) for name, cfg in sorted(networks.items())]
    ports_before = published(data)
    output = dict(facts)
    output.update(
        networks=records,
        published_ports=ports_before,
        already_isolated=not records,
    )
    if claimed_from:
        output["claimed_from"] = claimed_from
    if module.check_mode:
        output["would_change"] = (
            "disconnect from %s" % ", ".join(r["name"] for r in records) if records else "nothing: no network"
        )
        module.exit_json(changed=bool(records), output=output, ansible_facts={"responder_output": output})

    disconnected = []
    for record in records:
        try:
            docker.disconnect(record["network_id"] or record["name"], cid)
            disconnected.append(record["name"])
        except DockerError as exc:
            # A retried run, or a daemon restart mid-run, may find it already gone: re-inspect
            # rather than trust either the error or our own bookkeeping.
            try:
                current = (docker.inspect(cid).get("NetworkSettings") or {}).get("Networks") or {}
            except DockerError as again:  # the daemon is gone for now: keep the record, retry later
                module.fail_json(
                    msg="could not disconnect %s from %s (%s), nor check whether it was: %s"
                    % (cid[:12], record["name"], exc, again),
                    reason=again.reason,
                    output=dict(output, disconnected=disconnected),
                )
            if record["name"] in current:
                module.fail_json(
                    msg="could not disconnect %s from %s: %s" % (cid[:12], record["name"], exc),
                    reason=exc.reason,
                    output=dict(output, disconnected=disconnected),
                )

    try:
        after = docker.inspect(cid)
    except DockerError as exc:
        module.fail_json(
            msg="isolation not verified: %s" % exc,
            reason=exc.reason,
            output=dict(output, disconnected=disconnected),
        )
    left = sorted(((after.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    # NetworkSettings.Ports is what `docker port` prints, recomputed by the daemon on disconnect.
    ports_after = published(after)
    output["disconnected"] = disconnected
    output["verified"] = not left and not ports_after
    if not output["verified"]:
        module.fail_json(
            msg="isolation not verified: still on networks %s, published ports %s"
            % (left or "none", ports_after or "none"),
            reason="verification_failed",
            output=output,
        )
    module.exit_json(changed=bool(disconnected), output=output, ansible_facts={"responder_output": output})


def main():
    module = AnsibleModule(
        argument_spec=dict(container=dict(type="raw", required=True)),
        supports_check_mode=True,
    )
    run_for_targets(module, Docker(), act, workers=16)


if __name__ == "__main__":
    main()
