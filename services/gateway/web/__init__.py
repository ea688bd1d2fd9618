"""The web pages the gateway serves: the chat at ``/`` (docs/web.md) and the replay
debugger at ``/debug`` (docs/debugger.md).

Plain HTML, CSS and JavaScript shipped as package data, with pinned vendored libraries
(no build step, nothing from a CDN). The pages and their assets are public; their API
calls carry the bearer token, which ``threadline up`` hands to a local browser
(:mod:`~threadline.services.gateway.web.signin`).
"""

from threadline.services.gateway.web.page import ROUTES, SECURITY_HEADERS

__all__ = ["ROUTES", "SECURITY_HEADERS"]
