"""Which processes seal content: those with a content key directory to share (up's data
dir, or one named), never one of their own that no other process could read."""

from __future__ import annotations

from pathlib import Path

from threadline.base.config import Settings
from threadline.services.runtime.keys import (
    content_key_dir,
    ensure_content_key_dir,
    keyring_for,
    sealing_configured,
)


def test_a_process_with_a_data_dir_of_its_own_writes_in_the_clear(tmp_path: Path) -> None:
    # a gateway and an agent on separate data dirs (threadline cluster, the deployment
    # manifests): what one sealed under its own keys the other could never read
    settings = Settings(data_dir=str(tmp_path / "gateway"))
    assert not sealing_configured(settings)
    assert not keyring_for(settings).enabled
    assert not content_key_dir(settings).exists()  # nothing made on the way


def test_up_and_a_named_directory_turn_sealing_on(tmp_path: Path) -> None:
    up = Settings(data_dir=str(tmp_path / "up"))
    made = ensure_content_key_dir(up)
    assert made == tmp_path / "up" / "keys" / "content" and made.stat().st_mode & 0o077 == 0
    assert sealing_configured(up) and keyring_for(up).enabled
    shared = Settings(data_dir=str(tmp_path / "agent"), content_key_dir=str(tmp_path / "shared"))
    assert sealing_configured(shared) and keyring_for(shared).enabled
    off = Settings(data_dir=str(tmp_path / "up"), seal_content=False)
    assert not keyring_for(off).enabled
