from __future__ import annotations

from pathlib import Path

import pytest

from responder.errors import ConfigError
from responder.notify.setup import build_notifier
from responder.notify.slack import BotTransport, WebhookTransport
from responder.settings import Settings


def settings(tmp_path: Path, **slack: object) -> Settings:
    return Settings(tmp_path / "data", (), (), slack=slack)


def test_no_token_no_notifier(tmp_path: Path) -> None:
    assert build_notifier(settings(tmp_path, channel="#ir"), environ={}) is None


def test_playbook_channel_overrides_config_and_token_comes_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    token_file = tmp_path / "token"
    token_file.write_text("xoxb-from-file\n")
    notifier = build_notifier(
        settings(tmp_path, channel="#config", token_file=str(token_file)),
        {"slack_channel": "#from-playbook"},
        environ={},
    )
    assert notifier is not None
    try:
        assert notifier.channel == "#from-playbook" and notifier.secret == "xoxb-from-file"
        assert isinstance(notifier.transport, BotTransport)
    finally:
        notifier.close(2)


def test_webhook_mode_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    notifier = build_notifier(settings(tmp_path), environ={"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hooks/x"})
    assert notifier is not None
    try:
        assert isinstance(notifier.transport, WebhookTransport)
    finally:
        notifier.close(2)


def test_misconfiguration_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no channel"):
        build_notifier(settings(tmp_path), environ={"SLACK_BOT_TOKEN": "xoxb-x"})
    with pytest.raises(ConfigError, match="mode"):
        build_notifier(settings(tmp_path, mode="carrier-pigeon"), environ={})
    with pytest.raises(ConfigError, match="token_file"):
        build_notifier(settings(tmp_path, channel="#ir", token_file=str(tmp_path / "missing")), environ={})
