#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Volatile state, then the filesystem, of a container, as hashed read-only evidence files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_snapshot_filesystem
short_description: Forensic snapshot of a container
options:
  container: {description: Container name or ID prefix., type: str, required: true}
  pause: {description: Pause around docker export., type: bool, default: true}
  include_volumes: {description: Archive volume and bind-mount host directories., type: bool, default: false}
  export: {description: Run docker export., type: bool, default: true}
  evidence_root: {description: Absolute evidence directory on this host., type: str, required: true}
  incident: {description: Incident ID., type: str, required: true}
"""

import json
import os
import shutil
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import (
    Docker,
    DockerError,
    EvidenceWriter,
    bytes_to_evidence,
    claim_for_run,
    collect_to_evidence,
    compact_utc,
    evidence_dir,
    exit_cleanly_on_termination,
    stream_api_to_evidence,
    stream_command_to_evidence,
    summary,
    utc_now,
)
from ansible.module_utils.responder_targets import run_for_targets


class _WriterFile(object):
    """File-like front for EvidenceWriter, so tarfile can stream into a hashed evidence file."""

    def __init__(self, writer):
        self.writer = writer

    def write(self, data):
        self.writer.write(bytes(data))
        return len(data)

    def tell(self):
        return self.writer.size


def archive_directory(source, directory, name):
    writer = EvidenceWriter(directory, name)
    try:
        with tarfile.open(fileobj=_WriterFile(writer), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(source, arcname=".", recursive=True)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def tool_versions(docker, data):
    # The container's own inspect names its storage driver: no `docker info`, which counts every
    # image and container and can take seconds on a crowded host.
    versions = {"docker": docker.version(), "storage_driver": data.get("Driver")}
    for tool in ("nsenter", "ss"):
        path = shutil.which(tool)
        versions[tool] = path
    return versions


def act(module, docker, ref):
    """Act on one container (`ref`); ends with module.exit_json or module.fail_json."""
    p = module.params
    try:
        data = docker.resolve(ref)
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    cid = data["Id"]
    facts = summary(data)
    state = data.get("State") or {}
    claimed_from = claim_for_run(module, data)
    mounts = [
        {
            "type": m.get("Type"),
            "name": m.get("Name"),
            "source": m.get("Source"),
            "destination": m.get("Destination"),
            "rw": m.get("RW"),
        }
        for m in data.get("Mounts") or []
    ]
    output = dict(facts, mounts=mounts, evidence=[], warnings=[], paused_seconds=0.0)
    if claimed_from:
        output["claimed_from"] = claimed_from
    if module.check_mode:
        parts = ["inspect", "processes", "sockets", "diff", "image"]
        if p["export"]:
            parts.append("docker export" + (" (paused)" if p["pause"] and state.get("Running") else ""))
        if p["include_volumes"] and mounts:
            parts.append("%d volume(s)" % len(mounts))
        output["would_change"] = "collect %s of %s into %s/%s" % (
            ", ".join(parts),
            cid[:12],
            p["evidence_root"],
            p["incident"],
        )
        module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})

    stamp = compact_utc()
    prefix = "%s-%s" % (cid[:12], stamp)
    evidence = output["evidence"]

    versions = {}

    def record(item, kind, method, started):
        item.update(
            kind=kind,
            method=method,
            started_at=started,
            collected_at=utc_now(),
            container_id=cid,
            tool_versions=versions,
        )
        evidence.append(item)

    try:
        directory = evidence_dir(p["evidence_root"], p["incident"], output["warnings"])
        versions.update(tool_versions(docker, data))
        output["tool_versions"] = versions

        started = utc_now()
        record(
            bytes_to_evidence(docker.inspect_raw(cid), directory, prefix + "-inspect.json"),
            "inspect",
            "docker inspect" + (", via Engine API" if docker.use_api else ""),
            started,
        )

        if state.get("Running"):
            started = utc_now()
            item = collect_to_evidence(docker, "processes", cid, directory, prefix)
            record(item, "processes", item["method"], started)
            pid = int(state.get("Pid") or 0)
            if pid > 0 and versions.get("nsenter") and versions.get("ss"):
                started = utc_now()
                try:
                    # the host's ss, run inside only the container's network namespace
                    record(
                        stream_command_to_evidence(
                            [versions["nsenter"], "-t", str(pid), "-n", versions["ss"], "-tuanp"],
                            directory,
                            prefix + "-sockets.txt",
                        ),
                        "sockets",
                        "nsenter -t PID -n ss -tuanp (host binaries)",
                        started,
                    )
                except DockerError as exc:
                    output["warnings"].append("open sockets not collected: %s" % exc)
            else:
                output["warnings"].append("open sockets not collected: nsenter or ss missing on the host")
        else:
            output["warnings"].append("container is not running: no process list or sockets to collect")

        started = utc_now()
        item = collect_to_evidence(docker, "diff", cid, directory, prefix)
        record(item, "diff", item["method"], started)

        started = utc_now()
        image = docker.image_inspect_raw(data.get("Image", ""))
        record(
            bytes_to_evidence(image, directory, prefix + "-image.json"),
            "image",
            "docker image inspect" + (", via Engine API" if docker.use_api else ""),
            started,
        )
        image_data = json.loads(image.decode("utf-8"))
        image_data = image_data[0] if isinstance(image_data, list) else image_data
        output["image_digests"] = image_data.get("RepoDigests") or []
        output["image_tags"] = image_data.get("RepoTags") or []

        if p["export"]:
            paused = False
            if p["pause"] and state.get("Running") and not state.get("Paused"):
                docker.pause(cid)
                paused = True
            pause_start = time.monotonic()
            started = utc_now()
            try:
                how = " (paused)" if paused else " (not paused)"
                if docker.use_api:  # the same tar stream, without the CLI copying it through a pipe
                    item = stream_api_to_evidence(
                        docker, "/containers/%s/export" % cid, directory, prefix + "-rootfs.tar"
                    )
                    how += ", Engine API GET /containers/ID/export"
                else:
                    item = stream_command_to_evidence(
                        [docker.binary, "export", "--", cid], directory, prefix + "-rootfs.tar"
                    )
                record(item, "filesystem", "docker export" + how, started)
            finally:
                if paused:
                    docker.unpause(cid)
                    output["paused_seconds"] = round(time.monotonic() - pause_start, 3)

        if p["include_volumes"]:
            for index, mount in enumerate(mounts):
                if mount["type"] not in ("volume", "bind") or not mount["source"]:
                    output["warnings"].append(
                        "mount %s (%s) not archived" % (mount["destination"], mount["type"])
                    )
                    continue
                if not os.path.isdir(mount["source"]):
                    output["warnings"].append("mount source %s is not a directory here" % mount["source"])
                    continue
                started = utc_now()
                item = archive_directory(mount["source"], directory, "%s-volume%d.tar" % (prefix, index))
                item["mount"] = mount
                record(item, "volume", "tar of the mount's host directory %s" % mount["source"], started)
    except DockerError as exc:
        module.fail_json(msg="snapshot incomplete: %s" % exc, reason=exc.reason, output=output)
    except OSError as exc:
        module.fail_json(
            msg="snapshot incomplete: writing evidence failed: %s" % exc,
            reason="enospc" if getattr(exc, "errno", None) == 28 else "evidence_write_failed",
            output=output,
        )
    module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="raw", required=True),
            pause=dict(type="bool", default=True),
            include_volumes=dict(type="bool", default=False),
            export=dict(type="bool", default=True),
            evidence_root=dict(type="str", required=True),
            incident=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    exit_cleanly_on_termination()
    run_for_targets(module, Docker(), act, workers=4)


if __name__ == "__main__":
    main()
