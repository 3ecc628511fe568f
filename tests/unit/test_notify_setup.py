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


def test_a_slack_secret_comes_from_the_environment_a_file_it_names_or_the_config(tmp_path: Path) -> None:
    """One reader for every Slack secret (bot token, webhook URL, signing secret, app token)."""
    from responder.notify.setup import read_secret

    (tmp_path / "from-env-file").write_text("secret-b\n")
    (tmp_path / "from-config").write_text("secret-c\n")
    config = {"signing_secret_file": str(tmp_path / "from-config")}
    assert (
        read_secret(
            "SLACK_SIGNING_SECRET", "signing_secret_file", config, {"SLACK_SIGNING_SECRET": "secret-a"}
        )
        == "secret-a"
    )
    env_file = {"SLACK_SIGNING_SECRET_FILE": str(tmp_path / "from-env-file")}
    assert read_secret("SLACK_SIGNING_SECRET", "signing_secret_file", config, env_file) == "secret-b"
    assert read_secret("SLACK_SIGNING_SECRET", "signing_secret_file", config, {}) == "secret-c"
    assert read_secret("SLACK_SIGNING_SECRET", "signing_secret_file", {}, {}) is None
    with pytest.raises(ConfigError, match=r"\[slack\].signing_secret_file .*missing"):
        read_secret(
            "SLACK_SIGNING_SECRET",
            "signing_secret_file",
            {"signing_secret_file": str(tmp_path / "missing")},
            {},
        )
