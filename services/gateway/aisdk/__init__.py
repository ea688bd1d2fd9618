"""Vercel AI SDK compatibility: ``useChat`` talks to Threadline directly.

``POST /api/chat`` takes what ``DefaultChatTransport`` sends and answers with the UI
Message Stream protocol v1; ``GET /api/chat/{id}/stream`` resumes an answer in flight
(``useChat({resume: true})``). Modules: :mod:`.commands` (request -> our commands),
:mod:`.chunks` (our events -> stream chunks), :mod:`.protocol` (the chunk types),
:mod:`.stream` (stored then live events of a turn), :mod:`.routes`. See docs/aisdk.md.
"""

from threadline.services.gateway.aisdk.routes import AISDK_ROUTES

__all__ = ["AISDK_ROUTES"]
