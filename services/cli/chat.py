"""``threadline chat [SESSION]``: chat with a Threadline gateway from the terminal.

Starts a new session (or resumes SESSION and shows its history), reads lines, sends each
one and streams the answer as it arrives, with tool calls, tool results, fallbacks and
failures. Ctrl-C while an answer streams stops that turn; Ctrl-C at the prompt, Ctrl-D
or ``/quit`` leave. Until the ``threadline`` command lists it,
``python -m threadline.services.cli chat`` runs it the same way.

The gateway: ``--url``, else ``THREADLINE_URL``, else the one a running ``threadline up``
recorded for this data dir, else ``http://127.0.0.1:8000``. The token: ``--token``, else
``THREADLINE_TOKEN``, else the first of ``THREADLINE_TOKENS``, else the dev token
``threadline up`` keeps in the data dir.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.base.text import comma_list
from threadline.events.ids import validate_session_id
from threadline.services.chatclient import Chat, ChatError, GatewayClient, LineReader, Renderer
from threadline.services.gateway.models import SessionDetail
from threadline.services.runtime.connect import configured_token, read_dev_token, read_runtime

DEFAULT_URL = "http://127.0.0.1:8000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", nargs="?", help="a session to resume (default: a new one)")
    parser.add_argument("--url", help=f"the gateway (default THREADLINE_URL, else {DEFAULT_URL})")
    parser.add_argument(
        "--token", help="bearer token (default THREADLINE_TOKEN; prefer it: argv is visible)"
    )
    parser.add_argument("--title", default="", help="title of a new session")
    parser.add_argument("--provider", default="", help="provider of a new session")
    parser.add_argument("--model", default="", help="model of a new session")
    parser.add_argument(
        "--tools",
        help="comma-separated MCP servers for a new session (default: all the gateway "
        "offers; '' for none)",
    )
    parser.add_argument(
        "--approve-tools",
        action="store_true",
        help="a new session's tool calls wait for your approval (asked at the prompt)",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text output")


def resolve(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """The gateway URL and the token, from arguments, environment or the data dir."""
    recorded = str(read_runtime(settings).get("gateway_url") or "")
    url = args.url or os.environ.get("THREADLINE_URL") or recorded or DEFAULT_URL
    token = (
        args.token
        or os.environ.get("THREADLINE_TOKEN")
        or configured_token(settings)
        or read_dev_token(settings)
    )
    if not token:
        raise ConfigurationError(
            "no token: set THREADLINE_TOKEN (or pass --token); `threadline up` and "
            "`threadline gateway` keep a dev token in the data dir when none is configured"
        )
    return url.rstrip("/"), token


async def _open(client: GatewayClient, args: argparse.Namespace) -> SessionDetail:
    if args.session:
        return await client.session(validate_session_id(args.session))
    tools = list(
        (await client.providers()).tool_servers if args.tools is None else comma_list(args.tools)
    )
    created = await client.create_session(
        title=args.title, provider=args.provider, model=args.model, tool_servers=tools,
        approve_tools=args.approve_tools,
    )  # fmt: skip
    return await client.session(created.id, wait_for=created.position)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    url, token = resolve(args, settings)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # no request lines in the chat
    client = GatewayClient(url, token)
    color = False if args.no_color else None
    try:
        detail = await _open(client, args)
        chat = Chat(client, detail.id, Renderer(sys.stdout, color=color), LineReader())
        return await chat.run(detail)
    except ChatError as exc:
        print(f"threadline chat: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
