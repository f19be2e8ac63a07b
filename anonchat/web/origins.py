"""The one ``--allowed-origins`` rule and the one CORS policy, shared by
WebSocket, SockJS and the REST API.

No list means any origin; a request without ``Origin`` is not a browser's
cross-origin request and passes; otherwise the origin must be listed.
CORS follows SockJS (the contract says so for ``/api/*`` too): echo the
``Origin`` (``*`` for an absent or ``null`` one) with credentials allowed;
with an allow-list, a request without ``Origin`` gets no CORS headers.
"""

from __future__ import annotations

from typing import AbstractSet

import attrs
from twisted.web.server import Request


def origin_allowed(allowed: AbstractSet[str] | None, origin: str | None) -> bool:
    return allowed is None or origin is None or origin in allowed


@attrs.frozen
class CorsPolicy:
    allowed: AbstractSet[str] | None = None

    def permits(self, request: Request) -> bool:
        """Whether this request's ``Origin`` (if any) may use the server."""
        origin = request.getHeader(b"origin")
        return origin_allowed(self.allowed, None if origin is None else origin.decode("latin-1"))

    def apply(self, request: Request) -> None:
        """The CORS headers of a response to a permitted request."""
        origin = request.getHeader(b"origin")
        if origin is None or origin == b"null":
            if self.allowed is not None and origin is None:
                return  # not a cross-origin request; with an allow-list we only ever echo
            allow = b"*"
        else:
            allow = origin
        request.setHeader(b"Access-Control-Allow-Origin", allow)
        request.setHeader(b"Access-Control-Allow-Credentials", b"true")
        request.setHeader(b"Vary", b"Origin")
        wanted = request.getHeader(b"access-control-request-headers")
        if wanted:
            request.setHeader(b"Access-Control-Allow-Headers", wanted)

    def preflight(self, request: Request, methods: bytes, max_age: int) -> None:
        """Headers of a ``204`` answer to an ``OPTIONS`` preflight."""
        request.setResponseCode(204)
        request.setHeader(b"Access-Control-Max-Age", b"%d" % max_age)
        request.setHeader(b"Access-Control-Allow-Methods", methods)
        self.apply(request)
