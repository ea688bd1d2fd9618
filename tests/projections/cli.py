"""Run the projection commands in-process against the test's stream and view store."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest

from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections.config import ProjectorConfig


def settings_for(
    store: JetStreamEventStore,
    url: str,
    tmp_path: Path,
    config: ProjectorConfig | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> Settings:
    """Settings naming the test's NATS stream (and the test's PostgreSQL schema, if any)."""
    if config is not None and config.database_url and monkeypatch is not None:
        monkeypatch.setenv("THREADLINE_PROJECTIONS_SCHEMA", config.schema)
    return Settings(
        nats_url=url,
        stream=store.settings.name,
        prefix=store.prefix,
        data_dir=str(tmp_path / "data"),
        database_url=config.database_url if config is not None else None,
    )


async def run_command(module: ModuleType, argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    code: int = await module.run(parser.parse_args(argv), settings)
    return code
