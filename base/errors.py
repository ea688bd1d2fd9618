"""Threadline's own error hierarchy.

Library errors (nats-py, SDKs, MCP) are translated into these once, at the boundary
where they occur; nothing above that boundary catches a library exception.
Messages never contain secrets: they are written to be shown to a user.
"""

from __future__ import annotations


class ThreadlineError(Exception):
    """Base of every error Threadline raises on purpose."""


class ConfigurationError(ThreadlineError):
    """The deployment is misconfigured (missing key, bad URL, unsafe stream...)."""


class PortInUse(ConfigurationError):
    """A server cannot listen on its port: something else has it."""

    def __init__(self, host: str, port: int, option: str = "") -> None:
        hint = f"; choose another with {option}" if option else ""
        super().__init__(
            f"port {port} on {host} is already in use (is Threadline already running?){hint}"
        )
        self.host = host
        self.port = port


class InvalidInput(ThreadlineError):
    """A caller supplied a value we refuse (bad session id, oversize payload...)."""


class InvalidSessionId(InvalidInput):
    pass


class PayloadTooLarge(InvalidInput):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event is {size} bytes encoded; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidField(InvalidInput):
    """One field of a request holds a value we refuse (unknown provider, no such version)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class SessionNotFound(InvalidInput):
    """No such session (it has no events)."""


class CommandRefused(ThreadlineError):
    """A command the session's state, or an earlier request, rules out (a conflict).

    ``code`` names the reason for machines; ``field`` the input to blame, if one is."""

    code = "conflict"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IdempotencyKeyReused(CommandRefused):
    code = "idempotency_key_reused"

    def __init__(
        self,
        message: str = "this Idempotency-Key was already used for a different request",
        *,
        field: str | None = "Idempotency-Key",
    ) -> None:
        super().__init__(message, field=field)


class NothingToCancel(CommandRefused):
    code = "nothing_to_cancel"


class TurnFinished(CommandRefused):
    code = "turn_finished"


class TurnRunning(CommandRefused):
    """A message sent while a turn is open, to a session whose double-texting policy is
    ``reject``."""

    code = "turn_running"


class ApprovalDecided(CommandRefused):
    """An answer to a tool call that another answer (or its deadline) decided first."""

    code = "approval_decided"


class ApprovalNotFound(InvalidInput):
    """No call of the session waits, or waited, for approval under this id."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no tool call {call_id!r} waits for approval in this session")
        self.call_id = call_id


class TurnNotFound(InvalidInput):
    """The session has no such turn."""

    def __init__(self, turn: str) -> None:
        super().__init__(f"the session has no turn {turn!r}")
        self.turn = turn


class StoreError(ThreadlineError):
    """The event store could not do what was asked."""


class ConcurrencyError(StoreError):
    """Someone else appended to the session first (optimistic concurrency)."""

    def __init__(self, session: str, expected: int, actual: int | None = None) -> None:
        detail = f"; it is at version {actual}" if actual is not None else ""
        super().__init__(
            f"session {session!r} moved on: expected version {expected}{detail}. "
            "Re-read the session and retry."
        )
        self.session = session
        self.expected = expected
        self.actual = actual


class StoreUnavailable(StoreError):
    """NATS or the stream cannot be reached (timeouts, no responders, connection lost)."""


class StreamMissing(StoreError):
    """The stream does not exist, and the command creates nothing (read-only tools)."""


class StreamConfigError(StoreError, ConfigurationError):
    """The stream exists with settings that break Threadline's guarantees."""


class CorruptEvent(StoreError):
    """A stored message could not be decoded into a known event."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"event at position {position} cannot be decoded: {reason}")
        self.position = position
        self.reason = reason


class DeliveryLost(StoreError):
    """A work-queue delivery is no longer this worker's: its in-progress ack was not
    confirmed (connection lost, the consumer deleted, its ack deadline passed)."""
