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
from twisted.internet.interfaces import IReactorTime

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


class HistoryRate:
    """How many history messages per second the node serves, REST pages and
    replays together: a flood of resumes must not take the CPU that live
    fan-out and the flusher need (each replayed message is serialized for
    one client alone, unlike a broadcast).

    A leaky bucket on the clock: serving ``n`` messages books ``n / rate``
    seconds, and a read (a REST page, a replay) is refused while the
    bookings run more than ``backlog`` seconds ahead. Refused, not queued:
    a replay that waited would hold the live messages meanwhile and get its
    client cut. ``rate`` 0 = no limit; up to ``burst`` seconds of idle
    credit are kept.
    """

    def __init__(self, clock: IReactorTime, rate: float, *, burst: float = 1.0, backlog: float = 2.0) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._backlog = backlog
        self._free_at = 0.0
        #: For metrics: REST pages refused as the node was busy with history.
        self.refused = 0

    def admit(self) -> None:
        """A history read may start now, or ArchiveBusy (REST: 503 with
        Retry-After; a replay: REPLAY_FAILED, the subscription goes live)."""
        if self._rate > 0 and self._free_at - self._clock.seconds() > self._backlog:
            self.refused += 1
            raise ArchiveBusy("this node is busy serving history; try again shortly")

    def charge(self, count: int) -> None:
        """A read of ``count`` messages was served."""
        if self._rate > 0 and count > 0:
            now = self._clock.seconds()
            self._free_at = max(self._free_at, now - self._burst) + count / self._rate
