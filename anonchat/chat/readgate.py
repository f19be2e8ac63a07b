"""Admission for history reads (REST pages, x-since-id replays).

One history read costs far more than a chat message (Redis range reads,
database pages), so a node runs a few at once and keeps a short line;
past it a read is refused at once (ArchiveBusy: REST answers 503 with
Retry-After) instead of queueing without bound behind the chat traffic
that shares the same Redis connection and database.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore

from anonchat.chat.ports import ArchiveBusy

T = TypeVar("T")


class ReadGate:
    """Admission for history reads: ``running`` at once, ``waiting`` more in
    line; :meth:`enter` raises ArchiveBusy at once when the line is full."""

    def __init__(self, running: int, waiting: int) -> None:
        self._semaphore = DeferredSemaphore(running)
        self._waiting = waiting
        self.refused = 0

    def enter(self) -> Deferred[Any]:
        """Fires when the read may run; call :meth:`leave` once it is done."""
        semaphore = self._semaphore
        if semaphore.tokens == 0 and len(semaphore.waiting) >= self._waiting:
            self.refused += 1
            raise ArchiveBusy(f"{len(semaphore.waiting)} history reads are waiting already")
        return semaphore.acquire()

    def leave(self) -> None:
        self._semaphore.release()

    async def run(self, read: Callable[[], Awaitable[T]]) -> T:
        """``read()`` once admitted; raises ArchiveBusy when the line is full."""
        await self.enter()
        try:
            return await read()
        finally:
            self.leave()
