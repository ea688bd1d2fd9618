"""A watch on every log line of the whole test session for configured secrets.

``tests/conftest.py`` installs it (item 9 of the hardening issue, docs/reliability.md):

* :data:`FAKE_KEYS` are recognisable fake provider keys, deliberately awkward (short,
  regex metacharacters and spaces, non-ASCII, key-shaped and not), put into the
  environment for the whole session under names no code reads by default, so tests
  that configure providers use them by naming the variable (``key_env``) and any code
  that dumped its environment would leak them;
* :class:`ScanHandler`, on the root logger for the whole session (at ``INFO``, the
  services' default level; ``THREADLINE_SCAN_LOG_LEVEL=DEBUG`` for more), formats every record
  the way the services' own logging does (:func:`threadline.base.logs.configure_logging`:
  the context and redacting filters, then the formatter), and records every line that
  still holds a watched secret;
* at the end of the session any hit fails the run, naming the logger and the key's
  *name* (never its value).

Tests add other secrets they configure with :func:`watch`. A test that replaces the
root logger's handlers (``configure_logging``) takes this handler off until its next
test starts (:func:`reinstall`).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from dataclasses import dataclass
from typing import Final

from threadline.base.logs import ContextFilter, PlainFormatter
from threadline.base.redact import default_redactor

#: environment variable -> value; the names are read by no code unless configured
FAKE_KEYS: Final[dict[str, str]] = {
    "THREADLINE_FAKE_OPENAI_KEY": "sk-tlfake-OPENAI-4f9c2e7a1b3d5",
    "THREADLINE_FAKE_ANTHROPIC_KEY": "sk-ant-tlfake-ANTHROPIC-88d1",
    "THREADLINE_FAKE_PLAIN_KEY": "tlfakePLAINkey31337",  # not key-shaped
    "THREADLINE_FAKE_SHORT_KEY": "Zq8#k2",  # six characters: the redactor's minimum
    "THREADLINE_FAKE_TINY_KEY": "k9$Q",  # shorter than the redactor's minimum
    "THREADLINE_FAKE_ODD_KEY": "p@ss w0rd+/=(?)*[x]{2}",  # regex metacharacters, a space
    "THREADLINE_FAKE_UNICODE_KEY": "clé-ключ-鍵-tlfake",  # not ASCII: cannot be a header
}


@dataclass
class Hit:
    logger: str
    key: str
    line: str


class ScanHandler(logging.Handler):
    """Formats each record as the services would and looks for watched secrets."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__(logging.DEBUG)
        #: value -> label
        self.secrets = dict(secrets)
        self.hits: list[Hit] = []
        self.lines = 0
        self._context = ContextFilter()
        self._formatter = PlainFormatter()
        self._lock_scan = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool | logging.LogRecord:
        # on a copy: redacting filters rewrite records (so does any filter a test adds to
        # every root handler), and other handlers (caplog) must see them as logged
        mine = copy.copy(record)
        passed = self.filter(mine)
        if passed:
            self.emit(passed if isinstance(passed, logging.LogRecord) else mine)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        mine = record
        self._context.filter(mine)
        default_redactor().log_filter().filter(mine)
        try:
            line = self._formatter.format(mine)
        except Exception:  # a record that cannot be formatted is not ours to judge
            return
        with self._lock_scan:
            self.lines += 1
            for value, label in self.secrets.items():
                if value in line:
                    shown = line.replace(value, f"<{label}>")[:300]
                    self.hits.append(Hit(record.name, label, shown))


_HANDLER: ScanHandler | None = None
_SAVED_ENV: dict[str, str | None] = {}
_SAVED_LEVEL = logging.WARNING


def watch(value: str, label: str) -> None:
    """Watch the log for ``value`` too (a secret a test configures), named ``label``."""
    if _HANDLER is not None and value:
        _HANDLER.secrets[value] = label


def install() -> ScanHandler:
    """Put the fake keys in the environment and the scanner on the root logger."""
    global _HANDLER, _SAVED_LEVEL
    for name, value in FAKE_KEYS.items():
        _SAVED_ENV[name] = os.environ.get(name)
        os.environ[name] = value
    _HANDLER = ScanHandler(secrets={v: k for k, v in FAKE_KEYS.items()})
    root = logging.getLogger()
    _SAVED_LEVEL = root.level
    # INFO: what the services log by default (THREADLINE_LOG_LEVEL); DEBUG scans deeper
    # but lets every library's debug records into other tests' caplog
    root.setLevel(os.environ.get("THREADLINE_SCAN_LOG_LEVEL", "INFO"))
    root.addHandler(_HANDLER)
    return _HANDLER


def reinstall() -> None:
    """Put the scanner back if a test replaced the root logger's handlers."""
    root = logging.getLogger()
    if _HANDLER is not None and _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)


def uninstall() -> list[Hit]:
    """Take the scanner off and restore the environment; the hits of the session."""
    root = logging.getLogger()
    hits: list[Hit] = []
    if _HANDLER is not None:
        root.removeHandler(_HANDLER)
        hits = list(_HANDLER.hits)
    root.setLevel(_SAVED_LEVEL)
    for name, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return hits


def handler() -> ScanHandler | None:
    return _HANDLER
