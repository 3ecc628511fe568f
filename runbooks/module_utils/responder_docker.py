# -*- coding: utf-8 -*-
"""Shared helpers for responder's Docker modules: container resolution, argv-only docker calls,
and evidence files written atomically while hashed.

Runs on the target host under whatever Python Ansible finds there, so it sticks to the stdlib.
Every docker call is an argv list (no shell), with `--` before positional arguments, and the
container is always addressed by the full 64-hex ID resolved here.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import subprocess

try:
    from http.client import HTTPConnection, HTTPException
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 targets are not supported, but fail politely
    HTTPConnection = None
    HTTPException = Exception

__metaclass__ = type

FULL_ID = re.compile(r"^[0-9a-f]{64}$")
HEX_PREFIX = re.compile(r"^[0-9a-f]{1,64}$")
# moby daemon/names: RestrictedNameChars; the API prefixes names with '/'.
CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
INCIDENT_ID = re.compile(r"^INC-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
CHUNK = 1024 * 1024


class DockerError(Exception):
    """A docker call failed or its answer did not make sense; the message is for the operator."""

    def __init__(self, message, reason="docker_error"):
        super(DockerError, self).__init__(message)
        self.reason = reason


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (a cancelled run): unwind so that finally blocks clean up."""


def exit_cleanly_on_termination():
    """responder stops a cancelled run with SIGTERM before SIGKILL: turn it into an exception so a
    paused container is unpaused and a half-written evidence file is removed.

    Only the first signal counts. More follow (Ansible's worker passes SIGTERM on to its whole
    process group, where the module runs), and one raised in the middle of the cleanup would cut
    it short: the .partial file left behind, or the container left paused."""
    import signal

    raised = []

    def handler(signum, frame):
        if raised:
            return
        raised.append(signum)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated("signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


class RejectedInput(DockerError):
    def __init__(self, message):
        super(RejectedInput, self).__init__(message, reason="rejected_input")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compact_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


# What the docker CLI prints when the daemon is not there or drops the connection mid-call
# (restarting): the step is then retried after a pause instead of failing for good.
_UNAVAILABLE = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "connection reset by peer",
    "broken pipe",
)


def call_timeout():
    """Seconds one Docker call may take: RESPONDER_DOCKER_TIMEOUT (set by responder from its
    docker_call_timeout setting for every play), else 60."""
    try:
        value = float(os.environ.get("RESPONDER_DOCKER_TIMEOUT") or 60)
    except ValueError:
        value = 60.0
    return value if 1 <= value <= 3600 else 60.0


class _UnixHTTPConnection(HTTPConnection if HTTPConnection else object):
    def __init__(self, path, timeout):
        HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


# Rootful Podman's Docker-compatible API socket (podman.socket), where Debian, Fedora and RHEL
# put it. A host with this and no dockerd is a Podman host: detected without any inventory
# variable.
PODMAN_SOCKET = "/run/podman/podman.sock"


def _api_socket(default_socket, podman_socket=PODMAN_SOCKET):
    """The Unix socket the docker CLI would talk to, if it would talk to one on this host:
    DOCKER_HOST=unix://PATH (a second daemon, rootless Docker, Podman's Docker-compatible
    socket), else the default socket when no other context is selected, else (no dockerd
    socket at all) rootful Podman's socket. None: use the CLI (ssh://, tcp://, a context),
    which knows how to reach it."""
    host = os.environ.get("DOCKER_HOST") or ""
    if host:
        path = host[len("unix://") :] if host.startswith("unix://") else ""
        if path.startswith("/") and os.environ.get("DOCKER_CONTEXT") in (None, "", "default"):
            return path if os.path.exists(path) else None
        return None
    if _cli_uses_local_socket(default_socket):
        return default_socket
    no_dockerd = not os.path.exists(default_socket) and os.environ.get("DOCKER_CONTEXT") in (
        None,
        "",
        "default",
    )
    return podman_socket if no_dockerd and os.path.exists(podman_socket) else None


def _cli_binary(binary):
    """`docker`, or on a host that has only Podman's CLI, `podman` (it takes the same argv for
    everything responder asks of the CLI)."""
    if binary != "docker" or _which(binary) or not _which("podman"):
        return binary
    return "podman"


