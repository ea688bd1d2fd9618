"""Settings of the dev model: its pace and the model names it lists."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "threadline-dev"


@dataclass(frozen=True, slots=True)
class DevModelSettings:
    """How the dev model behaves when a request carries no ``[[pace:...]]`` directive.

    ``ttft_ms`` is the delay before the first streamed token, ``tokens_per_second``
    the pace after it (0 or less streams as fast as the socket allows). ``models`` is
    what ``GET /v1/models`` lists; any other name is accepted too, except
    ``missing-model``, which always answers 404.
    """

    ttft_ms: float = 150.0
    tokens_per_second: float = 50.0
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    max_body_bytes: int = 32 * 1024 * 1024
    #: request bodies kept for ``GET /debug/requests`` (the newest; 0 keeps none)
    record_requests: int = 64
    #: the context window it enforces, in its tokens (words): a request whose prompt
    #: plus ``max_tokens`` exceeds it is refused as too long (None: no limit)
    context_tokens: int | None = None

    @classmethod
    def fast(cls) -> DevModelSettings:
        """No delays at all: what tests want."""
        return cls(ttft_ms=0.0, tokens_per_second=0.0)
