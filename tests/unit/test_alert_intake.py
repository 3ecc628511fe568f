"""Alert payload parsing, routing by `match:` and webhook authentication: no server, no Docker."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from responder.catalog import Catalog, load_catalog
from responder.errors import ConfigError, PlaybookError
from responder.intake import alerts as alerts_mod
from responder.intake.alerts import BadJSON, ShapeError, alertmanager_warnings, decode, parse_alertmanager
from responder.intake.routing import RejectedInput, Router, resolve_pointer
from responder.locks import container_key, lock_key
from responder.playbook.parse import load_playbook
from responder.server import auth as auth_mod
from responder.server.auth import Auth, load_auth, sign_hub, sign_timestamped
from responder.settings import shipped_dir
from tests.conftest import FIXTURES

AM: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="WhIsolate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "responder",
    "groupLabels": {"alertname": "WhIsolate"},
    "commonLabels": {"alertname": "WhIsolate"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "WhIsolate",
                "container": "web-1",
                "severity": "critical",
                "instance": "node1",
            },
            "annotations": {"summary": "shell in web-1"},
            "startsAt": "2026-11-29T03:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": "5f1e2d3c4b5a6978",
        }
    ],
}

FALCO: dict[str, Any] = {
    "uuid": "e5a7b3c4-0d1e-4f5a-9b8c-7d6e5f4a3b2c",
    "output": "10:00:00.000: Warning A shell was spawned in a container (user=root container_id=0123456789ab)",
    "priority": "Warning",
    "rule": "Wh shell in container",
    "time": "2026-11-29T03:00:00.123456789Z",
    "source": "syscall",
    "tags": ["container", "shell", "mitre_execution"],
    "hostname": "dockerhost",
    "output_fields": {
        "container.id": "0123456789ab",
        "container.name": "web-1",
        "proc.cmdline": "sh -i",
        "evt.time": 1764385200123456789,
    },
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog([FIXTURES / "runbooks", shipped_dir("runbooks")])


@pytest.fixture(scope="module")
def router(catalog: Catalog) -> Router:
    paths = sorted((FIXTURES / "webhook").glob("*.yml"))
    return Router.from_playbooks([load_playbook(p, catalog) for p in paths])


# strict JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"a": ' + b"1" * 5000 + b"}", "digits"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": ', "malformed JSON at line 1"),
        (b"[" * 40 + b"]" * 40, "deeper than 32"),
    ],
)
def test_decoder_refuses_what_json_would_accept(body: bytes, message: str) -> None:
    with pytest.raises(BadJSON, match=message):
        decode(body)


def test_lone_surrogates_are_replaced_so_sqlite_can_store_them() -> None:
    value = decode(b'{"label": "a\\ud800b"}')
    value["label"].encode("utf-8")  # does not raise
    assert value["label"].startswith("a") and value["label"].endswith("b")


# Alertmanager ----------------------------------------------------------------------------------


def test_alertmanager_payload_becomes_one_alert_per_entry() -> None:
    payload = copy.deepcopy(AM)
    second = copy.deepcopy(payload["alerts"][0])
    second["labels"]["container"] = "web-2"
    second["fingerprint"] = "0000000000000002"
    second["status"] = "resolved"
    payload["alerts"].append(second)
    first, resolved = alerts_mod.parse_alertmanager(payload)
    assert first.dedup_key == "alertmanager:5f1e2d3c4b5a6978:2026-11-29T03:00:00.000Z"
    assert (first.name, first.severity, first.container, first.status) == (
        "WhIsolate",
        "critical",
        "web-1",
        "firing",
    )
    assert first.document["externalURL"] == "http://alertmanager:9093"  # notification fields are addressable
    assert resolved.status == "resolved" and not first.windowed


def test_alertmanager_payloads_its_schema_allows_are_taken() -> None:
    """Alertmanager never retries a 4xx: an empty, truncated or very large group is taken."""
    empty = copy.deepcopy(AM)
    empty.update(alerts=[], truncatedAlerts=4, groupKey="g")
    assert parse_alertmanager(empty) == []
    assert "left 4 alert(s) of group g" in alertmanager_warnings(empty)[0]
    big = copy.deepcopy(AM)
    big.update(alerts=[big["alerts"][0]] * 1001, truncatedAlerts=2)
    parsed = parse_alertmanager(big)
    assert len(parsed) == 1001 and "left 2 alert(s)" in parsed[0].warnings[0]
    assert parsed[0].summary()["warnings"] == list(parsed[0].warnings)
    assert alertmanager_warnings(copy.deepcopy(AM)) == ()


def test_numbers_past_a_double_stay_json() -> None:
    assert decode(b'{"a": 1e999, "b": -1e999, "c": 1.5}') == {"a": "1e999", "b": "-1e999", "c": 1.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(version="3"), 'version must be "4"'),
        (lambda p: p.pop("alerts"), "alerts must be an array"),
        (lambda p: p.update(alerts={"a": 1}), "alerts must be an array"),
        (lambda p: p["alerts"][0].update(status="pending"), 'status must be "firing" or "resolved"'),
        (lambda p: p["alerts"][0]["labels"].update(container=7), r"labels.container must be a string"),
        (lambda p: p["alerts"][0].pop("startsAt"), "startsAt must be a non-empty string"),
        (lambda p: p.update(alerts=[1]), r"alerts\[0\] must be a JSON object"),
    ],
)
def test_alertmanager_shape_errors(change: Any, message: str) -> None:
    payload = copy.deepcopy(AM)
    change(payload)
    with pytest.raises(ShapeError, match=message):
        alerts_mod.parse_alertmanager(payload)


def test_alertmanager_without_fingerprint_hashes_the_label_set() -> None:
    payload = copy.deepcopy(AM)
    del payload["alerts"][0]["fingerprint"]
    again = copy.deepcopy(payload)
    again["alerts"][0]["labels"] = dict(reversed(list(payload["alerts"][0]["labels"].items())))
    assert (
        alerts_mod.parse_alertmanager(payload)[0].dedup_key
        == alerts_mod.parse_alertmanager(again)[0].dedup_key
    )


# Falco -----------------------------------------------------------------------------------------


def test_falco_event_and_priority_spellings() -> None:
    (alert,) = alerts_mod.parse_falco(FALCO)
    assert (alert.container, alert.host, alert.severity) == ("0123456789ab", "dockerhost", "warning")
    assert alert.dedup_key == "falco:dockerhost:0123456789ab:Wh shell in container" and alert.windowed
    assert alert.labels["evt.time"] == "1764385200123456789"
    for spelling, canonical in (
        ("INFO", "informational"),
        ("Informational", "informational"),
        ("crit", "critical"),
    ):
        assert alerts_mod.falco_priority(spelling) == canonical
    with pytest.raises(ShapeError, match="not a Falco priority"):
        alerts_mod.falco_priority("urgent")


def test_falco_full_id_wins_and_host_events_have_no_container() -> None:
    event = copy.deepcopy(FALCO)
    event["output_fields"]["container.full_id"] = "0123456789ab" + "c" * 52
    (full,) = alerts_mod.parse_falco(event)
    assert full.container == "0123456789ab" + "c" * 52
    assert full.dedup_key == alerts_mod.parse_falco(FALCO)[0].dedup_key  # same container, same key
    for host_fields in ({"container.id": "host"}, {}):
        event = copy.deepcopy(FALCO)
        event["output_fields"] = host_fields
        del event["uuid"]
        (alert,) = alerts_mod.parse_falco(event)
        assert alert.container is None
        assert alert.dedup_key == "falco:dockerhost:host:Wh shell in container"


def test_falcosidekick_redelivery_gets_a_new_uuid_but_the_same_key() -> None:
    again = copy.deepcopy(FALCO)
    again["uuid"] = "11111111-2222-3333-4444-555555555555"
    assert alerts_mod.parse_falco(again)[0].dedup_key == alerts_mod.parse_falco(FALCO)[0].dedup_key


@pytest.mark.parametrize("field", ["rule", "priority"])
def test_falco_shape_errors(field: str) -> None:
    event = copy.deepcopy(FALCO)
    del event[field]
    with pytest.raises(ShapeError, match=field):
        alerts_mod.parse_falco(event)


def test_generic_payload() -> None:
    (alert,) = alerts_mod.parse_generic({"id": "evt-1", "name": "canary", "labels": {"value": "x"}})
    assert (alert.dedup_key, alert.status, alert.windowed) == ("generic:evt-1", "firing", False)
    with pytest.raises(ShapeError, match=r"payload\.id"):
        alerts_mod.parse_generic({"name": "x"})
    with pytest.raises(ShapeError, match="status"):
        alerts_mod.parse_generic({"id": "1", "name": "x", "status": "open"})


def test_container_key_treats_short_and_full_ids_alike(catalog: Catalog) -> None:
    pb = load_playbook(shipped_dir("playbooks") / "contain-container.yml", catalog)
    full = "0123456789ab" + "c" * 52
    assert container_key(full) == container_key("0123456789AB") == "0123456789ab"
    assert container_key("web-1") == "web-1"
    assert lock_key(pb, {"container": full}, "dockerhost", None) == lock_key(
        pb, {"container": "0123456789ab"}, "dockerhost", None
    )
    assert lock_key(pb, {"container": "web"}, None, None) != lock_key(pb, {"container": "web"}, "other", None)
    assert lock_key(pb, {"value": "x"}, None, None) is None
    # A fleet holds no single key: its containers are claimed one by one on their hosts.
    assert lock_key(pb, {"container": ["web-1", "web-2"]}, None, None) is None


# routing ---------------------------------------------------------------------------------------


def test_routing_by_source_name_priority_and_labels(router: Router) -> None:
    (am,) = alerts_mod.parse_alertmanager(AM)
    route = router.route(am)
    assert route is not None and route.playbook.name == "wh-isolate"
    assert route.run_inputs(am) == ({"container": "web-1"}, None)
    (falco,) = alerts_mod.parse_falco(FALCO)
    route = router.route(falco)
    assert route is not None and route.playbook.name == "wh-isolate"
    assert route.run_inputs(falco) == ({"container": "0123456789ab"}, "dockerhost")
    quiet = copy.deepcopy(FALCO)
    quiet["priority"] = "Notice"  # below the rule's `priority: warning` threshold
    assert router.route(alerts_mod.parse_falco(quiet)[0]) is None
    loud = copy.deepcopy(FALCO)
    loud["priority"] = "Critical"
    assert router.route(alerts_mod.parse_falco(loud)[0]) is not None
    other = copy.deepcopy(AM)
    other["alerts"][0]["labels"]["alertname"] = "SomethingElse"
    assert router.route(alerts_mod.parse_alertmanager(other)[0]) is None


def test_label_equality_and_regex(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "labels.yml"
    path.write_text(
        "name: labels\ndescription: d\nseverity: low\n"
        "match:\n  source: alertmanager\n  labels: {team: payments}\n  labels_regex: {container: 'web-[0-9]+'}\n"
        "  params: {value: /labels/container}\n"
        "params:\n  value: {type: string, required: true}\n"
        "steps:\n  - {id: echo, action: echo_value, with: {value: '{{ params.value }}'}}\n"
    )
    router = Router.from_playbooks([load_playbook(path, catalog)])
    payload = copy.deepcopy(AM)
    labels = payload["alerts"][0]["labels"]
    labels["team"] = "payments"
    assert router.route(alerts_mod.parse_alertmanager(payload)[0]) is not None
    labels["container"] = "web-1x"  # the regex must match the whole value
    assert router.route(alerts_mod.parse_alertmanager(payload)[0]) is None
    labels["container"], labels["team"] = "web-1", "search"
    assert router.route(alerts_mod.parse_alertmanager(payload)[0]) is None


@pytest.mark.parametrize(
    "container",
    ["web;rm -rf /", "$(id)", "--help", "-f", "{{ lookup('pipe','id') }}", "a" * 200, "web 1"],
)
def test_hostile_container_label_is_rejected_input(router: Router, container: str) -> None:
    payload = copy.deepcopy(AM)
    payload["alerts"][0]["labels"]["container"] = container
    (alert,) = alerts_mod.parse_alertmanager(payload)
    route = router.route(alert)
    assert route is not None
    with pytest.raises(RejectedInput, match="does not match the pattern"):
        route.run_inputs(alert)


@pytest.mark.parametrize("hostname", ["all", "web*", "!db", "~.*", "a,b", "{{ x }}", "ungrouped", "-x"])
def test_hostile_host_name_never_becomes_a_limit_pattern(router: Router, hostname: str) -> None:
    event = copy.deepcopy(FALCO)
    event["hostname"] = hostname
    (alert,) = alerts_mod.parse_falco(event)
    route = router.route(alert)
    assert route is not None
    with pytest.raises(RejectedInput, match="not a plain host name"):
        route.run_inputs(alert)


def test_pointers_follow_rfc6901() -> None:
    doc = {"a/b": {"m~n": [10, {"x": None}]}, "": 1}
    assert resolve_pointer(doc, "/a~1b/m~0n/0") == (True, 10)
    assert resolve_pointer(doc, "/a~1b/m~0n/1/x") == (True, None)
    assert resolve_pointer(doc, "/a~1b/m~0n/2") == (False, None)
    assert resolve_pointer(doc, "/missing") == (False, None)
    assert resolve_pointer(doc, "/") == (True, 1)


def test_numbers_from_alerts_are_typed_like_cli_strings(router: Router) -> None:
    (alert,) = alerts_mod.parse_generic(
        {"id": "1", "name": "slow", "container": "web", "labels": {"seconds": "5"}}
    )
    route = router.route(alert)
    assert route is not None and route.run_inputs(alert)[0] == {"container": "web", "seconds": 5}
    (missing,) = alerts_mod.parse_generic({"id": "2", "name": "slow", "labels": {}})
    with pytest.raises(RejectedInput, match="'container' is required"):
        route.run_inputs(missing)


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("{source: prometheus, params: {}}", "'prometheus' is not one of alertmanager, falco, generic"),
        (
            "{source: falco, alertname: X, params: {value: /output}}",
            "'alertname' applies only to source alertmanager",
        ),
        (
            "{source: alertmanager, priority: warning, params: {value: /x}}",
            "'priority' applies only to source falco",
        ),
        ("{source: falco, priority: urgent, params: {value: /x}}", "'urgent' is not one of"),
        ("{source: generic, params: {value: labels.value}}", "'labels.value' is not a JSON Pointer"),
        ("{source: generic, params: {valu: /labels/value}}", "unknown param 'valu'"),
        ("{source: generic, params: {}}", "required param 'value' is not mapped from the alert"),
        ("{source: generic, labels_regex: {a: '('}, params: {value: /v}}", "invalid regular expression"),
        ("{source: generic, labels: {a: 1}, params: {value: /v}}", "expected string, got integer"),
        ("{source: generic, rule: [], params: {value: /v}}", "non-empty list of strings"),
        ("{source: generic, params: {value: /v}, dedup_window: 0}", "must be at least 1"),
        ("{source: generic, param: {value: /v}}", "did you mean 'params'"),
        ("[]", "match needs at least one rule"),
    ],
)
def test_match_section_errors_name_the_line(
    catalog: Catalog, tmp_path: Path, match: str, message: str
) -> None:
    path = tmp_path / "bad-match.yml"
    path.write_text(
        "name: bad\ndescription: d\nseverity: low\n"
        f"match: {match}\n"
        "params:\n  value: {type: string, required: true}\n"
        "steps:\n  - {id: echo, action: echo_value, with: {value: '{{ params.value }}'}}\n"
    )
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, catalog)
    rendered = str(caught.value)
    assert message in rendered, rendered
    assert f"{path}:4:" in rendered


def test_shipped_playbooks_route_compromise_alerts(catalog: Catalog) -> None:
    router = Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted(shipped_dir("playbooks").glob("*.yml"))]
    )
    payload = copy.deepcopy(AM)
    labels = payload["alerts"][0]["labels"]
    labels["alertname"] = "ContainerCompromised"
    route = router.route(alerts_mod.parse_alertmanager(payload)[0])
    assert route is not None and route.playbook.name == "contain-container"  # severity critical
    labels["severity"] = "warning"
    route = router.route(alerts_mod.parse_alertmanager(payload)[0])
    assert route is not None and route.playbook.name == "isolate-container"


@pytest.mark.parametrize(
    "container", ["label:app=shop", "image:nginx:1.25", "web-1,web-2", "label:x=y,web-1"]
)
def test_an_alert_names_one_container_never_a_selector(catalog: Catalog, container: Any) -> None:
    # Alert text is attacker-influenced: a selector in it would widen the blast radius.
    router = Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted(shipped_dir("playbooks").glob("*.yml"))]
    )
    payload = copy.deepcopy(AM)
    payload["alerts"][0]["labels"].update(alertname="ContainerCompromised", container=container)
    (alert,) = alerts_mod.parse_alertmanager(payload)
    route = router.route(alert)
    assert route is not None and route.playbook.name == "contain-container"
    with pytest.raises(RejectedInput, match="must name one container"):
        route.run_inputs(alert)
    payload["alerts"][0]["labels"]["container"] = "web-1"
    (alert,) = alerts_mod.parse_alertmanager(payload)
    assert route.run_inputs(alert)[0]["container"] == "web-1"


def _stock_falco(rule: str, priority: str, *, sidekick: bool = False) -> dict[str, Any]:
    """An event as stock Falco's json_output writes it (and Falcosidekick forwards it, adding a uuid)."""
    event = {
        "hostname": "node-1",
        "output": f"12:00:00.000000000: {priority} {rule} (container_id=0123456789ab)",
        "output_fields": {"container.id": "0123456789ab", "container.name": "web-1", "evt.time": 1},
        "priority": priority,
        "rule": rule,
        "source": "syscall",
        "tags": ["container", "maturity_stable"],
        "time": "2026-12-03T12:00:00.000000000Z",
    }
    if sidekick:
        event["uuid"] = "1f0d6a3e-7a55-4d6c-9a59-2f6f5a0c1b2e"
    return event


