"""The stream's settings, creating it, and refusing one that breaks our guarantees."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from threadline.base.aio import cancelled_meanwhile
from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable, StreamConfigError, StreamMissing

MIN_DUPLICATE_WINDOW_S = 600.0


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """nats-py's errors (and lost sockets) as :class:`StoreUnavailable`: ``<what> failed``;
    and a cancellation the request dropped (:func:`~threadline.base.aio.cancelled_meanwhile`)
    raised."""
    try:
        yield
    except (nats.errors.Error, OSError) as exc:
        raise StoreUnavailable(f"{what} failed: {exc!r}") from None
    cancelled_meanwhile()


def stream_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream configuration of the event stream these settings describe."""
    return StreamConfig(
        name=settings.name,
        subjects=[f"{settings.prefix}.*.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        discard=DiscardPolicy.NEW,
        duplicate_window=settings.duplicate_window_s,
        max_msg_size=settings.max_event_bytes,
        deny_delete=settings.deny_delete,
        deny_purge=settings.deny_purge,
        allow_rollup_hdrs=False,
        allow_direct=True,
        max_consumers=settings.max_consumers,
    )


def stream_problems(config: StreamConfig, settings: StreamSettings) -> list[str]:
    """What makes an existing stream unsafe or unusable for Threadline (empty: fine)."""
    problems: list[str] = []
    wanted = f"{settings.prefix}.*.*"
    if wanted not in (config.subjects or []):
        problems.append(f"subjects are {config.subjects}, expected to include {wanted!r}")
    if not config.deny_delete:
        problems.append("deny_delete is off: messages can be deleted")
    if not config.deny_purge:
        problems.append("deny_purge is off: the stream can be purged")
    if config.allow_rollup_hdrs:
        problems.append("rollups are allowed: a rollup header can erase history")
    if config.storage != StorageType.FILE:
        problems.append("storage is not file: events do not survive a restart")
    if config.discard != DiscardPolicy.NEW:
        problems.append("discard is not 'new': limits would silently drop old events")
    if (config.duplicate_window or 0) < MIN_DUPLICATE_WINDOW_S:
        problems.append(
            f"duplicate window is {config.duplicate_window} s; at least "
            f"{MIN_DUPLICATE_WINDOW_S:.0f} s is needed for safe client retries"
        )
    if not config.allow_direct:
        problems.append("allow_direct is off: heads cannot be read")
    return problems + _changed(config, stream_config(settings))


#: limits Threadline creates the stream without: any of them set means events are dropped
#: (discard old) or refused (discard new) once reached, so the log is no longer complete
_UNLIMITED: Final = (
    ("max_msgs", -1),
    ("max_bytes", -1),
    ("max_age", 0),
    ("max_msgs_per_subject", -1),
)


def _changed(live: StreamConfig, created: StreamConfig) -> list[str]:
    """Where the live stream differs from what Threadline creates (beyond the safety
    checks above): its retention, its size and age limits, a seal, a per-message size
    limit above what it was made with. Each names the field."""
    problems = []
    if live.retention != created.retention:
        retention = getattr(live.retention, "value", live.retention)
        problems.append(f"retention is {retention!r}, created as 'limits'")
    for field, unlimited in _UNLIMITED:
        value = getattr(live, field)
        if value not in (None, unlimited):
            problems.append(f"{field} is {value}, created unlimited ({unlimited})")
    if live.sealed:
        problems.append("sealed is on: nothing can be appended")
    made, size = created.max_msg_size or -1, live.max_msg_size or -1
    if -1 < size < made:
        problems.append(f"max_msg_size is {size}, created {made}: larger events are refused")
    return problems


async def require_stream(nc: Client, settings: StreamSettings) -> None:
    """Raise :class:`StreamMissing` unless the stream exists; reads only (creates nothing)."""
    with unavailable(f"reading stream {settings.name}"):
        try:
            await nc.jetstream().stream_info(settings.name)
        except nats.js.errors.NotFoundError:
            raise StreamMissing(f"stream {settings.name} does not exist") from None


async def live_problems(nc: Client, settings: StreamSettings) -> list[str]:
    """:func:`stream_problems` of the stream as the server has it now (``/readyz``)."""
    with unavailable(f"reading stream {settings.name}"):
        try:
            info = await nc.jetstream().stream_info(settings.name)
        except nats.js.errors.NotFoundError:
            return [f"stream {settings.name} does not exist"]
    return stream_problems(info.config, settings)


async def ensure_stream(
    nc: Client, settings: StreamSettings, *, allow_unsafe: bool = False
) -> StreamInfo:
    """Create the stream if missing; check it if present.

    A stream whose settings break the guarantees (deny flags off, rollups allowed,
    ...) is refused with :class:`StreamConfigError` unless ``allow_unsafe`` is set,
    which is meant for development and tamper tests only.
    """
    js = nc.jetstream()
    try:
        try:
            info = await js.stream_info(settings.name)
        except nats.js.errors.NotFoundError:
            info = await js.add_stream(stream_config(settings))
    except nats.js.errors.ServiceUnavailableError:
        raise StoreUnavailable("JetStream is not enabled on this NATS server") from None
    except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
        raise StoreUnavailable(f"cannot create or read stream {settings.name}: {exc}") from None
    if 0 < (info.config.max_consumers or 0) < settings.max_consumers:
        # lift an existing stream's consumer cap (an allowed, non-destructive update)
        info.config.max_consumers = settings.max_consumers
        try:
            info = await js.update_stream(info.config)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(
                f"cannot raise the consumer limit of {settings.name}: {exc}"
            ) from None
    problems = stream_problems(info.config, settings)
    if problems and not allow_unsafe:
        raise StreamConfigError(
            f"stream {settings.name} is unsafe for Threadline: "
            + "; ".join(problems)
            + " (set THREADLINE_ALLOW_UNSAFE_STREAM=1 only for development)"
        )
    return info
