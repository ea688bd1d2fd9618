"""Settings: what may be printed never carries credentials, even in a list of URLs."""

from __future__ import annotations

from threadline.base.config import load_settings


def test_public_settings_hide_every_credential_in_a_url_list() -> None:
    settings = load_settings(
        env={
            "THREADLINE_NATS_URL": "nats://svc:pw-one@a:4222,nats://b:4222,tls://svc:pw@3@c:4222",
            "THREADLINE_DATABASE_URL": "postgresql://app:pw-db@db:5432/threadline",
        },
        config_file=None,
    )
    shown = settings.public()
    assert shown["nats_url"] == "nats://***@a:4222,nats://b:4222,tls://***@c:4222"
    assert shown["database_url"] == "postgresql://***@db:5432/threadline"
    assert "pw" not in repr(shown)
