#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Isolate a container: record every network, disconnect from all, verify none is left.

A container in the host's network namespace (--network host) or another container's
(--network container:X) has no network of its own to disconnect: its traffic is dropped by
cgroup-matched nftables rules instead (module_utils/responder_firewall), and checked from inside.
For container:X, `shared_namespace: whole` cuts X's namespace instead: X is disconnected from its
networks, and with it every container sharing that namespace (the playbook must gate it)."""

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
  shared_namespace:
    description: For container:X, cut only the suspect (by cgroup) or X's whole namespace.
    type: str
    default: suspect
    choices: [suspect, whole]
"""

import os

from ansible.module_utils import responder_firewall as firewall
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


def shared_namespace(docker, data):
    """For --network host or container:X, where its traffic flows and who else is there:
    (namespace label, owner data or None, names of the containers sharing the namespace)."""
    mode = (data.get("HostConfig") or {}).get("NetworkMode") or ""
    if mode == "host":
        return "the host's network namespace", None, []
    if not mode.startswith("container:"):
        return None
    try:
        owner = docker.inspect(mode[len("container:") :])
    except DockerError as exc:
        raise DockerError(
            "it shares the network namespace of %s, which cannot be inspected: %s" % (mode, exc)
        )
    sharing = []
    for item in docker.api_get("/containers/json?all=1") or []:
        other = (item.get("HostConfig") or {}).get("NetworkMode") or ""
        if other == "container:" + owner["Id"] and item.get("Id") != data["Id"]:
            sharing.append(((item.get("Names") or ["?"])[0]).lstrip("/"))
    label = "the network namespace of container %s (%s)" % (
        (owner.get("Name") or "").lstrip("/"),
        owner["Id"][:12],
    )
    return label, owner, sorted(sharing)


def firewall_isolate(module, docker, data, output, shared):
    """Drop its traffic by cgroup with nftables, in the namespace it uses; verify from inside."""
    label, owner, sharing = shared
    cid = data["Id"]
    name = (data.get("Name") or "").lstrip("/")
    pid = int((data.get("State") or {}).get("Pid") or 0)
    owner_id = owner["Id"] if owner else None
    spared = (
        ["the host's own processes"]
        if owner is None
        else ["%s (%s)" % ((owner.get("Name") or "").lstrip("/"), owner_id[:12]), *sharing]
    )
    table = firewall.table_name(os.environ.get("RESPONDER_INCIDENT", ""), cid)
    output.update(
        networks=[],
        published_ports={},
        already_isolated=False,
        network_namespace=label,
        namespace_owner=owner_id,
        sharing_namespace=sharing,
        firewall={"table": table, "namespace_owner": owner_id or ""},
    )
    if not pid:
        module.fail_json(
            msg="container %s (%s) is not running: it has no traffic to cut now, and a start would bring "
            "it back on %s. Stop it (stop_container) to keep it down." % (name, cid[:12], label),
            reason="not_running",
            output=output,
        )
    try:
        nft_path, level, cgroup_dir = firewall.container_cgroup(pid)
    except (firewall.FirewallUnavailable, OSError) as exc:
        module.fail_json(
            msg="container %s (%s) runs in %s, which Docker cannot disconnect, and cgroup-matched firewall "
            "rules cannot be used here: %s. Instead: pause it (pause_container) or stop it (stop_container)."
            % (name, cid[:12], label, exc),
            reason="unsupported_network_mode",
            output=output,
        )
    output["firewall"].update(cgroup=nft_path, level=level)
    if module.check_mode:
        output["would_change"] = (
            "drop every packet to and from its processes with nftables table inet %s in %s; %s keep "
            "their network" % (table, label, ", ".join(spared))
        )
        module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})
    try:
        before = firewall.probe(pid, cgroup_dir)
        already = before[0] == "blocked" and firewall.exists(pid, table)
        if not already:
            firewall.apply(pid, table, firewall.ruleset(table, nft_path, level, cid, name))
        after = firewall.probe(pid, cgroup_dir)
    except firewall.FirewallUnavailable as exc:
        module.fail_json(
            msg="firewall isolation of %s failed: %s" % (cid[:12], exc),
            reason="verification_failed",
            output=output,
        )
    output["firewall"].update(before=before[1], after=after[1], spared=spared)
    output["verified"] = after[0] == "blocked"
    output["already_isolated"] = already
    if not output["verified"]:
        module.fail_json(
            msg="isolation not verified: a connection from inside the container's cgroup still got %s"
            % after[1],
            reason="verification_failed",
            output=output,
        )
    module.exit_json(changed=not already, output=output, ansible_facts={"responder_output": output})