@pytest.mark.parametrize(
    ("rule", "priority", "playbook"),
    [
        ("Terminal shell in container", "Notice", "isolate-container"),  # as it ships: Notice
        ("Redirect STDOUT/STDIN to Network Connection in Container", "Notice", "isolate-container"),
        ("Netcat Remote Code Execution in Container", "Warning", "isolate-container"),
        ("Drop and execute new binary in container", "Critical", "contain-container"),
        ("Fileless execution via memfd_create", "Critical", "contain-container"),
        ("Detect release_agent File Container Escapes", "Critical", "contain-container"),
        ("Terminal shell in container", "Informational", None),  # lowered by a local override
        ("Read sensitive file untrusted", "Warning", None),  # no container action for it
    ],
)
@pytest.mark.parametrize("sidekick", [False, True])
def test_stock_falco_rules_start_the_shipped_playbooks(
    catalog: Catalog, rule: str, priority: str, playbook: str | None, sidekick: bool
) -> None:
    router = Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted(shipped_dir("playbooks").glob("*.yml"))]
    )
    (alert,) = alerts_mod.parse_falco(_stock_falco(rule, priority, sidekick=sidekick))
    route = router.route(alert)
    assert (route.playbook.name if route else None) == playbook
    if route is not None:
        params, limit = route.run_inputs(alert)
        assert params["container"] == "0123456789ab" and limit == "node-1"  # act on the event's host


