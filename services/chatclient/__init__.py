"""``threadline chat``: an interactive terminal client for a Threadline gateway.

:class:`GatewayClient` speaks the REST API and follows a session's Server-Sent Events
(reconnecting with ``Last-Event-ID``); :class:`Renderer` turns events into terminal
lines; :class:`LineReader` reads stdin without blocking the event loop; :class:`Chat`
ties them together (prompt, streamed answers, Ctrl-C stops the running turn).
"""

from threadline.services.chatclient.client import ChatError, GatewayClient
from threadline.services.chatclient.render import Renderer
from threadline.services.chatclient.session import Chat
from threadline.services.chatclient.terminal import INTERRUPTED, LineReader

__all__ = ["INTERRUPTED", "Chat", "ChatError", "GatewayClient", "LineReader", "Renderer"]
