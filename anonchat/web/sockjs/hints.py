"""Structural types for what this package calls on Twisted and on the STOMP session.

zope interfaces are opaque to mypy without its zope plugin; these Protocols
name the few methods used, and the reactor, ``task.Clock`` and the STOMP
session satisfy them as they are.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class DelayedCall(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The part of ``IReactorTime`` used here."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...


class Receiver(Protocol):
    """The STOMP session as a carrier sees it (``IFrameReceiver``)."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None: ...


#: ``session_factory(transport, client) -> IFrameReceiver``.
ReceiverFactory = Callable[[Any, Any], Receiver]
