"""Directories responder writes under are never reached through a symbolic link, nor someone
else's, nor writable by others (#18 section 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from responder.private_dirs import UnsafePath, ensure_private_dir
from responder.settings import Settings


def settings(tmp_path: Path) -> Settings:
    return Settings(tmp_path / "data", (), ())


def test_creates_each_level_0700(tmp_path: Path) -> None:
    s = settings(tmp_path)
    leaf = s.private_dir("runs", "INC-1", "01-isolate")
    assert leaf == tmp_path / "data" / "runs" / "INC-1" / "01-isolate"
    for path in (s.data_dir, s.data_dir / "runs", s.data_dir / "runs" / "INC-1", leaf):
        assert path.is_dir() and not path.is_symlink() and path.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("where", [("evidence",), ("runs",), ("evidence", "INC-1"), ("server",)])
def test_a_link_anywhere_below_the_data_dir_is_refused_and_nothing_lands_behind_it(
    tmp_path: Path, where: tuple[str, ...]
) -> None:
    s = settings(tmp_path)
    s.private_dir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = s.data_dir.joinpath(*where)
    link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    link.symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match=f"{link} is a symbolic link") as caught:
        s.private_dir(*where, "INC-2")
    assert caught.value.exit_code == 2
    assert list(elsewhere.iterdir()) == []


def test_the_data_dir_itself_may_not_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "data").symlink_to(real)
    with pytest.raises(UnsafePath, match="is a symbolic link"):
        settings(tmp_path).private_dir("evidence")
    assert list(real.iterdir()) == []


def test_a_link_to_the_root_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path)
    s.private_dir()
    (s.data_dir / "evidence").symlink_to("/")
    with pytest.raises(UnsafePath, match="evidence is a symbolic link"):
        s.private_dir("evidence", "INC-20261203-000000-abcd")
    assert not Path("/INC-20261203-000000-abcd").exists()


def test_writable_by_others_is_refused_readable_is_tightened(tmp_path: Path) -> None:
    s = settings(tmp_path)
    runs = s.private_dir("runs")
    os.chmod(runs, 0o777)
    with pytest.raises(UnsafePath, match="writable by group or others"):
        s.private_dir("runs", "x")
    os.chmod(runs, 0o755)
    s.private_dir("runs", "x")
    assert runs.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",  # CI runs as root: there it always runs
    reason="changing a directory's owner needs root",
)
def test_someone_elses_directory_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path)
    evidence = s.private_dir("evidence")
    os.chown(evidence, 65534, 65534)
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        s.private_dir("evidence", "INC-1")


def test_a_file_where_a_directory_belongs_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path)
    s.private_dir()
    (s.data_dir / "runs").write_text("not a dir")
    with pytest.raises(UnsafePath, match="is not a directory"):
        s.private_dir("runs", "x")


def test_paths_outside_the_owned_root_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePath, match="is not under"):
        ensure_private_dir(tmp_path / "a", tmp_path / "b")