def act(module, docker, ref):
    """Act on one container (`ref`); ends with module.exit_json or module.fail_json."""
    try:
        data = docker.resolve(ref)
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    facts = summary(data)
    try:
        shared = shared_namespace(docker, data)
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason="unsupported_network_mode", container=facts)
    claimed_from = claim_for_run(module, data)
    if shared is not None:
        output = dict(facts, claimed_from=claimed_from) if claimed_from else dict(facts)
        if module.params["shared_namespace"] == "whole":
            whole_namespace_isolate(module, docker, data, output, shared)
        firewall_isolate(module, docker, data, output, shared)

    output = dict(facts, claimed_from=claimed_from) if claimed_from else dict(facts)
    cut_networks(module, docker, data, output)


def whole_namespace_isolate(module, docker, data, output, shared):
    """Disconnect the namespace's owner X from every network: X, the suspect and every other
    container sharing X's namespace lose their network at once. Release reconnects X."""
    label, owner, sharing = shared
    if owner is None:
        module.fail_json(
            msg="container %s uses the host's network namespace: it cannot be cut as a whole; isolate it "
            "by its cgroup (shared_namespace: suspect)" % data["Id"][:12],
            reason="unsupported_network_mode",
            output=output,
        )
    owner_mode = (owner.get("HostConfig") or {}).get("NetworkMode") or ""
    if owner_mode == "host" or owner_mode.startswith("container:"):
        module.fail_json(
            msg="%s is itself in %s: its namespace has no network of its own to disconnect; isolate the "
            "suspect by its cgroup (shared_namespace: suspect)"
            % (label, "the host's network namespace" if owner_mode == "host" else owner_mode),
            reason="unsupported_network_mode",
            output=output,
        )
    name = (owner.get("Name") or "").lstrip("/")
    output.update(
        network_namespace=label,
        namespace_owner=owner["Id"],
        sharing_namespace=sharing,
        reconnect_container=owner["Id"],
        cut_whole_namespace=True,
        cut_together=["%s (%s)" % (name, owner["Id"][:12]), *sharing],
    )
    cut_networks(module, docker, owner, output)


def cut_networks(module, docker, data, output):
    """Record every network of `data`'s container, disconnect it from all, verify none is left;
    ends with module.exit_json or module.fail_json."""
    cid = data["Id"]
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    records = [network_record(name, cfg) for name, cfg in sorted(networks.items())]
    ports_before = published(data)
    output.update(
        networks=records,
        published_ports=ports_before,
        already_isolated=not records,
    )
    if module.check_mode:
        together = output.get("cut_together")
        output["would_change"] = (
            "disconnect %sfrom %s%s"
            % (
                "%s " % together[0] if together else "",
                ", ".join(r["name"] for r in records),
                "; every container in its network namespace loses its network with it: %s"
                % ", ".join(together)
                if together
                else "",
            )
            if records
            else "nothing: no network"
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
        argument_spec=dict(
            container=dict(type="raw", required=True),
            shared_namespace=dict(type="str", default="suspect", choices=["suspect", "whole"]),
        ),
        supports_check_mode=True,
    )
    run_for_targets(module, Docker(), act, workers=16)


if __name__ == "__main__":
    main()
