"""``royalflow api token create | list | revoke`` against a real database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from royalflow.api.cli import app
from royalflow.config import get_settings

pytestmark = pytest.mark.integration


def test_token_create_list_revoke(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # set, never contacted by these commands
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        created = runner.invoke(app, ["token", "create", "--owner", "owner-a", "--label", "laptop"])
        assert created.exit_code == 0, created.output
        token = created.output.strip().splitlines()[-1]
        assert token.startswith("rf_") and len(token) == 46
        listed = runner.invoke(app, ["token", "list"])
        assert token[:11] in listed.output and "laptop" in listed.output and token not in listed.output
        assert runner.invoke(app, ["token", "create", "--admin", "--owner", "x"]).exit_code != 0
        revoked = runner.invoke(app, ["token", "revoke", token[:9]])
        assert revoked.exit_code == 0 and "revoked token 1" in revoked.output
        assert runner.invoke(app, ["token", "revoke", "1"]).exit_code == 1  # already revoked
        assert "revoked" in runner.invoke(app, ["token", "list"]).output
    finally:
        get_settings.cache_clear()
