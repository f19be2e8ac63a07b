"""What every SockJS handler of one endpoint shares: options, clock, sessions, client address.

A plain holder, so transport modules need not import the root resource.
"""

from __future__ import annotations

from typing import Callable

import attrs
from twisted.web.server import Request

from anonchat.web.sockjs.hints import Clock
from anonchat.web.sockjs.options import SockJSOptions
from anonchat.web.sockjs.registry import SessionRegistry


def peer_host(request: Request) -> str:
    """The default client address: the peer's host, as the socket reports it."""
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")


@attrs.define
class Endpoint:
    options: SockJSOptions
    clock: Clock
    registry: SessionRegistry
    client_address: Callable[[Request], str] = peer_host
