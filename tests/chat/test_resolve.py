"""Where ``threadline chat`` finds its gateway and token when none is given: the first
run just works after ``threadline up`` (its kept dev token, or ``THREADLINE_TOKENS``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadline.base.config import load_settings
from threadline.base.errors import ConfigurationError
from threadline.services.cli.chat import resolve
from threadline.services.cli.main import build_parser
from threadline.services.runtime.connect import dev_token, write_runtime


def resolved(
    data_dir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    for name in ("THREADLINE_URL", "THREADLINE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = build_parser("chat").parse_args(["chat", "--data-dir", str(data_dir)])
    return resolve(args, load_settings(env, data_dir=args.data_dir))


def test_chat_uses_the_dev_token_up_keeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="no token"):
        resolved(tmp_path, {}, monkeypatch)
    settings = load_settings({}, data_dir=str(tmp_path))
    token = dev_token(settings)  # what `up` does on its first start
    assert dev_token(settings) == token  # and on every later one
    write_runtime(settings, {"gateway_url": "http://127.0.0.1:8123"})
    assert resolved(tmp_path, {}, monkeypatch) == ("http://127.0.0.1:8123", token)


def test_chat_uses_the_configured_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"THREADLINE_TOKENS": "secret-token:me,other:you"}
    assert resolved(tmp_path, env, monkeypatch) == ("http://127.0.0.1:8000", "secret-token")
    env["THREADLINE_TOKEN"] = "mine"
    assert resolved(tmp_path, env, monkeypatch)[1] == "mine"