def test_a_shipped_playbook_takes_generic_alerts(catalog: Catalog) -> None:
    router = Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted(shipped_dir("playbooks").glob("*.yml"))]
    )
    body = {"id": "g-1", "name": "ContainerCompromised", "status": "firing", "container": "web-1"}
    (alert,) = alerts_mod.parse_generic(body)
    route = router.route(alert)
    assert route is not None and route.playbook.name == "contain-container"
    assert route.run_inputs(alert)[0]["container"] == "web-1"


# authentication --------------------------------------------------------------------------------

TOKEN = b"token-0123456789abcdef"
SECRET = b"hmac-secret-0123456789"
BODY = json.dumps(AM).encode()


def test_bearer_tokens() -> None:
    auth = Auth(tokens=(TOKEN,))
    assert auth.before_body({"Authorization": "Bearer " + TOKEN.decode()}).ok  # type: ignore[union-attr]
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + TOKEN.decode()[:-1]}):
        verdict = auth.before_body(header)
        assert verdict is not None and (verdict.ok, verdict.status) == (False, 401)
    verdict = auth.before_body({"Authorization": "Basic " + TOKEN.decode()})
    assert verdict is not None and verdict.status == 401


def test_every_comparison_goes_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    auth = Auth(tokens=(TOKEN, b"second-token-abcdefgh"), hmac_secrets=(SECRET,))
    auth.before_body({"Authorization": "Bearer " + TOKEN.decode()[:5]})
    assert len(calls) == 2  # every configured token, no early exit
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: equal lengths whatever was sent
    calls.clear()
    auth.with_body({auth_mod.HUB_HEADER: sign_hub(SECRET, BODY)}, BODY)
    assert len(calls) == 1


