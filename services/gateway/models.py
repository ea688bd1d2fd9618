"""Request and response bodies of the HTTP API (msgspec Structs; they make the OpenAPI schema).

Where the API shows a value of the session model as it is (token usage, a tool call)
or a projection's row (the usage report), it uses that struct itself.

Requests refuse unknown fields so a typo is a 422 naming it, not silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from threadline.base.config import DoubleTexting
from threadline.events.schema import ToolCallRef, Usage
from threadline.services.commands import StartSession
from threadline.services.commands.keys import KEY_PATTERN
from threadline.services.gateway.auth import Principal

#: the longest user message, in characters (the event size limit also applies)
MAX_TEXT_CHARS: Final = 64_000
MAX_SYSTEM_PROMPT_CHARS: Final = 32_000
SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
#: "something shows": a character that is whitespace neither to Python's ``re`` (which
#: checks requests here) nor to ECMAScript's (the dialect of the OpenAPI document's
#: patterns, as clients and schemathesis read them). A bare ``\S`` differs between the
#: two (U+001C-U+001F and U+0085 are space to Python only, U+FEFF to ECMAScript only), so
#: the document promised titles and messages the gateway refused
VISIBLE: Final = (
    r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
#: positions and versions are exact in JSON numbers (and JetStream sequences) up to here
POSITION_MAX: Final = 2**53

Name = Annotated[str, Meta(min_length=1, max_length=128)]
Key = Annotated[str, Meta(pattern=KEY_PATTERN)]


class Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A session's settings; a setting its provider cannot honour is a 422 naming it
    (docs/providers.md, "Session settings")."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_steps: Annotated[int, Meta(ge=1, le=100)] | None = None
    reasoning_budget_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    """A new session's settings (``POST /v1/sessions``, a new chat of ``/api/chat``)."""

    title: Annotated[str, Meta(max_length=200)] = ""
    provider: Annotated[str, Meta(max_length=128)] = ""
    model: Annotated[str, Meta(max_length=200)] = ""
    system_prompt: Annotated[str, Meta(max_length=MAX_SYSTEM_PROMPT_CHARS)] = ""
    tool_servers: Annotated[list[Name], Meta(max_length=32)] = msgspec.field(default_factory=list)
    #: what a message sent while a turn runs does (null: the deployment's default)
    double_texting: DoubleTexting | None = None
    #: ``always``: every tool call waits for a person's approval (null: the deployment's rules)
    approval: Literal["always"] | None = None

    def start(self, principal: Principal, **more: Any) -> StartSession:
        """The command starting it for the caller (``more``: the command's other fields)."""
        fields = {name: getattr(self, name) for name in NewSession.__struct_fields__}
        fields["tool_servers"] = tuple(self.tool_servers)
        return StartSession(owner=principal.owner, actor=principal.actor, **(fields | more))


class RenameSession(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A session's new title (``PATCH /v1/sessions/{id}``)."""

    title: Annotated[str, Meta(min_length=1, max_length=200, pattern=VISIBLE)]


class CreateSession(NewSession, frozen=True, kw_only=True, forbid_unknown_fields=True):
    params: Params = msgspec.field(default_factory=Params)


class SessionCreated(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    position: int
    version: int


class PostMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS, pattern=VISIBLE)]
    client_message_id: Key | None = None


class Cancel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    turn_id: Annotated[str, Meta(pattern=SESSION_ID_PATTERN)] | None = None
    reason: Annotated[str, Meta(max_length=500)] = ""


class RetryTurn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    turn_id: Annotated[str, Meta(pattern=SESSION_ID_PATTERN)] | None = None


class ApprovalAnswer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A person's decision on a tool call waiting for approval."""

    approved: bool
    reason: Annotated[str, Meta(max_length=2000)] = ""


class ApprovalDecided(msgspec.Struct, frozen=True, kw_only=True):
    """The decision recorded (``approval_granted`` / ``approval_denied``) and where."""

    call_id: str
    approved: bool
    turn_id: str
    position: int
    version: int


class TurnAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The turn a message (or a cancel) is about, and where its event sits in the log."""

    turn_id: str
    position: int
    version: int


# ----------------------------------------------------------------------------- reads


class _Session(msgspec.Struct, frozen=True, kw_only=True):
    """What the list and a session's detail both show first."""

    id: str
    owner: str
    title: str
    provider: str
    model: str


