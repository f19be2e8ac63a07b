"""The client's address, believing ``X-Forwarded-For`` only from trusted proxies.

The rightmost address a trusted proxy did not add is the client: every
hop to its left could have been written by the client itself.
"""

from __future__ import annotations

from typing import AbstractSet

from twisted.web.server import Request


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: AbstractSet[str]) -> str:
    if not forwarded_for or peer not in trusted_proxies:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return hops[0] if hops else peer


def request_client_address(request: Request, trusted_proxies: AbstractSet[str]) -> str:
    """``client_address`` of an HTTP request (``local`` for a non-IP peer)."""
    peer = getattr(request.getClientAddress(), "host", "local")
    return client_address(peer, request.getHeader("x-forwarded-for"), trusted_proxies)
