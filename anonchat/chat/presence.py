"""Who is online: the port, and its in-process twin.

Nicknames are claimed here, so uniqueness holds wherever the registry
reaches (one process here; every node with Redis).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import Interface, implementer


class IPresence(Interface):
    def claim(name: str, since_ms: int) -> Deferred[bool]:
        """Take ``name`` for a user online since ``since_ms``; False if taken."""

    def release(name: str) -> Deferred[None]:
        """The user left."""

    def online() -> Deferred[list[tuple[str, int]]]:
        """Every online user with the time they joined, oldest first."""


@implementer(IPresence)
class InMemoryPresence:
    def __init__(self) -> None:
        self._users: dict[str, int] = {}

    def claim(self, name: str, since_ms: int) -> Deferred[bool]:
        if name in self._users:
            return succeed(False)
        self._users[name] = since_ms
        return succeed(True)

    def release(self, name: str) -> Deferred[None]:
        self._users.pop(name, None)
        return succeed(None)

    def online(self) -> Deferred[list[tuple[str, int]]]:
        return succeed(sorted(self._users.items(), key=lambda item: (item[1], item[0])))
