#!/usr/bin/env bash
# Make this machine able to run responder's demo and tests: system packages, a running dockerd,
# the venv, and a tiny busybox image built locally (no registry needed). Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
# Containers on the host's network (or another container's) are isolated with nftables.
command -v nft >/dev/null || need_pkgs+=(nftables)
# The Podman tests drive Debian's podman through its Docker-compatible API socket.
command -v podman >/dev/null || need_pkgs+=(podman)
# The systemd unit is checked with systemd-analyze verify; the TLS test makes its certificate.
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# The export tests open the HTML report in a real headless browser.
if [ "${RESPONDER_WITH_BROWSER:-0}" = 1 ]; then command -v chromium >/dev/null || need_pkgs+=(chromium); fi
# The container image test builds on a Debian base made here (no registry is reachable).
if [ "${RESPONDER_WITH_IMAGE:-0}" = 1 ]; then command -v debootstrap >/dev/null || need_pkgs+=(debootstrap); fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "== installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "== starting dockerd"
  mkdir -p /var/log
  (setsid dockerd >/var/log/responder-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/responder-dockerd.log"; exit 1; }
fi

if ! docker image inspect responder-test/busybox:latest >/dev/null 2>&1; then
  echo "== building responder-test/busybox from busybox-static"
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/data"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - responder-test/busybox:latest >/dev/null
  rm -rf "$rootfs"
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import responder, ansible_runner, pytest, psycopg" 2>/dev/null; then
  echo "== installing responder and its dev tools into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev]"
fi
# An editable install is not byte-compiled by pip; do it so that start-up does not recompile.
.venv/bin/python -m compileall -q responder >/dev/null

# The container image test (tests/integration/test_container_image.py) builds the image offline:
# on a Debian base with Python made here by debootstrap, from wheels of every dependency gathered
# here, so that the build itself needs no network.
if [ "${RESPONDER_WITH_IMAGE:-0}" = 1 ]; then
  if ! docker image inspect responder-test/debian-python:bookworm >/dev/null 2>&1; then
    echo "== building responder-test/debian-python:bookworm with debootstrap"
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase --include=python3,python3-venv,openssh-client,ca-certificates \
      bookworm "$rootfs" http://deb.debian.org/debian >/var/log/responder-debootstrap.log 2>&1 \
      || { echo "debootstrap failed; see /var/log/responder-debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - responder-test/debian-python:bookworm >/dev/null
    rm -rf "$rootfs"
  fi
  # A Podman host in a box (systemd, journald, podman.socket, sshd) for the Podman-over-SSH tests.
  if ! docker image inspect responder-test/podman-host:bookworm >/dev/null 2>&1; then
    echo "== building responder-test/podman-host:bookworm"
    docker build -q -t responder-test/podman-host:bookworm tests/fixtures/podman-host >/var/log/responder-podman-host.log 2>&1 \
      || { echo "podman host image build failed; see /var/log/responder-podman-host.log"; exit 1; }
  fi
  # PostgreSQL from Debian's package, run as its own user in a container, for the store tests.
  if ! docker image inspect responder-test/postgres:15 >/dev/null 2>&1; then
    echo "== building responder-test/postgres:15"
    docker build -q -t responder-test/postgres:15 tests/fixtures/postgres >/var/log/responder-postgres.log 2>&1 \
      || { echo "PostgreSQL image build failed; see /var/log/responder-postgres.log"; exit 1; }
  fi
  if [ ! -f .cache/wheelhouse/.complete ]; then
    echo "== gathering dependency wheels for the offline image build"
    rm -rf .cache/wheelhouse
    .venv/bin/pip wheel -q -w .cache/wheelhouse . >/dev/null
    rm -f .cache/wheelhouse/responder-*.whl
    touch .cache/wheelhouse/.complete
  fi
fi