def test_hub_signature() -> None:
    auth = Auth(hmac_secrets=(SECRET,))
    headers = {auth_mod.HUB_HEADER: sign_hub(SECRET, BODY)}
    assert auth.before_body(headers) is None  # the body must be read first
    assert auth.with_body(headers, BODY).ok
    reserialised = json.dumps(json.loads(BODY), indent=1).encode()
    assert auth.with_body(headers, reserialised).status == 401
    assert auth.with_body({auth_mod.HUB_HEADER: sign_hub(b"other-secret-000000", BODY)}, BODY).status == 401
    assert auth.with_body({auth_mod.HUB_HEADER: "md5=abc"}, BODY).status == 401
    missing = auth.before_body({})
    assert missing is not None and missing.status == 400  # no signature header at all: 400, as EDA does


def test_timestamped_signature_and_replay_window() -> None:
    auth = Auth(hmac_secrets=(SECRET,))
    now = int(time.time())
    assert auth.with_body(sign_timestamped(SECRET, BODY, now), BODY).ok
    stale = auth.with_body(sign_timestamped(SECRET, BODY, now - 360), BODY)
    assert (stale.status, "stale") == (401, stale.reason[:5])
    future = auth.with_body(sign_timestamped(SECRET, BODY, now + 360), BODY)
    assert future.status == 401
    moved = sign_timestamped(SECRET, BODY, now)
    moved[auth_mod.TIMESTAMP_HEADER] = str(now - 1)  # the timestamp is signed too
    assert auth.with_body(moved, BODY).status == 401


