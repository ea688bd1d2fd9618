"""Strip secrets from text before it is logged, shown or recorded.

The event log is immutable, so anything that might end up in it (error messages above
all) goes through a :class:`Redactor` first. A redactor removes

* every secret value registered with it (provider keys, gateway tokens, MCP header
  values), matched literally, so values with regex metacharacters are safe;
* ``Bearer <token>`` and the values of ``Authorization:``, ``x-api-key:``,
  ``api-key:`` and ``x-goog-api-key:`` headers;
* ``key=``, ``api_key=``, ``token=``, ``access_token=``, ``secret=``, ``password=``
  parameters (URL query strings, ``repr`` output, form bodies);
* common key shapes even when nobody registered them: ``sk-...`` (OpenAI,
  OpenRouter), ``sk-ant-...`` (Anthropic), ``AIza...`` (Google), ``hf_...``,
  ``gsk_...``, ``ghp_...``.

Services register the secrets they load into the process-wide :func:`default_redactor`
and install :meth:`Redactor.log_filter` on their log handlers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Final

REDACTED: Final = "[REDACTED]"

#: Registered values shorter than this are ignored: redacting every occurrence of a
#: three-letter string would destroy the text without protecting anything real.
MIN_SECRET_LENGTH: Final = 6

_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Header values, in "Name: value", "name=value" and "'name': 'value'" forms.
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]key|x-goog-api-key|access[-_]token)"
            r"([\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]+"), f"Bearer {REDACTED}"),
    # key=... parameters (query strings, reprs, form bodies).
    (
        re.compile(
            r"(?i)(?<![\w-])(api[_-]?key|apikey|key|access[_-]?token|token|secret|password)"
            r"(=[\"']?)[^&\s#\"',)]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # Well-known key shapes (also masked ones such as "sk-proj-****abcd").
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-*]{8,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-*]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), REDACTED),
    (re.compile(r"\b(?:hf|gsk|ghp|gho|github_pat)_[A-Za-z0-9_]{16,}"), REDACTED),
)


class Redactor:
    """Removes registered secrets and secret-shaped strings from text.

    Thread-safe and cheap to call; registering a value is idempotent.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Register secret values (``None``, empty and very short values are ignored)."""
        new = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        if not new:
            return
        with self._lock:
            merged = set(self._secrets) | new
            # Longest first, so a secret that contains another one is removed whole.
            self._secrets = tuple(sorted(merged, key=lambda s: (-len(s), s)))

    def __contains__(self, value: object) -> bool:
        return value in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:  # never the values
        return f"Redactor({len(self._secrets)} secrets)"

    def redact(self, text: str) -> str:
        """``text`` without any registered secret, token, key parameter or key shape."""
        if not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def log_filter(self) -> RedactingFilter:
        """A logging filter that redacts records; add it to your handlers."""
        return RedactingFilter(self)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments, exception and stack text in place.

    The message is formatted with its arguments first and the result redacted, so a
    secret inside an argument's ``repr`` is caught too; ``args`` is then cleared.
    Attach it to handlers (a filter on a logger does not see records of its children).
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: keep the raw parts
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        return True


_DEFAULT: Final = Redactor()


def default_redactor() -> Redactor:
    """The process-wide redactor that services register their secrets into."""
    return _DEFAULT


def register_secret(*values: str | None) -> None:
    """Register secret values with the process-wide redactor."""
    _DEFAULT.add(*values)


def redact(text: str) -> str:
    """Redact ``text`` with the process-wide redactor."""
    return _DEFAULT.redact(text)


def without_credentials(urls: str) -> str:
    """URLs (one, or a comma-separated list) without their user info:
    ``scheme://user:password@host`` as ``scheme://***@host``."""
    return ",".join(_without_credentials(url) for url in urls.split(","))


def _without_credentials(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
