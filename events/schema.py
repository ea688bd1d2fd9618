"""The event catalogue: one tagged union of frozen, vendor-neutral msgspec structs.

Every kind has an explicit, stable string tag (``kind`` on the wire). Tags are part of
the stored data and never derived from class names: renaming a class changes nothing
on disk. Evolution rules are in ``docs/events.md``; in short, new fields get defaults,
field types never change, and semantic changes go through an upcaster
(:mod:`threadline.events.codec`) keyed by the envelope's ``schema`` number.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import msgspec

from threadline.base.config import DoubleTexting

#: Version of the event catalogue written by this code. Bump it only together with an
#: upcaster that lifts records of the previous version (see docs/events.md).
SCHEMA_VERSION: Final = 1

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]

#: Typed failure kinds. Providers' and tools' errors are translated into one of these
#: once, at the boundary, and only then recorded.
ErrorKind = Literal[
    "auth",
    "rate_limit",
    "model_not_found",
    "bad_request",
    "context_too_long",
    "network",
    "timeout",
    "tool_error",
    "configuration",
    "provider_error",
    "max_deliveries",
    "internal",
]

FallbackKind = Literal[
    "tools_disabled", "provider_switched", "mcp_unavailable", "step_limit", "retry"
]


class _Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="kind"):
    """Base of every event kind; subclasses set an explicit ``tag``."""


# ----------------------------------------------------------------------------- values


class GenerationParams(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Sampling settings of a session; ``None`` means the provider's configured default.

    ``max_steps`` bounds a turn's tool steps (under the deployment's limit);
    ``reasoning_budget_tokens`` turns on extended thinking with that budget (Anthropic).
    Unset values are left out when encoding (older records spell them ``null``).
    """

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    max_steps: int | None = None
    reasoning_budget_tokens: int | None = None


class ForkOrigin(msgspec.Struct, frozen=True, kw_only=True):
    """Where a forked session's history was copied from."""

    session: str
    version: int


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts as reported by the provider (0 when it reported none)."""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        fields = self.__struct_fields__
        return Usage(**{f: getattr(self, f) + getattr(other, f) for f in fields})


class ToolCallRef(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call as it appears inside an assistant message."""

    call_id: str
    tool: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)


# ----------------------------------------------------------------------------- kinds


class SessionStarted(_Event, frozen=True, tag="session_started"):
    owner: str
    title: str = ""
    provider: str = ""
    model: str = ""
    system_prompt: str = ""
    tool_servers: tuple[str, ...] = ()
    params: GenerationParams = msgspec.field(default_factory=GenerationParams)
    forked_from: ForkOrigin | None = None
    #: what a message sent while a turn is open does (None: the deployment's default)
    double_texting: DoubleTexting | None = None
    #: ``always``: every tool call waits for a person's approval (None: the deployment's
    #: rules for its tool servers decide)
    approval: Literal["always"] | None = None


class SessionRenamed(_Event, frozen=True, tag="session_renamed"):
    """The session's title, set by its owner (replaces ``session_started``'s, and the
    title taken from the first message)."""

    title: str


class UserMessage(_Event, frozen=True, tag="user_message"):
    """A user's message. The envelope's ``turn`` is the turn that will answer it."""

    text: str
    client_message_id: str = ""


class TurnStarted(_Event, frozen=True, tag="turn_started"):
    """An attempt at a turn began. Turn id and attempt number are in the envelope
    (``turn``, ``attempt``) and repeated here for readers of the payload alone."""

    turn_id: str
    attempt: int
    provider: str
    model: str
    worker: str = ""


class TextDelta(_Event, frozen=True, tag="text_delta"):
    """Coalesced answer text streamed during ``step`` of the envelope's turn attempt."""

    text: str
    step: int = 0


class ReasoningDelta(_Event, frozen=True, tag="reasoning_delta"):
    """Coalesced reasoning/thinking text."""

    text: str
    step: int = 0


class ToolCall(_Event, frozen=True, tag="tool_call"):
    call_id: str
    tool: str
    server: str = ""
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    step: int = 0


class ToolResult(_Event, frozen=True, tag="tool_result"):
    call_id: str
    tool: str = ""
    content: str = ""
    is_error: bool = False
    duration_ms: float = 0.0
    summary: str = ""
    step: int = 0


class ToolProgress(_Event, frozen=True, tag="tool_progress"):
    """How far a running tool call is, as its MCP server reported it (at most one a
    second per call is recorded): ``progress`` of ``total`` (when known), and the
    server's ``message``. Shown while the call runs; never part of the conversation."""

    call_id: str
    progress: float
    total: float | None = None
    message: str = ""
    step: int = 0


class Fallback(_Event, frozen=True, tag="fallback"):
    """Something did not go as planned and the turn carries on another way."""

    fallback: FallbackKind
    reason: str = ""
    from_: str = msgspec.field(default="", name="from")
    to: str = ""
    attempt: int = 0


