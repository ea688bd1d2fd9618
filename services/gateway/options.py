"""The gateway's own settings: limits, SSE behaviour, JWT verification and rate limits.

They are read from ``THREADLINE_GATEWAY_*``, ``THREADLINE_JWT_*`` and
``THREADLINE_RATE_*`` environment variables (see docs/gateway.md); :class:`Settings`
keeps the settings shared by every service (host, port, static ``tokens``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from threadline.base.config import convert, env_values
from threadline.base.errors import ConfigurationError


class JwtOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How bearer JWTs are verified. ``secret`` enables HS256, ``public_key`` RS256."""

    secret: str | None = None
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None
    #: the claim listing the caller's roles; ``"admin"`` in it makes an admin
    roles_claim: str = "roles"
    leeway_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key)

    def __repr__(self) -> str:  # never show the secret
        return f"JwtOptions(hs256={self.secret is not None}, rs256={self.public_key is not None})"


class RateOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The per-owner rate limit on commands (``THREADLINE_RATE_*``, see ratelimit.py)."""

    #: commands per second an owner may send, sustained; 0 turns the limit off
    per_s: float = 5.0
    #: commands an owner may send at once before the sustained rate applies
    burst: int = 30


class GatewayOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Limits and timings of one gateway process."""

    #: largest request body accepted (413 beyond)
    max_body_bytes: int = 1024 * 1024
    #: events buffered per SSE client before it is cut off as too slow
    sse_buffer: int = 1024
    #: seconds between ``: ping`` comments on an idle SSE stream
    heartbeat_s: float = 15.0
    #: the ``retry:`` hint (ms) sent at the start of a stream and when cutting one off
    retry_ms: int = 3000
    #: longest life of one SSE stream (and never past the token's expiry); the client then
    #: reconnects with ``Last-Event-ID`` (and a fresh token)
    max_stream_s: float = 3600.0
    #: concurrent SSE connections per owner (429 beyond)
    max_sse_per_owner: int = 16
    #: frames sent in one write while replaying stored events
    replay_batch: int = 128
    #: longest wait for ``wait_for`` (read-your-writes) before answering 409
    wait_timeout_s: float = 5.0
    #: a request's head (and body) must arrive within this many seconds of its first
    #: byte, plus one second per ``read_min_rate`` bytes received (else 408 / closed)
    read_timeout_s: float = 10.0
    #: bytes per second that extend ``read_timeout_s`` (a large body at a fair pace)
    read_min_rate: int = 8192
    #: a connection whose socket accepts no output for this long is aborted (a client
    #: that stopped reading)
    send_timeout_s: float = 30.0
    #: where ``threadline gateway`` lists sessions and reads usage (``projections`` or
    #: ``log``; unset: ``projections`` when ``THREADLINE_DATABASE_URL`` is set)
    history: Literal["projections", "log"] | None = None
    #: origins (``https://app.example.com``) whose pages may call ``/v1`` and ``/api``
    #: from the browser (CORS); none by default. ``THREADLINE_GATEWAY_CORS_ORIGINS``:
    #: comma-separated. See cors.py
    cors_origins: tuple[str, ...] = ()
    jwt: JwtOptions = msgspec.field(default_factory=JwtOptions)
    rate: RateOptions = msgspec.field(default_factory=RateOptions)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayOptions:
        env = os.environ if env is None else env
        values: dict[str, Any] = env_values(cls, "THREADLINE_GATEWAY_", env)
        if "cors_origins" in values:
            raw = values["cors_origins"].split(",")
            values["cors_origins"] = [origin.strip() for origin in raw if origin.strip()]
        jwt = env_values(JwtOptions, "THREADLINE_JWT_", env)
        key_file = env.get("THREADLINE_JWT_PUBLIC_KEY_FILE")
        if key_file and "public_key" not in jwt:
            try:
                jwt["public_key"] = Path(key_file).read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read THREADLINE_JWT_PUBLIC_KEY_FILE: {exc}"
                ) from None
        values.update(jwt=jwt, rate=env_values(RateOptions, "THREADLINE_RATE_", env))
        return convert(values, cls, "gateway setting")
