"""Ephemeral events every node must see but nobody stores (typing).

The in-process twin hands an event straight back; the Redis one goes
through pub/sub so the users of every node see it. Loss is acceptable
here: a missed typing flag lapses by itself.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from anonchat.chat.ports import IRelay, RelayListener


@implementer(IRelay)
class LocalRelay:
    def __init__(self) -> None:
        self._listener: RelayListener | None = None

    def publish(self, body: bytes) -> None:
        if self._listener is not None:
            self._listener(body)

    def set_listener(self, listener: RelayListener) -> None:
        self._listener = listener

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)
