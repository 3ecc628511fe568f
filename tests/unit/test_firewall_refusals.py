"""#16: a host where cgroup-matched firewall rules cannot work is told exactly what it lacks
(and the module then says to pause or stop instead), read from /proc-shaped files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from responder.settings import shipped_dir


def _firewall() -> ModuleType:
    path = shipped_dir("runbooks") / "module_utils" / "responder_firewall.py"
    spec = importlib.util.spec_from_file_location("responder_firewall_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


firewall = _firewall()
HYBRID = "35 24 0:30 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n"
V1_ONLY = "30 24 0:26 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory\n"


def _proc(tmp_path: Path, mountinfo: str, cgroup: str, pid: int = 4242) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cgroup").write_text(cgroup)
    return proc


def test_without_nft_it_says_so(tmp_path: Path) -> None:
    proc = _proc(tmp_path, HYBRID, "0::/docker/abc\n")
    with pytest.raises(firewall.FirewallUnavailable, match=r"nftables \(the nft command\) is not installed"):
        firewall.container_cgroup(4242, proc=str(proc), which=lambda name: None)


def test_on_cgroup_v1_only_it_says_so(tmp_path: Path) -> None:
    proc = _proc(tmp_path, V1_ONLY, "4:memory:/docker/abc\n")
    with pytest.raises(firewall.FirewallUnavailable, match=r"no cgroup v2 hierarchy .* \(cgroup v1 only\)"):
        firewall.container_cgroup(4242, proc=str(proc), which=lambda name: "/usr/sbin/nft")
    hybrid_but_root = _proc(tmp_path / "b", HYBRID, "4:memory:/docker/abc\n0::/\n")
    with pytest.raises(firewall.FirewallUnavailable, match="no cgroup v2 of its own"):
        firewall.container_cgroup(4242, proc=str(hybrid_but_root), which=lambda name: "/usr/sbin/nft")


def test_a_hybrid_host_gives_nft_the_path_under_sys_fs_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "sys-fs-cgroup"
    (root / "unified" / "docker" / "abc").mkdir(parents=True)
    mountinfo = HYBRID.replace("/sys/fs/cgroup/unified", str(root / "unified"))
    proc = _proc(tmp_path, mountinfo, "0::/docker/abc\n")
    path, level, directory = firewall.container_cgroup(
        4242, proc=str(proc), which=lambda name: "/usr/sbin/nft", cgroup_root=str(root)
    )
    assert (path, level) == ("unified/docker/abc", 2) and directory == str(
        root / "unified" / "docker" / "abc"
    )


def test_table_names_and_rules_carry_nothing_but_what_they_should() -> None:
    name = firewall.table_name("INC-20261203-010203-abcd", "c" * 64)
    assert name == "responder_INC_20261203_010203_abcd_cccccccccccc"
    rules = firewall.ruleset(name, "unified/docker/abc", 2, "c" * 64, 'evil"; flush ruleset; "')
    assert "flush ruleset" not in rules.replace(
        "evilflushruleset", ""
    )  # the name is reduced to safe characters
    assert rules.count('socket cgroupv2 level 2 "unified/docker/abc" counter drop') == 2
