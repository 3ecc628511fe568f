"""#17: where the timeline lives. `[store] url` picks PostgreSQL; the password comes from a file
or the environment and never from the URL (refused, since a URL ends up on command lines and
in logs); bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.errors import ConfigError
from responder.settings import load_settings
from responder.store_location import PostgresLocation, describe, store_location

URL = "postgresql://responder@db.internal:5432/responder"


def test_no_url_is_the_sqlite_file(tmp_path: Path) -> None:
    assert store_location({}, tmp_path, {}) == tmp_path / "timeline.db"


def test_the_password_comes_from_a_file_or_the_environment_never_the_url(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pass\n")
    found = store_location({"url": URL, "password_file": str(secret), "controller": "ctl-1"}, tmp_path, {})
    assert isinstance(found, PostgresLocation) and found.password == "s3cret-pass"
    assert "s3cret" not in repr(found) and "s3cret" not in describe(found)
    from_env = store_location({"url": URL}, tmp_path, {"RESPONDER_STORE_PASSWORD": "env-pass"})
    assert isinstance(from_env, PostgresLocation) and from_env.password == "env-pass"
    with pytest.raises(ConfigError, match="carries a password") as caught:
        store_location({"url": "postgresql://responder:hunter2@db/responder"}, tmp_path, {})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ({"url": "mysql://db/responder"}, "postgresql://user@host"),
        ({"url": "postgresql://db.internal"}, "postgresql://user@host"),
        ({"url": URL, "lease": 1}, "lease must be seconds from 5 to 3600"),
        ({"url": URL, "controller": "no spaces please"}, "controller must be a short name"),
        ({"url": URL, "password_file": "/nonexistent/pw"}, "password_file /nonexistent/pw"),
        ({"url": URL, "passwd": "x"}, "[store] takes only"),
    ],
)
def test_bad_store_settings_are_clear_errors(tmp_path: Path, store: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        store_location(store, tmp_path, {})
    assert message in str(caught.value)


def test_the_environment_overrides_the_file_and_settings_carry_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "{URL}"\ncontroller = "from-file"\n')
    env = {
        "RESPONDER_STORE_CONTROLLER": "ctl-9",
        "RESPONDER_STORE_LEASE": "12",
        "RESPONDER_STORE_PASSWORD": "x",
    }
    settings = load_settings(data_dir=str(tmp_path / "d"), config=str(config), environ=env)
    assert isinstance(settings.database, PostgresLocation)
    assert (settings.database.controller, settings.database.lease) == ("ctl-9", 12.0)
    plain = load_settings(data_dir=str(tmp_path / "d"), environ={})
    assert plain.database == tmp_path / "d" / "timeline.db"