class SessionSummary(_Session, frozen=True, kw_only=True):
    #: microseconds since the Unix epoch (UTC), like the envelope's ``at``
    created_at: int
    #: position of the session's first event
    position: int
    #: a fork's source session and the version it was forked at (None: not a fork)
    forked_from: str | None = None
    forked_version: int = 0


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionSummary]
    #: pass as ``cursor`` for the next (older) page; null on the last page
    next_cursor: str | None = None


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the history: a user message, an assistant step, or a tool result."""

    role: Literal["user", "assistant", "tool"]
    text: str
    version: int
    position: int
    at: int
    turn_id: str | None = None
    step: int = 0
    reasoning: str = ""
    tool_calls: list[ToolCallRef] = msgspec.field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    #: tool results: which call, which tool, whether it failed, how long it took
    call_id: str | None = None
    tool: str | None = None
    is_error: bool = False
    duration_ms: float | None = None


class FallbackView(msgspec.Struct, frozen=True, kw_only=True):
    fallback: str
    reason: str
    from_: str = msgspec.field(name="from")
    to: str


class ContextView(msgspec.Struct, frozen=True, kw_only=True):
    """What the model answering a turn was not sent (a ``context_trimmed`` event): the
    oldest ``turns`` turns (``messages`` messages) of the conversation, through
    ``through_turn`` (ended at ``through_version``)."""

    turns: int
    messages: int
    through_turn: str
    through_version: int
    estimated_tokens: int
    budget_tokens: int
    context_tokens: int
    refused: bool = False


class ApprovalView(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call of the turn that needed a person's approval, and its decision."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    status: Literal["waiting", "granted", "denied"]
    #: when it is denied by itself (microseconds since the epoch; 0: never)
    deadline: int
    reason: str = ""
    #: who decided (``user:<owner>``; ``system``: the deadline)
    decided_by: str = ""


class TurnView(msgspec.Struct, frozen=True, kw_only=True):
    turn_id: str
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    attempt: int
    provider: str
    model: str
    cancel_requested: bool = False
    #: a stop asked to leave the turn out of the model's context (double texting: rollback)
    rolled_back: bool = False
    #: text streamed so far by a running turn's current step
    partial_text: str = ""
    error: str = ""
    fallbacks: list[FallbackView] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    #: the context cut the model was sent this turn with (null: the whole conversation)
    context: ContextView | None = None
    #: its calls that needed a person's approval (``waiting``: the turn waits for them)
    approvals: list[ApprovalView] = msgspec.field(default_factory=list)


class QuarantinedView(msgspec.Struct, frozen=True, kw_only=True):
    """A stored record that cannot be read (undecodable, of a newer schema, or under
    a subject its envelope disagrees with): where it is and why."""

    position: int
    reason: str


class SessionDetail(_Session, frozen=True, kw_only=True):
    system_prompt: str
    tool_servers: list[str]
    params: Params
    #: the session's double-texting policy (null: the deployment's default)
    double_texting: DoubleTexting | None = None
    #: ``always``: every tool call waits for a person's approval
    approval: Literal["always"] | None = None
    created_at: int
    updated_at: int
    #: the state is as of this version (the session's last, unless ``at`` asked for less)
    version: int
    position: int
    in_flight: str | None = None
    pending: list[str] = msgspec.field(default_factory=list)
    turns: list[TurnView] = msgspec.field(default_factory=list)
    messages: list[MessageView] = msgspec.field(default_factory=list)
    #: records that could not be read and were stepped over (see docs/events.md)
    quarantined: list[QuarantinedView] = msgspec.field(default_factory=list)


class ProviderView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    #: empty: any model name is accepted
    models: list[str]
    default_model: str


class ProviderList(msgspec.Struct, frozen=True, kw_only=True):
    providers: list[ProviderView]
    tool_servers: list[str]


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = msgspec.field(default_factory=dict)


# ----------------------------------------------------------------------------- forks


class ForkSession(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new session continuing from the source's finished turns up to ``version``."""

    version: Annotated[int, Meta(ge=1, le=POSITION_MAX)]
    #: default: the source's; checked against the catalog
    provider: Annotated[str, Meta(max_length=128)] = ""
    #: default: the source's model (or, with another provider, that provider's default)
    model: Annotated[str, Meta(max_length=200)] = ""