def test_no_auth_configured_lets_alerts_and_reads_in_but_never_a_decision() -> None:
    verdict = Auth().before_body({})
    assert verdict is not None and verdict.ok and verdict.client is auth_mod.ANONYMOUS
    assert verdict.client.may("alerts") and verdict.client.may("reader")
    assert not verdict.client.may("approver")


def test_each_client_is_known_by_its_own_credential_and_holds_only_its_roles(tmp_path: Path) -> None:
    (tmp_path / "am").write_text("alertmanager-token-0123456789\n")
    (tmp_path / "ops").write_text("ops-token-0123456789abcdef\n")
    (tmp_path / "sig").write_text("hmac-secret-of-falcosidekick-01\n")
    auth = load_auth(
        {"RESPONDER_WEBHOOK_TOKEN": "shared-legacy-token-01234"},
        clients=[
            {"name": "alertmanager", "roles": ["alerts"], "token_file": str(tmp_path / "am")},
            {"name": "ops", "roles": ["approver", "reader"], "token_file": str(tmp_path / "ops")},
            {"name": "sidekick", "roles": ["alerts"], "hmac_secret_file": str(tmp_path / "sig")},
        ],
    )

    def client_of(token: str) -> auth_mod.Client | None:
        verdict = auth.before_body({"Authorization": f"Bearer {token}"})
        assert verdict is not None
        return verdict.client if verdict.ok else None

    am, ops, legacy = (
        client_of("alertmanager-token-0123456789"),
        client_of("ops-token-0123456789abcdef"),
        client_of("shared-legacy-token-01234"),
    )
    assert am is not None and am.name == "alertmanager" and am.roles == {"alerts"}
    assert ops is not None and ops.name == "ops" and ops.may("approver") and not ops.may("alerts")
    assert legacy is not None and legacy.name == "webhook" and not legacy.may("approver")
    assert client_of("ops-token-0123456789abcdeX") is None
    body = b'{"rule": "x"}'
    signed = auth.with_body({auth_mod.HUB_HEADER: sign_hub(b"hmac-secret-of-falcosidekick-01", body)}, body)
    assert signed.ok and signed.client is not None and signed.client.name == "sidekick"
    assert "ops-token" not in repr(auth) and "ops" in repr(auth)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "bad name!", "roles": ["alerts"]}, "letters, digits"),
        ({"name": "x", "roles": ["admin"]}, "roles must be a non-empty list of alerts, approver, reader"),
        ({"name": "x", "roles": []}, "roles must be"),
        ({"name": "x", "roles": ["alerts"]}, "needs token_file or hmac_secret_file"),
        ({"name": "x", "roles": ["alerts"], "token_file": "{tok}", "tokn": 1}, "unknown key(s) tokn"),
    ],
)
def test_a_misconfigured_client_is_a_clear_error(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    (tmp_path / "tok").write_text("a-client-token-0123456789\n")
    entry = {k: (v.format(tok=tmp_path / "tok") if isinstance(v, str) else v) for k, v in entry.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_auth({}, clients=[entry])


def test_two_clients_never_share_a_secret_or_a_name(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("a-client-token-0123456789\n")
    same = {"roles": ["alerts"], "token_file": str(tmp_path / "tok")}
    with pytest.raises(ConfigError, match="share a secret"):
        load_auth({}, clients=[{"name": "a", **same}, {"name": "b", **same}])
    (tmp_path / "tok2").write_text("another-client-token-012345\n")
    with pytest.raises(ConfigError, match="names must be distinct"):
        load_auth(
            {},
            clients=[
                {"name": "a", **same},
                {"name": "a", "roles": ["reader"], "token_file": str(tmp_path / "tok2")},
            ],
        )


def test_secrets_come_from_files_and_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("first-token-0123456789\n\nsecond-token-0123456789\n")
    auth = load_auth({"RESPONDER_WEBHOOK_HMAC_SECRET": SECRET.decode()}, token_file=str(token_file))
    assert len(auth.tokens) == 2 and auth.hmac_secrets == (SECRET,)
    assert "first-token" not in repr(auth)
    (tmp_path / "short").write_text("short\n")
    with pytest.raises(Exception, match="at least 16 characters"):
        load_auth({"RESPONDER_WEBHOOK_TOKEN_FILE": str(tmp_path / "short")})
    scrubbed = auth_mod.scrubbed_environment(
        {"RESPONDER_WEBHOOK_TOKEN_FILE": "x", "PATH": "/bin", "RESPONDER_WEBHOOK_HMAC_SECRET": "y"}
    )
    assert scrubbed == {"PATH": "/bin"}


def test_loopback_detection() -> None:
    assert (
        auth_mod.is_loopback("127.0.0.1")
        and auth_mod.is_loopback("::1")
        and auth_mod.is_loopback("localhost")
    )
    assert not auth_mod.is_loopback("0.0.0.0") and not auth_mod.is_loopback("10.0.0.1")


def test_hmac_reference_values() -> None:
    expected = "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    assert sign_hub(SECRET, BODY) == expected


# property: hostile input only ever takes the 4xx path ---------------------------------------------

_ALPHABET = [
    "a",
    "Z",
    "0",
    "-",
    ".",
    "/",
    "~",
    "$",
    "{",
    "}",
    "%",
    "'",
    '"',
    "\\",
    "\n",
    "\x00",
    "é",
    "\ud800",
    "🙂",
]


def _random_value(rng: Any, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 10**30, 1.5, -0.0])
    if kind in (3, 4):
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 12)))
    if kind in (5, 6):
        return {
            _random_value(rng, 9) or "k": _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))
        }
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def _mutate(rng: Any, document: Any) -> Any:
    """Replace one random node of a real payload with a random value."""
    document = copy.deepcopy(document)
    parent: Any = None
    key: Any = None
    node = document
    for _ in range(rng.randrange(1, 5)):
        if isinstance(node, dict) and node:
            choice = rng.choice(list(node))
        elif isinstance(node, list) and node:
            choice = rng.randrange(len(node))
        else:
            break
        parent, key, node = node, choice, node[choice]
        if rng.random() < 0.3:
            break
    if parent is not None:
        parent[key] = _random_value(rng)
    return document


