"""The in-process message buffer: the embedded default when there is no Redis.

Ids mimic Redis stream ids (``<ms>-<seq>``, never going backwards even when
the clock does) so everything downstream treats both backends alike.
Trimming only ever removes the oldest end, like ``XTRIM MINID``: acknowledged
messages stuck behind an unacknowledged one stay until it is acknowledged,
so the retained messages are always one contiguous run of ids.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from typing import Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.chat.message import ChatMessage, id_key
from anonchat.chat.ports import BufferUnavailable, FeedListener, IMessageBuffer


def _key(message: ChatMessage) -> tuple[int, int]:
    return id_key(message.id)


@implementer(IMessageBuffer)
class InMemoryBuffer:
    """Keeps the newest ``retain`` acknowledged messages and every
    unacknowledged one; the feed is delivered synchronously from ``append``."""

    log = Logger()

    def __init__(self, clock: IReactorTime, *, retain: int = 1000) -> None:
        if retain < 0:
            raise ValueError("retain must not be negative")
        self._clock = clock
        self._retain = retain
        self._messages: deque[ChatMessage] = deque()
        # unacknowledged ids in id order (dicts keep insertion order)
        self._unacknowledged: dict[str, ChatMessage] = {}
        self._listeners: list[FeedListener] = []
        self._last = (0, 0)
        self._trimmed_up_to = (0, 0)
        self._to_deliver: deque[ChatMessage] = deque()
        self._delivering = False
        self._stopped = False

    def start(self) -> Deferred[None]:
        self._stopped = False
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self._stopped = True
        return succeed(None)

    def _next_id(self) -> str:
        # a microsecond of slack absorbs float error (1.123 s * 1000 = 1122.999...)
        ms = int(self._clock.seconds() * 1000 + 1e-3)
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return "%d-%d" % self._last

    def append(self, message: ChatMessage) -> Deferred[ChatMessage]:
        if self._stopped:
            return fail(BufferUnavailable("the buffer is stopped"))
        try:
            # what Redis could not store is refused here too (lone surrogates)
            message.sender.encode("utf-8")
            message.content.encode("utf-8")
        except UnicodeEncodeError:
            return fail(ValueError("the message cannot be encoded as UTF-8"))
        stored = message.with_id(self._next_id())
        self._messages.append(stored)
        self._unacknowledged[stored.id] = stored
        self._to_deliver.append(stored)
        self._deliver()
        return succeed(stored)

    def _deliver(self) -> None:
        # a listener that appends re-enters here; queueing keeps every
        # listener's view in id order
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._to_deliver:
                batch = list(self._to_deliver)
                self._to_deliver.clear()
                for listener in list(self._listeners):
                    try:
                        listener(batch)
                    except Exception:
                        self.log.failure("feed listener {listener!r} failed", listener=listener)
        finally:
            self._delivering = False

    def add_listener(self, listener: FeedListener) -> None:
        self._listeners.append(listener)

    def recent(self, limit: int) -> Deferred[list[ChatMessage]]:
        newest = list(itertools.islice(reversed(self._messages), max(limit, 0)))
        newest.reverse()
        return succeed(newest)

    def read_after(self, after_id: str, limit: int) -> Deferred[list[ChatMessage] | None]:
        try:
            after = id_key(after_id)
        except ValueError as e:
            return fail(e)
        if after < self._trimmed_up_to:
            return succeed(None)
        start = bisect.bisect_right(self._messages, after, key=_key)
        return succeed(list(itertools.islice(self._messages, start, start + max(limit, 0))))

    def trim_point(self) -> Deferred[str | None]:
        if self._trimmed_up_to == (0, 0):
            return succeed(None)
        return succeed("%d-%d" % self._trimmed_up_to)

    def read_before(self, before_id: str | None, limit: int) -> Deferred[list[ChatMessage]]:
        if before_id is None:
            return self.recent(limit)
        try:
            before = id_key(before_id)
        except ValueError as e:
            return fail(e)
        end = bisect.bisect_left(self._messages, before, key=_key)
        return succeed(list(itertools.islice(self._messages, max(end - max(limit, 0), 0), end)))

    def claim_batch(self, limit: int) -> Deferred[list[ChatMessage]]:
        # one node, one flusher: whatever is not acknowledged is its batch,
        # offered again until acknowledged
        return succeed(list(itertools.islice(self._unacknowledged.values(), max(limit, 0))))

    def acknowledge(self, message_ids: Sequence[str]) -> Deferred[None]:
        for message_id in message_ids:
            self._unacknowledged.pop(message_id, None)
        self._trim()
        return succeed(None)

    def _trim(self) -> None:
        messages = self._messages
        while messages and len(messages) - len(self._unacknowledged) > self._retain:
            if messages[0].id in self._unacknowledged:
                break
            self._trimmed_up_to = id_key(messages.popleft().id)

    def backlog(self) -> Deferred[int]:
        return succeed(len(self._unacknowledged))

    def ping(self) -> Deferred[bool]:
        return succeed(not self._stopped)
