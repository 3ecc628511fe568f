"""The host-side claim (runbooks/module_utils claim_container): one incident acts on a container
at a time, whatever reference each used, and a finished incident's claim is taken over."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tests.unit.conftest import load_module_utils

rd = load_module_utils()
CID = "ab" * 32
A = "INC-20261201-100000-aaaa"
B = "INC-20261201-100005-bbbb"
NOW = "20261201-100010"


def test_first_claim_wins_and_is_kept(tmp_path: Path) -> None:
    assert rd.claim_container(str(tmp_path), CID, A, set(), NOW) == (None, None)
    assert rd.claim_container(str(tmp_path), CID, A, set(), NOW) == (None, None)  # ours: a retried step
    stored = json.loads((tmp_path / "claims" / CID).read_text())
    assert stored["incident"] == A and (tmp_path / "claims").stat().st_mode & 0o777 == 0o700


def test_an_open_holder_holds(tmp_path: Path) -> None:
    rd.claim_container(str(tmp_path), CID, A, set(), NOW)
    assert rd.claim_container(str(tmp_path), CID, B, {A}, NOW) == (A, None)
    assert json.loads((tmp_path / "claims" / CID).read_text())["incident"] == A


def test_a_holder_newer_than_what_this_run_knows_holds(tmp_path: Path) -> None:
    newer = "INC-20261201-100020-cccc"
    rd.claim_container(str(tmp_path), CID, newer, set(), "20261201-100030")
    assert rd.claim_container(str(tmp_path), CID, A, set(), NOW) == (newer, None)


def test_a_closed_holder_is_taken_over_and_named(tmp_path: Path) -> None:
    rd.claim_container(str(tmp_path), CID, A, set(), NOW)
    assert rd.claim_container(str(tmp_path), CID, B, set(), NOW) == (None, A)
    assert json.loads((tmp_path / "claims" / CID).read_text())["previous"] == A


def test_check_mode_reports_without_claiming(tmp_path: Path) -> None:
    assert rd.claim_container(str(tmp_path), CID, A, set(), NOW, True) == (None, None)
    assert not (tmp_path / "claims" / CID).exists()


def test_racing_claims_leave_exactly_one_holder(tmp_path: Path) -> None:
    incidents = [f"INC-20261201-100000-{i:04x}" for i in range(16)]
    results: dict[str, tuple[str | None, str | None]] = {}

    def claim(incident: str) -> None:
        others = {i for i in incidents if i != incident}
        results[incident] = rd.claim_container(str(tmp_path), CID, incident, others, NOW)

    threads = [threading.Thread(target=claim, args=(i,)) for i in incidents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, (holder, _) in results.items() if holder is None]
    assert len(winners) == 1
    assert all(holder == winners[0] for i, (holder, _) in results.items() if i != winners[0])


def test_a_link_where_claims_live_is_refused(tmp_path: Path) -> None:
    import pytest

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    (root / "claims").symlink_to(elsewhere)
    with pytest.raises(rd.UnsafePath, match="symbolic link"):
        rd.claim_container(str(root), CID, A, set(), NOW)
    assert list(elsewhere.iterdir()) == []


def test_a_resumed_older_incident_yields_to_a_newer_open_holder(tmp_path: Path) -> None:
    """A closed, then resumed: meanwhile B (newer) took the container and is still open."""
    rd.claim_container(str(tmp_path), CID, A, set(), NOW)
    assert rd.claim_container(str(tmp_path), CID, B, set(), NOW) == (None, A)  # A had closed
    assert rd.claim_container(str(tmp_path), CID, A, {B}, "20261201-100100") == (B, None)
