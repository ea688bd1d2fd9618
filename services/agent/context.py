"""The context window: how much of a session's conversation a model request carries.

Each model has a context window (:func:`context_tokens`: the provider's
``context_tokens`` from the config file, else the :data:`CATALOGUE`, else
:data:`DEFAULT_CONTEXT_TOKENS`). A request's input may take the window less the reply's
``max_tokens`` (:func:`input_budget`). Before each model request the agent estimates
what it would send (:func:`estimate_tokens`: UTF-8 bytes / 4 of the encoded messages,
system prompt and tools; no tokenizer) and, when the conversation does not fit, leaves
out its oldest parts: whole ended turns (:class:`~threadline.events.fold.Span`), never
the system prompt or the turn being answered, so a tool call is never sent without its
result. The cut moves in steps: once the conversation does not fit, the oldest parts
are left out down to :data:`LOW_WATERMARK_PERCENT` of the budget, and that cut holds
while what follows it fits. :class:`ContextWindow` walks from the newest part backwards
and stops at the cut in force or when the budget is full; each part's size is kept for
the session's later turns (:class:`SpanSizes`), so its cost follows what is sent, not
the session's length. The turn records each change of the cut as ``context_trimmed``
(docs/agent.md, "Long sessions and the context window").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import msgspec

from threadline.events.conversation import Message, ToolSpec
from threadline.events.fold import Span
from threadline.events.schema import ContextTrimmed, GenerationParams
from threadline.services.agent.providers.settings import ProviderSettings
from threadline.services.devmodel.settings import DEFAULT_MODEL as DEV_MODEL

#: the estimate's ratio: English text runs at about 4 bytes per token
BYTES_PER_TOKEN: Final = 4
#: a model neither configured nor in the catalogue
DEFAULT_CONTEXT_TOKENS: Final = 32_768
#: the dev model's window: small, so that tests and benchmarks reach it
DEV_CONTEXT_TOKENS: Final = 16_384
#: a new cut leaves a request at most this share of its input budget, so that the cut
#: then holds (the same oldest part sent, one event) while the turns that follow fill
#: the rest, instead of moving by one turn every turn
LOW_WATERMARK_PERCENT: Final = 75

#: model name (after a router's ``vendor/`` prefix) -> window; the longest matching
#: prefix wins. Published limits, rounded down where providers disagree.
CATALOGUE: Final[Mapping[str, int]] = {
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-": 200_000,
    "gemini-1.5-pro": 2_097_152,
    "gemini-": 1_048_576,
    DEV_MODEL: DEV_CONTEXT_TOKENS,
}

#: providers whose servers decide the window whatever the model: Ollama serves a
#: model with its ``num_ctx`` (smaller than the model's own limit unless raised)
PROVIDER_WINDOWS: Final[Mapping[str, int]] = {"ollama": 8_192}

_encode = msgspec.json.Encoder().encode


def context_tokens(settings: ProviderSettings, model: str) -> int:
    """The context window of ``model`` (empty: the provider's default) at a provider."""
    name = settings.model_for(model)
    configured = settings.context_tokens
    if name in configured or "*" in configured:
        return configured.get(name, configured.get("*", 0))
    if settings.name in PROVIDER_WINDOWS:
        return PROVIDER_WINDOWS[settings.name]
    bare = name.rsplit("/", 1)[-1]
    prefixes = [prefix for prefix in CATALOGUE if bare.startswith(prefix)]
    return CATALOGUE[max(prefixes, key=len)] if prefixes else DEFAULT_CONTEXT_TOKENS


def input_budget(window: int, settings: ProviderSettings, params: GenerationParams) -> int:
    """What a request's input may take: the window less the reply's ``max_tokens``
    (and a thinking budget on top of the provider's default), never less than half."""
    reserve = params.max_tokens or (settings.max_tokens + (params.reasoning_budget_tokens or 0))
    return max(window - reserve, window // 2)


def estimate_tokens(size_bytes: int) -> int:
    """Tokens for ``size_bytes`` bytes of encoded request (rounded up)."""
    return -(-size_bytes // BYTES_PER_TOKEN)


def fixed_bytes(system: str, tools: Sequence[ToolSpec]) -> int:
    """What every request of a step sends besides the conversation."""
    return len(system.encode()) + (len(_encode(tools)) if tools else 0)


class Cut(NamedTuple):
    """Where a request's conversation starts: the oldest ``spans`` parts of the history
    (``start`` messages) are left out; ``estimated`` tokens are sent."""

    spans: int
    start: int
    estimated: int


@dataclass(frozen=True, slots=True)
class Budget:
    """A model's window and what a request's input may take of it."""

    window: int
    tokens: int
    #: the tokens were halved after the provider refused a request as too long
    refused: bool = False


class SpanSizes:
    """The sizes of each session's parts by ``Span.version`` (a part is an ended turn of
    the session's append-only log: it always holds the same messages), kept between its
    turns for the ``max_sessions`` sessions used last."""

    def __init__(self, max_sessions: int = 2_000) -> None:
        self._max = max_sessions
        self._sessions: OrderedDict[str, dict[int, int]] = OrderedDict()

    def of(self, session: str) -> dict[int, int]:
        """The sizes known of ``session``'s parts (filled by :class:`ContextWindow`)."""
        sizes = self._sessions.pop(session, None)
        self._sessions[session] = sizes = {} if sizes is None else sizes
        if len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return sizes


class ContextWindow:
    """The cut of one turn attempt's requests.

    ``history`` and ``spans`` are the session's ended conversation and its parts
    (``SessionState.committed`` and ``.spans``, read, never copied); ``own`` in
    :meth:`fit` is the turn's own messages (its user message and the steps it has
    finished), which are always sent. Sizes are cached per part (in ``sizes``: the
    session's, :meth:`SpanSizes.of`) and per own message, so a later step or turn
    estimates only what is new; ``estimated_messages`` counts the messages encoded.
    """

    def __init__(
        self,
        history: Sequence[Message],
        spans: Sequence[Span],
        budget: Budget,
        sizes: dict[int, int] | None = None,
    ):
        self.history = history
        self.spans = spans
        self.budget = budget
        self.estimated_messages = 0
        self._span_bytes = {} if sizes is None else sizes
        self._own_bytes: list[int] = []

    def fit(
        self, fixed: int, own: Sequence[Message], in_force: ContextTrimmed | None = None
    ) -> Cut:
        """The cut for a request sending ``fixed`` bytes besides its messages, given the
        cut ``in_force`` (the session's latest): kept while what follows it fits the
        budget; else the whole conversation if it fits, else a new cut down to
        :data:`LOW_WATERMARK_PERCENT` of the budget (so the cut moves in steps)."""
        for message in own[len(self._own_bytes) :]:
            self._own_bytes.append(self._size(message))
        used = fixed + sum(self._own_bytes)
        room = self.budget.tokens * BYTES_PER_TOKEN
        low = room * LOW_WATERMARK_PERCENT // 100
        keep, held, known = len(self.spans), self._held(in_force), self._span_bytes
        lowest = (keep, used)  # the cut that leaves the request within the low watermark
        while keep > held:
            size = known.get(self.spans[keep - 1].version)
            if size is None:
                size = self._span_size(keep - 1)
            if used + size > room:
                return self._cut(*lowest)
            used += size
            keep -= 1
            if used <= low:
                lowest = (keep, used)
        return self._cut(keep, used)

    def moved(self, cut: Cut, in_force: ContextTrimmed | None) -> bool:
        """Whether ``cut`` differs from the cut ``in_force`` (and so is recorded): other
        parts left out, or a cut made for another window."""
        if in_force is None:
            return cut.spans > 0
        return cut.spans != in_force.turns or (
            cut.spans > 0 and in_force.context_tokens != self.budget.window
        )

    def _held(self, in_force: ContextTrimmed | None) -> int:
        """The parts left out by ``in_force`` if it still applies: made for this window,
        of this conversation (0: none held)."""
        if in_force is None or in_force.context_tokens != self.budget.window:
            return 0
        spans = in_force.turns
        if not 0 < spans <= len(self.spans):
            return 0
        return spans if self.spans[spans - 1].version == in_force.through_version else 0

    def _cut(self, keep: int, used: int) -> Cut:
        start = self.spans[keep].start if keep < len(self.spans) else len(self.history)
        return Cut(keep, start, estimate_tokens(used))

    def tighten(self, refused: Cut) -> bool:
        """Halve the budget below what a refused request was estimated at; False when
        nothing more can be left out (only the turn itself was sent)."""
        if refused.start >= len(self.history):
            return False
        self.budget = Budget(self.budget.window, refused.estimated // 2, refused=True)
        return True

    def _span_size(self, index: int) -> int:
        span = self.spans[index]
        end = self.spans[index + 1].start if index + 1 < len(self.spans) else None
        chunk = self.history[span.start : end]
        size = self._span_bytes[span.version] = sum(self._size(m) for m in chunk)
        return size

    def _size(self, message: Message) -> int:
        self.estimated_messages += 1
        return len(_encode(message))

    def record(self, cut: Cut, step: int) -> ContextTrimmed:
        """The event naming ``cut`` (``turns=0``: the whole history is sent)."""
        last = self.spans[cut.spans - 1] if cut.spans else None
        return ContextTrimmed(
            turns=cut.spans,
            messages=cut.start,
            through_turn=(last.turn or "") if last else "",
            through_version=last.version if last else 0,
            estimated_tokens=cut.estimated,
            budget_tokens=self.budget.tokens,
            context_tokens=self.budget.window,
            step=step,
            refused=self.budget.refused,
        )


def session_budget(
    settings: ProviderSettings, model: str, params: GenerationParams, last: ContextTrimmed | None
) -> Budget:
    """The budget of a turn: the model's, or the tighter one a refusal left in force for
    this session on the same window (``last``: the session's latest cut)."""
    window = context_tokens(settings, model)
    tokens = input_budget(window, settings, params)
    if last is not None and last.refused and last.context_tokens == window:
        return Budget(window, min(tokens, last.budget_tokens), refused=True)
    return Budget(window, tokens)
