"""The filesystem export read straight from the Engine API socket into an evidence file.

A small HTTP server on a unix socket plays dockerd so that the stream's bad endings (cut short,
stalled, an error status) happen on cue; the happy path against the real dockerd is covered by
the integration tests and B5.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.conftest import load_module_utils, respond

ID = "0123456789ab"


rd = load_module_utils()


def _chunked(conn: socket.socket, parts: list[bytes], finish: bool) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in parts:
        conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    if finish:
        conn.sendall(b"0\r\n\r\n")


def _evidence_dir(tmp_path: Path) -> str:
    directory = tmp_path / "evidence"
    directory.mkdir(mode=0o700)
    return str(directory)


def test_whole_stream_is_hashed_and_committed(fake_dockerd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(70_000), os.urandom(3), os.urandom(1 << 20)]
    docker = fake_dockerd(lambda conn: _chunked(conn, parts, finish=True))
    item = rd.stream_api_to_evidence(
        docker, "/containers/x/export", _evidence_dir(tmp_path), f"{ID}-1Z-rootfs.tar"
    )
    whole = b"".join(parts)
    assert item["sha256"] == hashlib.sha256(whole).hexdigest() and item["size"] == len(whole)
    assert Path(item["path"]).read_bytes() == whole
    assert oct(os.stat(item["path"]).st_mode & 0o777) == oct(0o400)


def test_stream_cut_short_leaves_nothing_under_the_final_name(fake_dockerd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docker = fake_dockerd(lambda conn: _chunked(conn, [os.urandom(50_000)], finish=False))
    directory = _evidence_dir(tmp_path)
    with pytest.raises(rd.DockerError, match="cut short after"):
        rd.stream_api_to_evidence(docker, "/containers/x/export", directory, f"{ID}-1Z-rootfs.tar")
    assert os.listdir(directory) == []


def test_stalled_stream_times_out_and_cleans_up(fake_dockerd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def stall(conn: socket.socket) -> None:
        _chunked(conn, [b"x" * 1000], finish=False)
        release.wait(10)

    docker = fake_dockerd(stall)
    directory = _evidence_dir(tmp_path)
    try:
        with pytest.raises(rd.DockerError, match=r"stalled: no data for 0\.5s") as caught:
            rd.stream_api_to_evidence(
                docker, "/containers/x/export", directory, f"{ID}-1Z-rootfs.tar", inactivity_timeout=0.5
            )
        assert caught.value.reason == "docker_timeout"
    finally:
        release.set()
    assert os.listdir(directory) == []


def test_error_status_is_dockers_message(fake_dockerd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docker = fake_dockerd(respond("404 Not Found", b'{"message":"No such container: x"}'))
    directory = _evidence_dir(tmp_path)
    with pytest.raises(rd.DockerError, match="No such container: x"):
        rd.stream_api_to_evidence(docker, "/containers/x/export", directory, f"{ID}-1Z-rootfs.tar")
    assert os.listdir(directory) == []


def _resident_bytes(path: str) -> int:
    """Bytes of `path` in the page cache (mincore over a shared read-only mapping)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        assert address not in (None, ctypes.c_void_p(-1).value)
        vector = (ctypes.c_ubyte * ((size + page - 1) // page))()
        assert libc.mincore(address, size, vector) == 0
        libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vector) * page


def test_large_evidence_does_not_stay_in_the_page_cache() -> None:
    """Write-behind: a big export keeps reusing a few megabytes of page cache instead of filling
    it (and pushing the host's working set out). On disk, not tmpfs, where pages are the data."""
    import tempfile

    directory = tempfile.mkdtemp(dir="/var/tmp")
    try:
        os.chmod(directory, 0o700)
        writer = rd.EvidenceWriter(directory, f"{ID}-1Z-rootfs.tar")
        block = os.urandom(1 << 20)
        for _ in range(96):
            writer.write(block)
        window = 3 * rd.WRITEBACK_EVERY
        assert _resident_bytes(writer.partial) <= window  # mid-stream: only the last ranges
        item = writer.commit()
        assert item["size"] == 96 << 20
        assert _resident_bytes(item["path"]) <= 1 << 20  # committed: all on disk, none cached
        assert hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest() == item["sha256"]
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


@pytest.mark.parametrize("directory", ["/var/tmp", "/dev/shm"])
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, (8 << 20) + 7, 20_000_001])
def test_controller_hash_reads_the_stored_bytes(directory: str, size: int) -> None:
    """O_DIRECT where the filesystem has it (disk), plain reads where it has not (tmpfs); any size."""
    from responder.evidence import sha256_file

    path = Path(directory) / f"responder-hash-{os.getpid()}"
    data = os.urandom(size)
    path.write_bytes(data)
    try:
        assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    finally:
        path.unlink()


def test_local_fetch_copies_exactly_and_leaves_little_cached() -> None:
    import tempfile

    spec = importlib.util.spec_from_file_location(
        "responder_fetch_under_test", REPO / "runbooks" / "action_plugins" / "responder_fetch_evidence.py"
    )
    assert spec and spec.loader
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    directory = tempfile.mkdtemp(dir="/var/tmp")
    source, target = os.path.join(directory, "source"), os.path.join(directory, "target")
    try:
        data = os.urandom((50 << 20) + 12345)
        Path(source).write_bytes(data)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            plugin.copy_write_behind(source, fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        assert _resident_bytes(target) <= 2 * plugin.STEP  # all but the last ranges dropped
        assert Path(target).read_bytes() == data
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def test_a_second_sigterm_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    """Ansible's worker passes SIGTERM on to its process group, so a cancelled module gets it more
    than once. The first unwinds the collection; one arriving while the .partial file is being
    removed must not stop that removal."""
    import subprocess
    import sys

    directory = _evidence_dir(tmp_path)
    script = f"""
import os, signal, sys, time
sys.path.insert(0, {str(REPO / "runbooks" / "module_utils")!r})
import responder_docker as rd
rd.exit_cleanly_on_termination()
original_abort = rd.EvidenceWriter.abort
def abort_under_fire(self):
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's killpg, landing mid-cleanup
    time.sleep(0.05)
    original_abort(self)
rd.EvidenceWriter.abort = abort_under_fire
try:
    with rd._evidence_being_written({directory!r}, "{ID}-1Z-rootfs.tar") as writer:
        writer.write(b"x" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
except rd.Terminated:
    print("unwound")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "unwound", proc.stderr
    assert os.listdir(directory) == []


def test_a_sweep_never_quarantines_a_partial_that_is_being_written(tmp_path: Path) -> None:
    """#13: a fleet snapshots several containers at once, each thread's evidence_dir() sweeps for
    strays: a writer's .partial must never be visible before its lock is held."""
    root = tmp_path / "evidence"
    directory = Path(rd.private_dir(str(root), "INC-20261203-000000-0001"))
    stop = threading.Event()
    moved: list[dict] = []

    def sweep() -> None:
        while not stop.is_set():
            moved.extend(rd.quarantine_stray_partials(str(root)))

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        for n in range(300):
            writer = rd.EvidenceWriter(str(directory), f"{n:012x}-20261203T000000Z-logs.txt")
            writer.write(b"x")
            writer.commit()
    finally:
        stop.set()
        sweeper.join()
    assert moved == []
    assert len([p for p in directory.iterdir() if p.name.endswith(".txt")]) == 300
