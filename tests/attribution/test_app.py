"""The attribution agent's faust app (app.py)."""

from __future__ import annotations

from pathlib import Path

from royalflow.attribution.agents import install_agent
from royalflow.attribution.app import _TableManager, create_app
from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.config import Settings


def test_the_agent_declares_no_tables_so_its_table_manager_starts_without_faust_s_wait(tmp_path: Path) -> None:
    # faust's table manager sleeps 1 s at start for tables declared late; ours does not, which
    # is right only while the agent declares none (its claims are a plain topic).
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9", state_dir=tmp_path, families_dir=tmp_path / "families",
                        attribution_preload="")
    app = create_app(settings, web_port=6066)  # never bound: the app is built, not started
    install_agent(app, settings, DiskFamilyRegistry(tmp_path / "families"))
    assert isinstance(app.tables, _TableManager)
    assert len(app.tables) == 0