def test_random_and_mutated_payloads_never_escape_the_4xx_path(router: Router) -> None:
    import random

    rng = random.Random(20261129)
    generic_doc = {
        "id": "1",
        "name": "canary",
        "labels": {"value": "v"},
        "container": "web",
        "details": {"nested": ["x"]},
    }
    sources = [("alertmanager", AM), ("falco", FALCO), ("generic", generic_doc)]
    outcomes = {"bad_json": 0, "bad_shape": 0, "unrouted": 0, "rejected": 0, "params": 0}
    for _ in range(3000):
        source, base = rng.choice(sources)
        document = _mutate(rng, base) if rng.random() < 0.8 else _random_value(rng)
        body = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        try:
            alerts = alerts_mod.PARSERS[alerts_mod.AlertSource(source)](decode(body))
        except BadJSON:
            outcomes["bad_json"] += 1
            continue
        except ShapeError:
            outcomes["bad_shape"] += 1
            continue
        for alert in alerts:
            json.dumps(alert.summary()).encode("utf-8")  # storable
            route = router.route(alert)
            if route is None:
                outcomes["unrouted"] += 1
                continue
            try:
                params, _ = route.run_inputs(alert)
            except RejectedInput:
                outcomes["rejected"] += 1
                continue
            outcomes["params"] += 1
            for value in params.values():
                assert not isinstance(value, str) or "\x00" not in value
    assert all(count > 20 for count in outcomes.values()), outcomes  # every path was exercised


def test_without_an_inventory_this_machines_name_means_localhost() -> None:
    import socket

    from responder.service import local_limit

    assert local_limit(socket.gethostname()) == "localhost"
    assert local_limit(socket.gethostname().upper()) == "localhost"
    assert local_limit("localhost") == "localhost" and local_limit(None) is None
    assert local_limit("some-other-node") == "some-other-node"  # reaches no host: the run says so
