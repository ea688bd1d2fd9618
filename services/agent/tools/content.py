"""Turning MCP tool results into text for the model, and errors into safe short reasons."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any, Final

import mcp.types as types

from threadline.base.redact import Redactor
from threadline.base.text import one_line

DEFAULT_MAX_RESULT_BYTES = 64 * 1024
SUMMARY_CHARS = 200
REASON_CHARS = 200


def render_result(result: types.CallToolResult) -> str:
    """Text blocks joined by newlines; other blocks summarised; structured content as JSON.

    Structured content is appended only when no text block already carries it (servers
    SHOULD mirror it as serialised JSON in a text block). An object of one member also
    counts as carried when a text block carries that member's value: the MCP Python SDK
    wraps a value that is no object as ``{"result": value}`` and mirrors only the value,
    server-memory mirrors ``{"entities": [...]}`` as the list.
    """
    parts = [_render_block(block) for block in result.content]
    structured = result.structured_content
    if structured is not None and not _mirrored(structured, parts):
        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    return "\n".join(parts)


def _mirrored(structured: Any, parts: list[str]) -> bool:
    mirrors = [structured]
    if isinstance(structured, dict) and len(structured) == 1:
        mirrors.extend(structured.values())
    for part in parts:
        with contextlib.suppress(ValueError):  # a part that is no JSON
            if part in mirrors or json.loads(part) in mirrors:  # (a wrapped string as is)
                return True
    return False


def _render_block(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.type}: {block.mime_type}, {_b64_size(block.data)} bytes]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.uri}]"
    resource = block.resource
    if isinstance(resource, types.TextResourceContents):
        return f"[resource: {resource.uri}]\n{resource.text}"
    mime = resource.mime_type or "application/octet-stream"
    return f"[resource: {resource.uri}, {mime}, {_b64_size(resource.blob)} bytes]"


def _b64_size(data: str) -> int:
    """Decoded size of a base64 string, without decoding it."""
    return len(data.rstrip("=")) * 3 // 4


def truncate(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes, plus a marker saying so."""
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    head = encoded[:max_bytes].decode("utf-8", errors="ignore")
    return (
        f"{head}\n[truncated: the tool returned {len(encoded)} bytes; "
        f"only the first {max_bytes} bytes are shown]"
    )


#: first words of a credential that are no secret ("Bearer <token>"); any other word of
#: six or more characters is one (a value "SECRETWORD\nrest" once kept its first word)
_AUTH_SCHEMES: Final = frozenset({"bearer", "basic", "token", "digest", "apikey", "key"})


def secret_forms(secrets: Iterable[str]) -> set[str]:
    """Each secret as configured, as ``repr`` escapes it, and its long words (e.g. a token)."""
    forms: set[str] = set()
    for secret in secrets:
        escaped = secret.encode("unicode_escape").decode("ascii")
        forms.update((secret, escaped))
        for variant in {secret, escaped}:
            words = variant.split()
            if len(words) > 1 and words[0].lower() in _AUTH_SCHEMES:
                words = words[1:]  # "Bearer <token>": the scheme is no secret
            forms.update(word for word in words if len(word) >= 6)
    return forms


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without the given secrets (in any of their forms) or secret-shaped strings."""
    return Redactor(secret_forms(secrets)).redact(text)


def describe_exception(exc: BaseException, secrets: Iterable[str]) -> str:
    """A short, single-line, redacted reason for ``exc`` (the first leaf of a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = str(exc).strip()
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return one_line(redact(reason, secrets), REASON_CHARS)