def _which(name):
    for directory in (os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        candidate = os.path.join(directory, name)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _cli_uses_local_socket(socket_path):
    """Whether the docker CLI would talk to dockerd on `socket_path`: no DOCKER_HOST, no other
    context selected (DOCKER_CONTEXT or the CLI config's currentContext), and the socket is there."""
    if os.environ.get("DOCKER_HOST") or os.environ.get("DOCKER_CONTEXT") not in (None, "", "default"):
        return False
    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        with open(os.path.join(config_dir, "config.json")) as handle:
            context = (json.load(handle) or {}).get("currentContext")
    except (OSError, IOError, ValueError, AttributeError):
        context = None
    return context in (None, "", "default") and os.path.exists(socket_path)


def _api_message(body):
    text = body.decode("utf-8", "replace")
    try:
        return (json.loads(text).get("message") or text).strip()
    except (ValueError, AttributeError):
        return text.strip()


def _runtime(server):
    """Which engine answers the Docker API: Podman's compatible service names itself."""
    names = [str(c.get("Name") or "") for c in server.get("Components") or [] if isinstance(c, dict)]
    return "podman" if any(n.startswith("Podman") for n in names) else "docker"


class Docker(object):
    """Docker on this host: the Engine API on the local socket, or else the docker CLI.

    When the CLI would use the local socket too, the container calls below are one HTTP request
    on it each (about 10 ms less than a CLI process, and no argv at all). With DOCKER_HOST or
    another context, and for swarm secrets and services (run()), the CLI is called with argv
    lists, `--` before positional arguments. Both have a timeout.
    """

    SOCKET = "/var/run/docker.sock"

    def __init__(self, binary="docker", timeout=None):
        self.binary = _cli_binary(binary)
        self.timeout = timeout or call_timeout()
        self.socket = _api_socket(self.SOCKET)
        self.use_api = HTTPConnection is not None and self.socket is not None

    def api(self, method, path, body=None, timeout=None):
        """One Engine API request; returns the response body. 304 (nothing to do) is success;
        other 3xx and up raise DockerError with dockerd's message."""
        timeout = timeout or self.timeout
        conn = _UnixHTTPConnection(self.socket, timeout)
        headers = {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except socket.timeout:
            raise DockerError(
                "docker API did not answer %s %s within %gs" % (method, path, timeout), "docker_timeout"
            )
        except (OSError, IOError, HTTPException) as exc:  # refused, reset, or cut off mid-answer
            raise DockerError(
                "docker unavailable: %s" % (exc or exc.__class__.__name__), "docker_unavailable"
            )
        finally:
            conn.close()
        if response.status >= 300 and response.status != 304:
            raise DockerError("docker API %s %s: %s" % (method, path, _api_message(data)))
        return data

    def api_get(self, path):
        return json.loads(self.api("GET", path).decode("utf-8", "replace"))

    def api_stream(self, path, inactivity_timeout=None):
        """GET `path`; returns (connection, response) for the caller to read in chunks and close.

        Exports and logs come straight from dockerd's socket into the evidence writer: no CLI
        process copying them through a pipe, which on a busy host is one copy too many.
        """
        inactivity_timeout = inactivity_timeout or self.timeout
        conn = _UnixHTTPConnection(self.socket, inactivity_timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            if response.status >= 300:
                raise DockerError("docker API GET %s: %s" % (path, _api_message(response.read())))
        except socket.timeout:
            conn.close()
            raise DockerError(
                "docker API did not answer GET %s within %gs" % (path, inactivity_timeout), "docker_timeout"
            )
        except (OSError, IOError, HTTPException) as exc:
            conn.close()
            raise DockerError(
                "docker unavailable: %s" % (exc or exc.__class__.__name__), "docker_unavailable"
            )
        except BaseException:
            conn.close()
            raise
        return conn, response

    def run(self, args, timeout=None):
        argv = [self.binary, *list(args)]
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout or self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise DockerError("docker CLI not found on this host (%s)" % self.binary, "docker_unavailable")
        except subprocess.TimeoutExpired:
            raise DockerError(
                "docker %s did not answer within %gs" % (args[0], timeout or self.timeout), "docker_timeout"
            )
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            lowered = err.lower()
            if any(sign in lowered for sign in _UNAVAILABLE):
                raise DockerError("docker unavailable: %s" % err, "docker_unavailable")
            raise DockerError("docker %s failed: %s" % (args[0], err or "exit %d" % proc.returncode))
        return out

    def inspect(self, ref, kind="container"):
        if self.use_api and kind == "container":
            # ref is a validated name, ID or ID prefix; quote() keeps it one path segment anyway.
            return self.api_get("/containers/%s/json" % quote(ref, safe=""))
        out = self.run(["inspect", "--type", kind, "--", ref])
        data = json.loads(out)
        if not isinstance(data, list) or len(data) != 1:
            raise DockerError("docker inspect returned %d objects for %r" % (len(data), ref))
        return data[0]

    def version(self):
        """Versions for the evidence manifest; {} if the daemon does not say."""
        try:
            if self.use_api:
                server = self.api_get("/version")
                return {
                    "runtime": _runtime(server),
                    "client": None,
                    "server": server.get("Version"),
                    "api": server.get("ApiVersion"),
                    "via": "Engine API on %s" % self.socket,
                }
            data = json.loads(self.run(["version", "--format", "{{json .}}"]))
            server = data.get("Server") or {}
            return {
                "runtime": _runtime(server),
                "client": (data.get("Client") or {}).get("Version"),
                "server": server.get("Version"),
                "api": server.get("ApiVersion"),
                "via": "docker CLI",
            }
        except (DockerError, ValueError, AttributeError):
            return {}

    # The calls below take a full container ID (resolve() first) or a daemon-issued network or
    # image ID; quote() keeps any of them one path segment regardless.

    def inspect_raw(self, cid):
        """The inspect JSON exactly as the daemon (API: one object) or the CLI (a list) gave it."""
        if self.use_api:
            return self.api("GET", "/containers/%s/json" % quote(cid, safe=""))
        return self.run(["inspect", "--type", "container", "--", cid]).encode("utf-8")

    def image_inspect_raw(self, image_id):
        if self.use_api:
            return self.api("GET", "/images/%s/json" % quote(image_id, safe=""))
        return self.run(["image", "inspect", "--", image_id]).encode("utf-8")

    def _container_verb(self, verb, cid):
        """pause, unpause, kill: the same word as an API path and as a CLI command."""
        if self.use_api:
            self.api("POST", "/containers/%s/%s" % (quote(cid, safe=""), verb))
        else:
            self.run([verb, "--", cid])

    def pause(self, cid):
        self._container_verb("pause", cid)

    def unpause(self, cid):
        self._container_verb("unpause", cid)

    def kill(self, cid):
        self._container_verb("kill", cid)

    def disconnect(self, network, cid):
        if self.use_api:
            self.api(
                "POST",
                "/networks/%s/disconnect" % quote(network, safe=""),
                body={"Container": cid, "Force": False},
            )
        else:
            self.run(["network", "disconnect", "--", network, cid])

    def connect(self, network, cid, aliases=(), ipv4=None, ipv6=None):
        """Attach to `network` with these aliases and, if given, these addresses."""
        if self.use_api:
            endpoint = {"Aliases": list(aliases)}
            ipam = dict((k, v) for k, v in (("IPv4Address", ipv4), ("IPv6Address", ipv6)) if v)
            if ipam:
                endpoint["IPAMConfig"] = ipam
            self.api(
                "POST",
                "/networks/%s/connect" % quote(network, safe=""),
                body={"Container": cid, "EndpointConfig": endpoint},
            )
            return
        args = ["network", "connect"]
        for alias in aliases:
            args += ["--alias", alias]
        for flag, value in (("--ip", ipv4), ("--ip6", ipv6)):
            if value:
                args += [flag, value]
        self.run([*args, "--", network, cid])

    def disable_restart(self, cid):
        """Restart policy `no`, so neither the policy nor a daemon restart brings it back."""
        if self.use_api:
            self.api(
                "POST", "/containers/%s/update" % quote(cid, safe=""), body={"RestartPolicy": {"Name": "no"}}
            )
        else:
            self.run(["update", "--restart=no", "--", cid])

    def stop(self, cid, seconds):
        """SIGTERM, then SIGKILL after `seconds`; returns once the container has exited."""
        if self.use_api:
            self.api(
                "POST",
                "/containers/%s/stop?t=%d" % (quote(cid, safe=""), int(seconds)),
                timeout=seconds + self.timeout,
            )
        else:
            self.run(["stop", "-t", str(int(seconds)), "--", cid], timeout=seconds + self.timeout)

    def check_logs_readable(self, cid):
        """Raise DockerError unless the daemon can still read back the container's logs."""
        if self.use_api:
            self.api("GET", "/containers/%s/logs?stdout=1&stderr=1&tail=1" % quote(cid, safe=""))
        else:
            self.run(["logs", "--tail", "1", "--", cid])

    def resolve(self, ref):
        """Resolve a name or ID prefix to exactly one container; returns its inspect data."""
        validate_reference(ref)
        try:
            data = self.inspect(ref)
        except DockerError as exc:
            text = str(exc).lower()
            if "multiple" in text:
                raise RejectedInput(
                    "container reference %r is ambiguous: several containers match; give more of the ID "
                    "or the exact name" % ref
                )
            if "no such" in text:
                raise DockerError("no such container %r on this host" % ref, "target_gone")
            raise
        cid = data.get("Id", "")
        name = (data.get("Name") or "").lstrip("/")
        if not FULL_ID.match(cid):
            raise DockerError("docker returned a malformed container ID for %r" % ref)
        wanted = ref.lstrip("/")
        if not (cid.startswith(wanted) or name == wanted):
            raise RejectedInput(
                "docker resolved %r to %s (%s), which does not match it" % (ref, cid[:12], name)
            )
        return data


# Claims: which incident acts on a container on this host. Taken here, on the host, under an
# exclusive lock and before anything changes, so that two incidents that reached one container
# by different references (its name from Alertmanager, its ID from Falco) never both act on it:
# the controller can only tell that they are the same container once a host has resolved them.
# The engine says, in the play's environment, which incident runs (RESPONDER_INCIDENT), where
# claims live (RESPONDER_CLAIMS_ROOT), which other incidents were open when this batch started
# (RESPONDER_OPEN_INCIDENTS) and when that was (RESPONDER_CLAIM_SINCE, as in incident IDs). A
# claim by an incident that was not open then, and is older than that, is stale (that incident
# finished or was released) and is taken over; one by an open or a newer incident holds.


def _incident_time(incident):
    return incident[4:19]  # INC-YYYYMMDD-HHMMSS-xxxx -> YYYYMMDD-HHMMSS


def claim_container(root, cid, incident, open_incidents, since, check_mode=False):
    """(holder, previous): holder is the incident that holds `cid` if not us (we must not act);
    previous is the stale holder we took the claim over from, if any."""
    if not FULL_ID.match(cid) or not INCIDENT_ID.match(incident):
        raise RejectedInput("malformed claim for %r by %r" % (cid, incident))
    claims = private_dir(root, "claims")
    lock = os.open(claims, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        holder = None
        try:
            fd = os.open(cid, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=lock)
            with os.fdopen(fd, "rb") as handle:
                holder = json.loads(handle.read(4096).decode("utf-8")).get("incident")
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, OSError):
            holder = None  # unreadable: nobody's claim
        if not (isinstance(holder, str) and INCIDENT_ID.match(holder)):
            holder = None
        if holder == incident:
            return None, None
        if holder is not None and (holder in open_incidents or _incident_time(holder) >= since):
            return holder, None
        if not check_mode:
            temp = "%s.%d.tmp" % (cid, os.getpid())
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=lock)
            with os.fdopen(fd, "wb") as handle:
                handle.write(
                    json.dumps({"incident": incident, "since": utc_now(), "previous": holder}).encode()
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temp, cid, src_dir_fd=lock, dst_dir_fd=lock)
            os.fsync(lock)
        return None, holder
    finally:
        os.close(lock)


def claim_for_run(module, data):
    """Claim the resolved container for this run's incident before changing it; exit the
    module with reason container_held (nothing changed) when another incident holds it.
    Returns the stale holder taken over from, or None. Outside a responder run: no claim."""
    incident = os.environ.get("RESPONDER_INCIDENT", "")
    root = os.environ.get("RESPONDER_CLAIMS_ROOT", "")
    if not incident or not root:
        return None
    open_incidents = set(filter(None, os.environ.get("RESPONDER_OPEN_INCIDENTS", "").split(",")))
    since = os.environ.get("RESPONDER_CLAIM_SINCE", "")
    cid = data["Id"]
    try:
        holder, previous = claim_container(root, cid, incident, open_incidents, since, module.check_mode)
    except DockerError as exc:
        module.fail_json(
            msg="could not claim container %s for %s: %s" % (cid[:12], incident, exc), reason=exc.reason
        )
    except OSError as exc:
        module.fail_json(
            msg="could not claim container %s for %s: %s" % (cid[:12], incident, exc), reason="claim_failed"
        )
    if holder is not None:
        name = (data.get("Name") or "").lstrip("/")
        module.fail_json(
            msg="container %s (%s) is already being handled by incident %s; nothing was changed"
            % (cid[:12], name, holder),
            reason="container_held",
            held_by=holder,
            output={"container_id": cid, "container_name": name, "held_by": holder},
        )
    return previous


def validate_reference(ref):
    if not isinstance(ref, str) or not ref:
        raise RejectedInput("container reference is empty")
    if len(ref) > 128:
        raise RejectedInput("container reference is longer than 128 characters")
    if ref == "host":
        raise RejectedInput(
            "'host' is not a container: the event came from a process on the host itself, so there is "
            "no container to act on"
        )
    if ref.startswith("-"):
        raise RejectedInput(
            "container reference %r starts with '-', which docker would read as an option" % ref
        )
    if not (HEX_PREFIX.match(ref) or CONTAINER_NAME.match(ref)):
        raise RejectedInput("%r is not a container ID or name (names match [a-zA-Z0-9][a-zA-Z0-9_.-]*)" % ref)


def owner_of(data):
    """Who brings this container back if it stops, and what that owner does after each action:
    a Swarm service (replaces a stopped task), a Compose project (`docker compose up` recreates a
    removed or stopped service container), a systemd unit (Podman's Quadlet/`podman generate
    systemd` label), or its own restart policy. None when nothing would. Only the owner's name is
    read from the labels, never their other values."""
    labels = (data.get("Config") or {}).get("Labels") or {}
    policy = ((data.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    if labels.get("com.docker.swarm.service.id"):
        service = labels.get("com.docker.swarm.service.name") or labels["com.docker.swarm.service.id"][:12]
        name = "Swarm service %s (task %s)" % (service, labels.get("com.docker.swarm.task.name") or "?")
        return {
            "kind": "swarm",
            "service": service,
            "service_id": labels["com.docker.swarm.service.id"],
            "description": name,
            "after": {
                "isolate_network": "the task keeps running, isolated; Swarm does not replace it",
                "pause_container": "Swarm leaves a paused task alone",
                "stop_container": "Swarm starts a replacement task from the same image, on the service's "
                "networks and not isolated, within seconds, unless the step holds the service (hold_orchestrator)",
            },
        }
    if labels.get("com.docker.compose.project"):
        name = "Compose project %s, service %s" % (
            labels["com.docker.compose.project"],
            labels.get("com.docker.compose.service") or "?",
        )
        return {
            "kind": "compose",
            "project": labels["com.docker.compose.project"],
            "service": labels.get("com.docker.compose.service") or "",
            "description": name,
            "after": {
                "isolate_network": "a `docker compose up` of the project would reconnect or recreate it",
                "stop_container": "dockerd no longer restarts it (restart policy set to no); a `docker compose up` "
                "of the project would start it again or recreate it from the same image",
            },
        }
    if labels.get("PODMAN_SYSTEMD_UNIT"):
        unit = labels["PODMAN_SYSTEMD_UNIT"]
        return {
            "kind": "systemd",
            "unit": unit,
            "description": "systemd unit %s" % unit,
            "after": {
                "isolate_network": "the container keeps running, isolated; a restart of the unit would "
                "start a fresh one from the same image, not isolated",
                "pause_container": "systemd leaves a paused container alone",
                "stop_container": "a container stopped under its unit is replaced by systemd, so the step "
                "stops the unit itself and holds it (a start condition that never holds) until release",
            },
        }
    if policy in ("always", "unless-stopped", "on-failure"):
        return {
            "kind": "restart_policy",
            "description": "its restart policy (%s)" % policy,
            "after": {
                "stop_container": "the restart policy is set to no first, so dockerd does not start it again"
            },
        }
    return None


def summary(data):
    """The container facts the plan and the timeline show; never Env or labels (only the name of
    an orchestrator that owns it: owner_of)."""
    host_config = data.get("HostConfig") or {}
    restart = host_config.get("RestartPolicy") or {}
    settings = data.get("NetworkSettings") or {}
    state = data.get("State") or {}
    return {
        "container_id": data.get("Id"),
        "container_name": (data.get("Name") or "").lstrip("/"),
        "image": (data.get("Config") or {}).get("Image"),
        "image_id": data.get("Image"),
        "status": state.get("Status"),
        "pid": state.get("Pid"),
        "network_mode": host_config.get("NetworkMode"),
        "networks": sorted((settings.get("Networks") or {}).keys()),
        "restart_policy": restart.get("Name") or "no",
        "auto_remove": bool(host_config.get("AutoRemove")),
        "log_driver": (host_config.get("LogConfig") or {}).get("Type"),
        "owner": owner_of(data),
    }


class UnsafePath(DockerError):
    """A directory evidence would be written under is a link, someone else's, or writable by others."""

    def __init__(self, message):
        super(UnsafePath, self).__init__(message, reason="unsafe_path")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_private(name, dir_fd, path):
    """Open one directory without following a link, and hold it to responder's rules."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd) if dir_fd is not None else os.open(name, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and os.path.islink(path)):
            raise UnsafePath(
                "%s is a symbolic link (to %r): evidence is written only into real directories responder "
                "owns; remove the link or set host_evidence_root elsewhere" % (path, os.readlink(path))
            )
        raise UnsafePath("%s: cannot open as a directory: %s" % (path, exc.strerror))
    info = os.fstat(fd)
    problem = None
    if info.st_uid != os.geteuid():
        problem = "is owned by uid %d, not by uid %d that collects evidence" % (info.st_uid, os.geteuid())
    elif info.st_mode & 0o022:
        problem = "is writable by group or others (mode %04o)" % (info.st_mode & 0o7777)
    if problem:
        os.close(fd)
        raise UnsafePath("refusing to write evidence under %s: it %s" % (path, problem))
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o700)
    return fd


def private_dir(root, *names):
    """<root>/<names...>, each created 0700 and opened without following a symbolic link.

    The evidence root and everything below it is responder's: a link anywhere there (`evidence ->
    /`) would send evidence wherever it points, so each name is opened relative to its parent's
    descriptor with O_NOFOLLOW and checked (ours, writable by nobody else). The root's parents
    (/var/lib) belong to the host's administrator and are created, not walked."""
    if not os.path.isabs(root) or ".." in root.split("/"):
        raise RejectedInput("evidence root %r must be an absolute path without '..'" % root)
    root = os.path.normpath(root)
    if not os.path.lexists(root):
        parent = os.path.dirname(root)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    fd = _open_private(root, None, root)
    path = root
    try:
        for name in names:
            path = os.path.join(path, name)
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=fd)
            child = _open_private(name, fd, path)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return path


def evidence_dir(root, incident, warnings=None):
    """<root>/<incident>, mode 0700, refusing anything that is not a validated incident ID and
    any link on the way (private_dir).

    Also moves stray `.partial` files left under <root> by an earlier collection that was cut
    short (a cancelled run over SSH, a crash) into <root>/quarantine; `warnings` hears of each."""
    if not INCIDENT_ID.match(incident or ""):
        raise RejectedInput("incident id %r is malformed" % incident)
    path = private_dir(root, incident)
    for moved in quarantine_stray_partials(os.path.normpath(root)):
        if warnings is not None:
            warnings.append(
                "quarantined %s/%s (%d bytes) from an interrupted collection: never hashed or recorded; now %s"
                % (moved["incident"], moved["name"], moved["size"], moved["path"])
            )
    return path


def quarantine_stray_partials(root):
    """Move every `<root>/<incident>/*.partial` that no writer holds into <root>/quarantine.

    A live EvidenceWriter keeps an exclusive flock on its .partial file, so a file we can lock
    belongs to a collection that is gone. Such a file was never hashed or recorded: it must not
    sit beside evidence as if it were some, nor be deleted (it may matter to the investigation)."""
    moved = []
    try:
        incidents = sorted(os.listdir(root))
    except OSError:
        return moved
    for incident in incidents:
        directory = os.path.join(root, incident)
        if not INCIDENT_ID.match(incident) or os.path.islink(directory) or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".partial"):
                continue
            source = os.path.join(directory, name)
            try:
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (IOError, OSError) as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        continue  # still being written
                    raise
                # Locked, but is it still the stray? A writer that finished meanwhile renamed it
                # (then unlocked): the lock is ours only because the file is no longer a .partial.
                try:
                    here = os.stat(source, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                mine = os.fstat(fd)
                if (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
                    continue
                quarantine = private_dir(root, "quarantine")
                target = os.path.join(quarantine, "%s-%s" % (incident, name))
                suffix = 1
                while os.path.exists(target):
                    target = os.path.join(quarantine, "%s-%s.%d" % (incident, name, suffix))
                    suffix += 1
                size = os.fstat(fd).st_size
                try:
                    os.rename(source, target)
                except FileNotFoundError:  # another sweep moved it first
                    continue
                os.chmod(target, 0o400)
                moved.append({"incident": incident, "name": name, "size": size, "path": target})
            finally:
                os.close(fd)
    return moved


# Write-behind for large evidence files. Every WRITEBACK_EVERY bytes the new range's disk writes
# are started (sync_file_range WRITE: no wait), and the range before it, by now on its way, is
# waited for and dropped from the page cache (POSIX_FADV_DONTNEED). Two reasons:
# - the final fsync does not find hundreds of megabytes of dirty pages to write at once;
# - a multi-gigabyte export does not push the host's working set (the other containers' files)
#   out of the page cache, and it keeps reusing the same few megabytes of pages. Fresh pages are
#   not free: in a VM whose memory is handed back to the hypervisor, first touching them costs
#   more than the disk write (B5: 1.5 s instead of 0.8 s for 316 MB).
# Durability still comes from the fsync in commit().
WRITEBACK_EVERY = 16 * 1024 * 1024
_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4
_WAIT_AND_WRITE = _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER
_sync_file_range = None


def _sync_range(fd, offset, length, flags):
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            function = libc.sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = function
        except (OSError, AttributeError):  # not Linux/glibc: the final fsync does it all
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, flags)
        return True
    return False


def _drop_cached(fd, offset, length):
    """Forget written pages (they must be on disk already, or the kernel keeps them)."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class EvidenceWriter(object):
    """Writes `<dir>/<name>.partial`, hashing as bytes arrive, then fsync, rename, read-only.

    An interrupted write leaves only the .partial file, never a file under the final name.
    """

    NAME = re.compile(r"^[0-9a-f]{12}-[0-9TZ]+-[a-z0-9_]+\.[a-z.]+$")

    def __init__(self, directory, name):
        if not self.NAME.match(name):
            raise RejectedInput("evidence name %r is not a generated name" % name)
        self.directory = directory
        self.final = os.path.join(directory, name)
        self.partial = self.final + ".partial"
        real_dir = os.path.realpath(directory)
        if os.path.dirname(os.path.realpath(self.final)) != real_dir:
            raise RejectedInput("evidence path escapes its directory")
        # Created under a name the quarantine does not look at, locked, and only then renamed to
        # .partial: the lock (held until the file is renamed or removed) tells
        # quarantine_stray_partials the file is live, and no sweep can find it unlocked in between
        # (a fleet snapshots several containers at once, and several incidents share a host).
        creating = self.final + ".creating"
        self.fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            os.link(creating, self.partial)  # fails, like O_EXCL, if that .partial exists
        finally:
            os.unlink(creating)
        self.sha = hashlib.sha256()
        self.size = 0
        self.flushed = 0
        self.behind = None  # the range whose writeback was started last time: waited for, then dropped

    def write(self, chunk):
        self.sha.update(chunk)
        self.size += len(chunk)
        view = memoryview(chunk)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if self.size - self.flushed >= WRITEBACK_EVERY:
            _sync_range(self.fd, self.flushed, self.size - self.flushed, _SYNC_FILE_RANGE_WRITE)
            if self.behind is not None:
                offset, length = self.behind
                if _sync_range(self.fd, offset, length, _WAIT_AND_WRITE):
                    _drop_cached(self.fd, offset, length)
            self.behind = (self.flushed, self.size - self.flushed)
            self.flushed = self.size

    def commit(self):
        os.fsync(self.fd)
        if self.size >= WRITEBACK_EVERY:
            _drop_cached(self.fd, 0, 0)
        # Renamed while still locked: a sweep must never find the .partial unlocked.
        os.rename(self.partial, self.final)
        os.fchmod(self.fd, 0o400)
        os.close(self.fd)
        self.fd = None
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return {
            "path": self.final,
            "name": os.path.basename(self.final),
            "sha256": self.sha.hexdigest(),
            "size": self.size,
        }

    def abort(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if os.path.exists(self.partial):
            os.unlink(self.partial)


@contextlib.contextmanager
def _evidence_being_written(directory, name):
    """An EvidenceWriter that is aborted (its .partial removed) if anything goes wrong before
    commit; a failed write says how far it got (ENOSPC and friends)."""
    writer = EvidenceWriter(directory, name)
    try:
        yield writer
    except OSError as exc:
        writer.abort()
        raise OSError(
            exc.errno, "%s after %d bytes of %s (partial file removed)" % (exc.strerror, writer.size, name)
        )
    except BaseException:
        writer.abort()
        raise


def stream_command_to_evidence(argv, directory, name, timeout=3600):
    """Run argv (no shell) with stdout and stderr going, hashed, into one evidence file."""
    with _evidence_being_written(directory, name) as writer:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            while True:
                chunk = proc.stdout.read(CHUNK)
                if not chunk:
                    break
                writer.write(chunk)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if rc != 0:
            raise DockerError("%s exited with %d" % (" ".join(argv[:3]), rc))
        return writer.commit()


class _Demultiplexer(object):
    """Undoes the Engine API's framing of a non-TTY container's output: each frame is an 8-byte
    header (stream: 1 stdout, 2 stderr; 4-byte big-endian length) and the payload. Payloads come
    out in the order the daemon sent them, as `docker logs` writes them."""

    def __init__(self):
        self.pending = bytearray()

    def feed(self, chunk):
        self.pending += chunk
        out = bytearray()
        while len(self.pending) >= 8:
            size = int.from_bytes(bytes(self.pending[4:8]), "big")
            if len(self.pending) < 8 + size:
                break
            out += self.pending[8 : 8 + size]
            del self.pending[: 8 + size]
        return bytes(out)

    def close(self, path, size):
        if self.pending:
            raise DockerError("docker API GET %s cut short inside a frame after %d bytes" % (path, size))


def stream_api_to_evidence(docker, path, directory, name, inactivity_timeout=None, demultiplex=False):
    """An Engine API GET (`docker export` is /containers/ID/export), hashed into an evidence file;
    `demultiplex` strips the stdout/stderr framing of a non-TTY container's logs."""
    inactivity_timeout = inactivity_timeout or docker.timeout
    demuxer = _Demultiplexer() if demultiplex else None
    with _evidence_being_written(directory, name) as writer:
        conn, response = docker.api_stream(path, inactivity_timeout)
        received = 0
        try:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            while True:
                try:
                    count = response.readinto(buffer)
                except socket.timeout:
                    raise DockerError(
                        "docker API GET %s stalled: no data for %gs" % (path, inactivity_timeout),
                        "docker_timeout",
                    )
                except HTTPException as exc:  # dockerd closed the stream early: container gone, daemon died
                    raise DockerError(
                        "docker API GET %s cut short after %d bytes (%s)"
                        % (path, received, exc.__class__.__name__)
                    )
                if not count:
                    break
                received += count
                writer.write(demuxer.feed(view[:count]) if demuxer else view[:count])
            if demuxer:
                demuxer.close(path, received)
        finally:
            response.close()
            conn.close()
        return writer.commit()


# What the modules collect from a running container, by kind: the Engine API request (and the
# file extension of what it returns), or the docker CLI command when the API is not in use.
_TOP_ARGS = "pid,ppid,user,lstart,args"
_SOURCES = {
    "processes": (
        "/containers/{cid}/top?ps_args=-eo%20pid%2Cppid%2Cuser%2Clstart%2Cargs",
        "json",
        ["top", "{cid}", "-eo", _TOP_ARGS],
        "txt",
        "docker top -eo " + _TOP_ARGS,
    ),
    "diff": ("/containers/{cid}/changes", "json", ["diff", "{cid}"], "txt", "docker diff"),
    "logs": (
        "/containers/{cid}/logs?stdout=1&stderr=1&timestamps=1",
        "txt",
        ["logs", "--timestamps", "--", "{cid}"],
        "txt",
        "docker logs --timestamps (stdout+stderr)",
    ),
}


def collect_to_evidence(docker, kind, cid, directory, prefix, tty=False):
    """The process list, filesystem changes or logs of container `cid` (a full ID) into the evidence
    file `<prefix>-<kind>.<ext>`; returns the item with the `method` that collected it.

    Through the API the daemon's own answer is kept (JSON for top and changes); `tty` says whether
    the logs come unframed (a container started with -t)."""
    path, api_ext, argv, cli_ext, what = _SOURCES[kind]
    if docker.use_api:
        item = stream_api_to_evidence(
            docker,
            path.replace("{cid}", quote(cid, safe="")),
            directory,
            "%s-%s.%s" % (prefix, kind, api_ext),
            demultiplex=(kind == "logs" and not tty),
        )
        item["method"] = "%s, via Engine API GET %s" % (what, path.split("?")[0].replace("{cid}", "ID"))
    else:
        argv = [docker.binary] + [cid if arg == "{cid}" else arg for arg in argv]
        item = stream_command_to_evidence(argv, directory, "%s-%s.%s" % (prefix, kind, cli_ext))
        item["method"] = what
    return item


def bytes_to_evidence(data, directory, name):
    with _evidence_being_written(directory, name) as writer:
        writer.write(data)
        return writer.commit()


class LogsUnreadable(DockerError):
    """The container's log driver keeps nothing the daemon can read back (`none`, or a remote
    driver with its local cache disabled): there are no logs to capture, which is a fact about the
    container, not a failure to retry."""

    def __init__(self, message):
        super(LogsUnreadable, self).__init__(message, reason="logs_unreadable")


def capture_logs(docker, directory, cid, prefix, versions, tty=False, note=""):
    """The logs (stdout and stderr, with timestamps) to an evidence file; LogsUnreadable if the
    log driver cannot be read back."""
    started = utc_now()
    try:
        logs = collect_to_evidence(docker, "logs", cid, directory, prefix, tty=tty)
    except DockerError as exc:
        if "does not support reading" in str(exc):
            raise LogsUnreadable(str(exc))
        raise
    logs.update(
        kind="logs",
        method=logs["method"] + note,
        started_at=started,
        collected_at=utc_now(),
        container_id=cid,
        tool_versions=versions,
    )
    return logs


def capture_inspect(docker, directory, cid, prefix, versions, note=""):
    started = utc_now()
    inspect = bytes_to_evidence(docker.inspect_raw(cid), directory, prefix + "-inspect.json")
    inspect.update(
        kind="inspect",
        method="docker inspect" + (", via Engine API" if docker.use_api else "") + note,
        started_at=started,
        collected_at=utc_now(),
        container_id=cid,
        tool_versions=versions,
    )
    return inspect


def capture_logs_and_inspect(docker, directory, cid, log_driver, warnings, tty=False, note=""):
    """Logs and inspect JSON to evidence files. A container whose logs cannot be read back gets
    its inspect JSON only, and `warnings` (a list) hears where its logs went instead."""
    versions = {"docker": docker.version()}
    prefix = "%s-%s" % (cid[:12], compact_utc())
    evidence = []
    try:
        evidence.append(capture_logs(docker, directory, cid, prefix, versions, tty=tty, note=note))
    except LogsUnreadable:
        warnings.append(
            "no logs captured: log driver %s keeps nothing docker can read back%s"
            % (log_driver, "" if log_driver == "none" else "; collect them where that driver sends them")
        )
    evidence.append(capture_inspect(docker, directory, cid, prefix, versions, note=note))
    return evidence
