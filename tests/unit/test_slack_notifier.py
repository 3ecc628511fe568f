"""The Slack notifier with the real slack-sdk against a local Slack Web API on loopback."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from responder.notify.dispatcher import ChannelPacer, RetryPolicy, SlackNotifier
from responder.notify.slack import BotTransport, WebhookTransport
from responder.timeline import Incident, Timeline
from responder.vocabulary import IncidentStatus
from tests.slack_server import SlackServer, SlackState

IID = "INC-20261129-010203-abcd"
EVIL = "<!channel> & <@U123> {{ config.__class__ }}"


def incident(tl: Timeline) -> None:
    tl.create_incident(
        Incident(
            IID,
            "t",
            "t",
            IncidentStatus.RUNNING,
            "contain",
            "/p.yml",
            "a" * 64,
            "critical",
            {"container": EVIL},
            (),
            {"source": "cli"},
            None,
            None,
            None,
            "alice",
        )
    )


def fast_policy() -> RetryPolicy:
    return RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


def bot(slack: SlackServer, db: Path, token: str | None = None, timeout: float = 2.0) -> SlackNotifier:
    transport = BotTransport(token or slack.state.token, slack.base_url, timeout)
    return SlackNotifier(
        transport,
        "#incidents",
        db,
        token or slack.state.token,
        fast_policy(),
        ChannelPacer(rate=1000, burst=1000),
    )


def feed(
    tl: Timeline, notifier: SlackNotifier, *events: tuple[str, str, dict], step: str | None = None
) -> None:
    for kind, message, data in events:
        notifier.observe(tl.append(IID, kind, message, step=data.pop("_step", None), data=data))


def story(tl: Timeline, notifier: SlackNotifier) -> None:
    feed(
        tl,
        notifier,
        ("incident_opened", "opened", {}),
        (
            "step_finished",
            "step isolate: succeeded",
            {
                "_step": "isolate",
                "outcome": "succeeded",
                "hosts": {"h1": {"outcome": "succeeded", "message": EVIL}},
            },
        ),
    )
    tl.set_status(IID, IncidentStatus.SUCCEEDED)
    feed(
        tl,
        notifier,
        (
            "incident_closed",
            "incident succeeded",
            {"done": ["isolate"], "not_done": [], "steps": {"isolate": "succeeded"}},
        ),
    )


def events_of(tl: Timeline, kind: str) -> list:
    return [e for e in tl.events(IID) if e.kind == kind]


def test_one_thread_per_incident_with_updates_and_summary(tmp_path: Path) -> None:
    with SlackServer() as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db")
        story(tl, notifier)
        assert notifier.close(10) == 0
    root, *replies = slack.state.messages
    assert root.thread_ts is None and all(r.thread_ts == root.ts for r in replies)
    assert len(replies) == 2 and "Done: isolate" in json.dumps(replies[1].blocks)
    assert "responder export" in json.dumps(replies[1].blocks)
    assert slack.state.updates and slack.state.updates[-1]["ts"] == root.ts
    assert "succeeded" in json.dumps(slack.state.updates[-1]["blocks"])
    sent = events_of(tl, "notification_sent")
    assert [e.data["role"] for e in sent] == ["root", "reply", "reply", "root_update"]
    assert sent[0].data["ts"] == root.ts


def test_untrusted_text_is_escaped_not_evaluated(tmp_path: Path) -> None:
    with SlackServer() as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db")
        story(tl, notifier)
        notifier.close(10)
    everything = json.dumps([m.blocks for m in slack.state.messages]) + json.dumps(slack.state.updates)
    assert "<!channel>" not in everything and "<@U123>" not in everything
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in everything
    assert "{{ config.__class__ }}" in everything  # literal, never rendered


def test_429_is_honoured_and_delivered_once(tmp_path: Path) -> None:
    with SlackServer(SlackState(script=["429", "429"], retry_after=1)) as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db")
        start = time.monotonic()
        feed(tl, notifier, ("incident_opened", "opened", {}))
        notifier.close(10)
        assert time.monotonic() - start >= 2.0
    assert len(slack.state.messages) == 1
    assert events_of(tl, "notification_sent")[0].data["attempts"] == 1


@pytest.mark.parametrize("failure", ["500", "post_then_500", "post_then_hang"])
def test_transient_failures_retry_without_duplicates(tmp_path: Path, failure: str) -> None:
    with SlackServer(SlackState(script=[failure], hang_seconds=5)) as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db", timeout=1)
        feed(tl, notifier, ("incident_opened", "opened", {}))
        assert notifier.close(20) == 0
    assert len(slack.state.messages) == 1, [m.key for m in slack.state.messages]
    sent = events_of(tl, "notification_sent")
    assert len(sent) == 1
    assert sent[0].data["deduplicated"] is (failure != "500")


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found"])
def test_permanent_errors_are_not_retried_and_the_token_never_leaks(
    tmp_path: Path, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "xoxb-canary-0123456789-wrong"
    with SlackServer(SlackState(script=[] if error == "invalid_auth" else [error])) as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db", token=wrong if error == "invalid_auth" else None)
        feed(tl, notifier, ("incident_opened", "opened", {}))
        notifier.close(10)
    posts = [c for c in slack.state.calls if c[1] == "chat.postMessage"]
    assert len(posts) == 1
    failed = events_of(tl, "notification_failed")
    assert failed and failed[0].data["permanent"] is True and error in failed[0].message
    assert wrong not in caplog.text
    assert wrong.encode() not in (tmp_path / "t.db").read_bytes()


def test_hanging_slack_is_abandoned_at_exit_and_recorded(tmp_path: Path) -> None:
    with SlackServer(SlackState(script=["hang"] * 20, hang_seconds=30)) as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db", timeout=1)
        start = time.monotonic()
        story(tl, notifier)  # observe() returned at once although Slack hangs
        assert time.monotonic() - start < 0.5
        left = notifier.close(1.5)
        assert left >= 1 and time.monotonic() - start < 3
        calls = len(slack.state.calls)
        # abandoned: the request in flight times out (1 s) and nothing more is tried
        notifier._thread.join(3)
        assert not notifier._thread.is_alive()
        assert len(slack.state.calls) == calls
    assert events_of(tl, "notification_failed")


def test_too_long_messages_are_truncated_not_rejected(tmp_path: Path) -> None:
    with SlackServer(SlackState(script=["msg_too_long"])) as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db")
        hosts = {f"host-{i}": {"outcome": "failed", "message": "x" * 500} for i in range(100)}
        feed(
            tl,
            notifier,
            ("incident_opened", "opened", {}),
            (
                "step_finished",
                "step isolate: failed",
                {"_step": "isolate", "outcome": "failed", "hosts": hosts},
            ),
        )
        notifier.close(10)
    reply = slack.state.messages[-1]
    assert reply.thread_ts and len(json.dumps(reply.blocks)) < 40_000
    for block in reply.blocks:
        assert len(block.get("text", {}).get("text", "")) <= 3000
    assert len(slack.state.messages) == 2


def test_webhook_mode_same_content_no_threads(tmp_path: Path) -> None:
    with SlackServer() as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        transport = WebhookTransport(slack.webhook_url, 2)
        notifier = SlackNotifier(
            transport,
            "webhook",
            tmp_path / "t.db",
            slack.webhook_url,
            fast_policy(),
            ChannelPacer(1000, 1000),
        )
        story(tl, notifier)
        notifier.close(10)
    posts = slack.state.webhook_posts
    assert len(posts) == 4  # root, step, summary, final status as a new message
    assert "thread_ts" not in json.dumps(posts)
    assert "Done: isolate" in json.dumps(posts)
    assert slack.webhook_url.encode() not in (tmp_path / "t.db").read_bytes()


def test_a_resolved_alert_is_told_in_the_thread_and_undoes_nothing(tmp_path: Path) -> None:
    """What `responder serve` does when Alertmanager says the alert resolved: the store writes the
    event and hands it to the notifier; the reply says containment stays."""
    from responder.catalog import load_catalog
    from responder.intake import alerts as alerts_mod
    from responder.intake.records import Intake, mark_started
    from responder.intake.routing import Router
    from responder.intake.store import AlertStore
    from responder.playbook.parse import load_playbook
    from responder.settings import shipped_dir
    from tests.conftest import FIXTURES
    from tests.unit.test_alert_store import burst_alert, intake

    catalog = load_catalog([FIXTURES / "runbooks", shipped_dir("runbooks")])
    router = Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted((FIXTURES / "webhook").glob("*.yml"))]
    )
    db = tmp_path / "t.db"
    with SlackServer() as slack:
        notifier = bot(slack, db)
        store = AlertStore(db, on_event=notifier.observe)
        queued = store.submit([intake(router, burst_alert(1))])[0]
        assert store.claim_next() == [queued.alert_id]
        tl = Timeline(db)
        tl.create_incident(
            Incident(
                IID,
                "t",
                "t",
                IncidentStatus.RUNNING,
                "wh-burst",
                "/p.yml",
                "a" * 64,
                "info",
                {},
                (),
                {"source": "alertmanager"},
                None,
                None,
                None,
                "webhook:alertmanager",
                alert_id=queued.alert_id,
            ),
            lambda conn: mark_started(conn, queued.alert_id, IID),
        )
        notifier.observe(tl.append(IID, "incident_opened", "opened"))
        (alert,) = alerts_mod.parse_alertmanager(burst_alert(1, status="resolved"))
        store.submit([Intake(alert, router.route(alert))])
        assert notifier.close(10) == 0
        store.close()
    root, reply = slack.state.messages
    assert reply.thread_ts == root.ts
    assert "Alert resolved; container still contained" in json.dumps(reply.blocks)
    assert tl.incident(IID).status is IncidentStatus.RUNNING  # nothing was undone


def test_what_a_role_declares_reaches_the_thread_and_other_unknown_kinds_do_not(tmp_path: Path) -> None:
    """A role's own events (meta/responder.yml timeline:, e.g. service_held, secret_rotated) are
    told in the thread, escaped; events of kinds nobody watches stay on the timeline only."""
    with SlackServer() as slack:
        tl = Timeline(tmp_path / "t.db")
        incident(tl)
        notifier = bot(slack, tmp_path / "t.db")
        feed(
            tl,
            notifier,
            ("incident_opened", "opened", {}),
            ("service_held", f"Swarm service web held: {EVIL}", {"declared_by": "stop_container"}),
            ("batch_started", "batch 2", {}),
        )
        assert notifier.close(10) == 0
    root, *replies = slack.state.messages
    assert len(replies) == 1 and replies[0].thread_ts == root.ts
    assert "Swarm service web held" in replies[0].text and "<!channel>" not in replies[0].text
    assert "&lt;!channel&gt;" in replies[0].text
