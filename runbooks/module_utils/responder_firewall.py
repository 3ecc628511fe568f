# -*- coding: utf-8 -*-
"""Isolating a container that Docker cannot disconnect: one that runs in the host's network
namespace (--network host) or in another container's (--network container:X).

Its traffic is dropped by nftables rules that match the cgroup (v2) of the sockets its processes
own, in both directions, in the network namespace it uses: nothing it sends leaves (established
connections included: their next packet is dropped) and nothing reaches its sockets, loopback
included. Every other process in that namespace (the host's own, or X's) keeps its network.

The rules live in a table of their own, named for the incident and the container
(`nft list table inet responder_<incident>_<id12>`): easy to see, kept by the kernel if
responder dies, and removed by release. Isolation is then checked from inside the container's
cgroup and namespace: a helper process joins them and connects to a port on 127.0.0.1, which
before the rules is refused (the network answers) and after them is not permitted.
"""

from __future__ import absolute_import, division, print_function

import ctypes
import errno
import os
import re
import shutil
import socket
import subprocess

__metaclass__ = type

CLONE_NEWNET = 0x40000000
TABLE = re.compile(r"^responder_[A-Za-z0-9_]{1,200}$")
PROBE_PORT = 9  # discard: nothing listens on the host's 127.0.0.1:9, so the network answers "refused"


class FirewallUnavailable(Exception):
    """What this host lacks for cgroup-matched rules, and what to do instead."""


def table_name(incident, cid):
    """responder_<incident>_<first 12 of the container ID>, in nft's identifier alphabet."""
    name = "responder_%s_%s" % (re.sub(r"[^A-Za-z0-9]", "_", incident or "manual"), cid[:12])
    if not TABLE.match(name):
        raise ValueError("cannot name a firewall table for %r" % incident)
    return name


def _cgroup2_mount(proc="/proc"):
    with open(os.path.join(proc, "self", "mountinfo")) as handle:
        for line in handle:
            fields = line.split()
            if " - cgroup2 " in line and len(fields) > 4:
                return fields[4]
    return None


def container_cgroup(pid, proc="/proc", which=shutil.which, cgroup_root="/sys/fs/cgroup"):
    """(path for nft, level, directory) of the cgroup v2 the container's init process is in;
    FirewallUnavailable naming what this host lacks."""
    nft = which("nft")
    if not nft:
        raise FirewallUnavailable("nftables (the nft command) is not installed on this host")
    mount = _cgroup2_mount(proc)
    if not mount:
        raise FirewallUnavailable("no cgroup v2 hierarchy is mounted on this host (cgroup v1 only)")
    with open(os.path.join(proc, str(pid), "cgroup")) as handle:
        unified = [line.split(":", 2)[2].strip() for line in handle if line.startswith("0::")]
    if not unified or unified[0] in ("", "/"):
        raise FirewallUnavailable("the container has no cgroup v2 of its own (cgroup v1 only)")
    path = unified[0].strip("/")
    # nft resolves the path under /sys/fs/cgroup: a hybrid host mounts v2 at /sys/fs/cgroup/unified
    base = os.path.relpath(mount, cgroup_root)
    if base.startswith(".."):
        raise FirewallUnavailable(
            "cgroup v2 is mounted at %s, outside /sys/fs/cgroup, where nft looks" % mount
        )
    nft_path = path if base == "." else "%s/%s" % (base, path)
    if not os.path.isdir(os.path.join(cgroup_root, nft_path)):
        raise FirewallUnavailable("the container's cgroup %s is not where nft would look" % nft_path)
    return nft_path, len(path.split("/")), os.path.join(mount, path)


def _in_namespace(pid, argv, stdin=None):
    """argv inside the network namespace of process `pid` (the host's own for --network host)."""
    return subprocess.run(
        ["nsenter", "--target", str(pid), "--net", "--", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def ruleset(table, nft_path, level, cid, name):
    """Both directions: what its sockets send, and what is delivered to them."""
    match = 'socket cgroupv2 level %d "%s"' % (level, nft_path)
    comment = "responder isolates container %s (%s)" % (cid, re.sub(r"[^A-Za-z0-9_.-]", "", name)[:60])
    return (
        "table inet %s {\n"
        '  comment "%s"\n'
        "  chain out { type filter hook output priority raw; policy accept; %s counter drop; }\n"
        "  chain in { type filter hook input priority raw; policy accept; %s counter drop; }\n"
        "}\n" % (table, comment, match, match)
    )


def apply(pid, table, rules):
    """Create the table (replacing one left by an earlier attempt of this incident)."""
    delete(pid, table)
    done = _in_namespace(pid, ["nft", "-f", "-"], stdin=rules)
    if done.returncode != 0:
        raise FirewallUnavailable("nft refused the rules: %s" % (done.stderr.strip() or done.stdout.strip()))


def delete(pid, table):
    """Remove the table if it is there; True when it was."""
    if not TABLE.match(table):
        raise ValueError("not a responder table: %r" % table)
    listed = _in_namespace(pid, ["nft", "list", "table", "inet", table])
    if listed.returncode != 0:
        return False
    done = _in_namespace(pid, ["nft", "delete", "table", "inet", table])
    if done.returncode != 0:
        raise FirewallUnavailable("could not delete table %s: %s" % (table, done.stderr.strip()))
    return True


def exists(pid, table):
    """Whether the table is in the namespace of `pid`."""
    return _in_namespace(pid, ["nft", "list", "table", "inet", table]).returncode == 0


def probe(pid, cgroup_dir):
    """Connect to 127.0.0.1:9 from inside the container's cgroup and network namespace.

    Returns "reachable" (refused or accepted: the network answered) or "blocked" (not permitted,
    or no answer), with the errno name. The helper is a child of this module that joins the
    cgroup and the namespace before it opens its socket, so the socket is the container's as far
    as the rules can tell; it exits at once."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the helper
        code = "EIO"
        try:
            os.close(read_end)
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
            libc = ctypes.CDLL(None, use_errno=True)
            namespace = os.open("/proc/%d/ns/net" % pid, os.O_RDONLY)
            if libc.setns(namespace, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2)
            try:
                sock.connect(("127.0.0.1", PROBE_PORT))
                code = "CONNECTED"
            except socket.timeout:
                code = "ETIMEDOUT"
            except OSError as exc:
                code = errno.errorcode.get(exc.errno or 0, "EIO")
        except Exception as exc:
            code = "SETUP:%s" % exc
        finally:
            os.write(write_end, code.encode()[:200])
            os._exit(0)
    os.close(write_end)
    result = os.read(read_end, 256).decode()
    os.close(read_end)
    os.waitpid(child, 0)
    if result.startswith("SETUP:"):
        raise FirewallUnavailable("could not check from inside the container's cgroup: %s" % result[6:])
    state = "reachable" if result in ("ECONNREFUSED", "CONNECTED") else "blocked"
    return state, result
