"""Who is online: the port, and its in-process twin.

Nicknames are claimed here, so uniqueness holds wherever the registry
reaches (one process here; every node with Redis).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from anonchat.chat.ports import IPresence, ReapedListener


@implementer(IPresence)
class InMemoryPresence:
    def __init__(self) -> None:
        self._users: dict[str, int] = {}
        self._lingering: dict[str, str] = {}

    def set_reaped_listener(self, listener: ReapedListener) -> None:
        pass  # one process: its users leave with their sessions

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def claim(self, name: str, since_ms: int) -> Deferred[bool]:
        if name in self._users:
            return succeed(False)
        self._users[name] = since_ms
        return succeed(True)

    def release(self, name: str) -> Deferred[None]:
        self._users.pop(name, None)
        self._lingering.pop(name, None)
        return succeed(None)

    def linger(self, name: str, nonce: str, seconds: float) -> Deferred[None]:
        if name in self._users:
            self._lingering[name] = nonce
        return succeed(None)

    def resume(self, name: str, nonce: str) -> Deferred[bool]:
        if self._lingering.get(name) != nonce:
            return succeed(False)
        del self._lingering[name]
        return succeed(True)

    def expire_linger(self, name: str, nonce: str) -> Deferred[bool]:
        return self.resume(name, nonce)

    def online(self) -> Deferred[list[tuple[str, int]]]:
        return succeed(sorted(self._users.items(), key=lambda item: (item[1], item[0])))