class AssistantMessage(_Event, frozen=True, tag="assistant_message"):
    """The closing of one model step: its full text, the tool calls it made, and usage.

    A turn with tools has one per step (``finish_reason="tool_calls"`` for all but the
    last). ``provider_data`` keeps opaque provider data (e.g. a thinking signature)
    under the provider's name, so it can be sent back to that provider and no other.
    """

    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage = msgspec.field(default_factory=Usage)
    reasoning: str = ""
    tool_calls: tuple[ToolCallRef, ...] = ()
    step: int = 0
    provider_data: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class ContextTrimmed(_Event, frozen=True, tag="context_trimmed"):
    """The model answering the envelope's turn attempt (from ``step`` on, and the turns
    after it until the next of these) is sent the conversation without its oldest part:
    the first ``turns`` parts (an ended turn each, or a user message sent outside a
    turn), ``messages`` messages in all, the newest of them ``through_turn``, which ended
    at ``through_version``. ``turns == 0``: nothing is left out any more.

    ``estimated_tokens`` is the request's estimate as sent (bytes / 4, see
    docs/agent.md), ``budget_tokens`` what its input may take, ``context_tokens`` the
    model's window. ``refused``: the provider answered "context too long" to the
    previous request, and this one is cut to half of that request's estimate.
    """

    turns: int
    messages: int
    through_turn: str = ""
    through_version: int = 0
    estimated_tokens: int = 0
    budget_tokens: int = 0
    context_tokens: int = 0
    step: int = 0
    refused: bool = False


class TurnCompleted(_Event, frozen=True, tag="turn_completed"):
    usage: Usage = msgspec.field(default_factory=Usage)
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    steps: int = 1


class TurnFailed(_Event, frozen=True, tag="turn_failed"):
    """A turn ended in an error. ``message`` is redacted before it is recorded."""

    error: ErrorKind
    message: str
    retryable: bool = False


class CancelRequested(_Event, frozen=True, tag="cancel_requested"):
    """A durable stop command for the envelope's turn (or the running turn if none).
    ``rollback``: if the stop ends the turn, it adds nothing to the model's context
    (a message sent with the ``rollback`` double-texting policy asks this)."""

    reason: str = ""
    rollback: bool = False


class TurnCancelled(_Event, frozen=True, tag="turn_cancelled"):
    partial_text: str = ""
    reason: str = ""


class ApprovalRequested(_Event, frozen=True, tag="approval_requested"):
    """A tool call of the envelope's turn attempt waits for a person to approve it; the
    turn waits without a worker until the decision (docs/human-in-the-loop.md).
    ``deadline``: when it is denied by itself (microseconds since the epoch; 0: never)."""

    call_id: str
    tool: str
    server: str = ""
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    step: int = 0
    deadline: int = 0


class ApprovalGranted(_Event, frozen=True, tag="approval_granted"):
    """A person approved the envelope's turn's call ``call_id`` (who: the envelope's
    ``actor``); the first decision for a call is the one that counts."""

    call_id: str
    reason: str = ""


class ApprovalDenied(_Event, frozen=True, tag="approval_denied"):
    """The call ``call_id`` is not run; the model is told so, with ``reason``, as its
    result. ``expired``: its deadline passed without a decision (actor ``system``)."""

    call_id: str
    reason: str = ""
    expired: bool = False


Event = (
    SessionStarted
    | SessionRenamed
    | UserMessage
    | TurnStarted
    | TextDelta
    | ReasoningDelta
    | ToolCall
    | ToolResult
    | ToolProgress
    | Fallback
    | AssistantMessage
    | ContextTrimmed
    | TurnCompleted
    | TurnFailed
    | CancelRequested
    | TurnCancelled
    | ApprovalRequested
    | ApprovalGranted
    | ApprovalDenied
)

EVENT_TYPES: Final[tuple[type[_Event], ...]] = get_args(Event)

TERMINAL_KINDS: Final = frozenset({"turn_completed", "turn_failed", "turn_cancelled"})


_TAG_OF: Final = {cls: str(cls.__struct_config__.tag) for cls in EVENT_TYPES}
KINDS: Final[tuple[str, ...]] = tuple(_TAG_OF.values())


def kind_of(event: _Event | type[_Event]) -> str:
    """The stable tag of an event (or event class), as written on the wire."""
    return _TAG_OF[event if isinstance(event, type) else type(event)]


class Sealed(msgspec.Struct, frozen=True):
    """A record's personal content, sealed (events/sealing.py): the content key's id,
    the nonce and the AES-GCM ciphertext (base64 in JSON) of the whole event."""

    key: str
    nonce: bytes
    ct: bytes


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What is stored for each event: the event and where it sits in its session.

    ``prev`` is the SHA-256 of the previous record's stored bytes (the session's genesis
    hash for version 1), so the stored bytes of a session form a hash chain.
    ``key`` is the idempotency key; the JetStream ``Nats-Msg-Id`` is derived from it.
    ``copied_from`` marks a fork's copies (:func:`is_fork_copy`). ``sealed``: see
    docs/audit.md#erasure. ``sig`` signs the record as stored without it
    (events/signing.py): keep it the last field.
    """

    schema: int
    session: str
    version: int
    at: int  # microseconds since the Unix epoch, UTC
    actor: str
    key: str
    prev: str
    event: Event
    turn: str | None = None
    attempt: int | None = None
    #: on a fork's copy of another session's event: that event's session and version
    copied_from: ForkOrigin | None = None
    #: the event's personal content, sealed; ``event`` then holds its stub (erased
    #: fields) until a reader with the key opens it (events/sealing.py)
    sealed: Sealed | None = None
    #: the writer's signature, ``ed25519:<key id>:<base64>``, always the last member of the
    #: stored JSON (events/signing.py, docs/audit.md); None: an unsigned deployment's
    sig: str | None = None


#: how a fork's copies were marked before ``Envelope.copied_from`` (their keys' ending)
LEGACY_COPY_KEY_SUFFIX: Final = "~fork"


def is_fork_copy(envelope: Envelope) -> bool:
    """Whether a record is a fork's copy of another session's event: history that was
    answered (and spent) in its source, never a question to answer again."""
    return envelope.copied_from is not None or envelope.key.endswith(LEGACY_COPY_KEY_SUFFIX)
