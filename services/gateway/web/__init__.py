"""The web page the gateway serves at ``/``: sessions, live chat, the raw event timeline.

Plain HTML, CSS and JavaScript shipped as package data (no build step, nothing from a
CDN). The page and its assets are public; the page's API calls carry the bearer token.
"""

from threadline.services.gateway.web.page import ROUTES, SECURITY_HEADERS

__all__ = ["ROUTES", "SECURITY_HEADERS"]
