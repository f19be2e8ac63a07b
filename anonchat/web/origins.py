"""The one ``--allowed-origins`` rule, shared by WebSocket, SockJS and CORS.

No list means any origin; a request without ``Origin`` is not a browser's
cross-origin request and passes; otherwise the origin must be listed.
"""

from __future__ import annotations

from typing import AbstractSet


def origin_allowed(allowed: AbstractSet[str] | None, origin: str | None) -> bool:
    return allowed is None or origin is None or origin in allowed
