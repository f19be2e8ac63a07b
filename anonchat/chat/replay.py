"""Resuming ``/topic/chat`` from ``x-since-id``: the replay, then live.

A replay races three things: the live feed (with Redis another
connection, which may lag or lead what the replay read), the subscriber's
socket (the replay is paced by it) and the client itself (UNSUBSCRIBE, or
a new SUBSCRIBE with the same id). Each replay is one object with its own
state, so a stale one can only ever cancel itself, never consume another
subscription's held messages.

It is bounded: at most ``limit`` messages (the newest of what was missed;
the first then carries ``x-resume-gap:true``), read with at most two
reads, and the live messages held meanwhile are charged to the
subscriber's budget, which cuts a client that stops reading. Held
messages are handed over at the socket's pace, not in one burst. When
history is what is slow (the read still waits) and the held messages
pass the budget, the replay gives up instead (REPLAY_FAILED, then live):
the server's slowness must not cost a client its connection.
"""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from anonchat.chat.message import ChatMessage, id_key
from anonchat.chat.ports import IMessageArchive, IMessageBuffer
from anonchat.chat.readgate import HistoryRate, ReadGate
from anonchat.chat.subscriber import Subscriber
from anonchat.logs import ThrottledLog
from anonchat.stomp.outbound import Outbound
from anonchat.stomp.server_frames import message_frame

log = Logger()
failures = ThrottledLog(log)  # a resume flood refused: one line a minute

GAP_HEADER = (("x-resume-gap", "true"),)
#: Replayed messages written at once (one socket write), between checks
#: that the subscriber's carrier has room.
REPLAY_CHUNK = 64


IdKey = tuple[int, int]


class ReplayFailed(Exception):
    """History could not be read; the subscriber goes live regardless."""


class GaveUp(Exception):
    """The replay stopped waiting for its history read."""


class HistoryReplay:
    def __init__(self, subscriber: Subscriber, subscription: str, since: str, *, clock: IReactorTime,
                 destination: str,
                 buffer: IMessageBuffer, archive: IMessageArchive | None, limit: int,
                 hidden: Callable[[Sequence[str]], Deferred[set[str]]], gate: ReadGate | None = None,
                 rate: HistoryRate | None = None,
                 fed_up_to: Callable[[], IdKey | None], go_live: Callable[[HistoryReplay], None]) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.since = since
        self.destination = destination
        self._clock = clock
        self._buffer = buffer
        self._archive = archive
        self._limit = limit
        self._hidden = hidden
        self._gate = gate
        self._rate = rate
        self._fed_up_to = fed_up_to
        self._go_live = go_live
        #: Live (id key, id, body) that came through the feed meanwhile.
        self._held: list[tuple[IdKey, str, bytes]] = []
        self._last_sent: IdKey = id_key(since)
        #: The newest id the replay read, until the feed has passed it.
        self._awaiting: IdKey | None = None
        self.cancelled = False
        #: What run() waits for while history is read: the read's result,
        #: or GaveUp first (the read then ends unheeded).
        self._reading: Deferred[tuple[list[ChatMessage], bool, IdKey | None]] | None = None
        #: The place in the read gate's line while it waits for one.
        self._entering: Deferred[object] | None = None
        #: Held bytes allowed past the send buffer (once the replay gave up
        #: because history was slower than the live messages piling up).
        self._slack = 0
        self._handing_over = False
        self.finished = False

    # -- what the room calls ------------------------------------------------------

    def on_feed(self, fed: Sequence[tuple[IdKey, str, bytes]]) -> None:
        """Live messages: hold them (charged to the subscriber's budget)
        and go live once the feed has passed what the replay read."""
        if self.cancelled or self.finished:
            return
        self._held.extend(fed)
        if not self.subscriber.budget.hold(sum(len(item[2]) for item in fed), slack=self._slack):
            if self._reading is not None:
                # The server is slow (history waits in line), not the client:
                # give up the replay, not the connection. run() reports
                # REPLAY_FAILED and hands the held messages over; they may
                # take the send buffer once more meanwhile, no further.
                self._slack = self.subscriber.budget.held_bytes
                self._give_up()
            else:
                log.info("closing a resuming subscriber that stopped reading")
                self.subscriber.close("slow-consumer")
                self.cancel()
            return
        if self._awaiting is not None and fed and fed[-1][0] >= self._awaiting:
            self._finish()

    def cancel(self) -> None:
        """UNSUBSCRIBE, disconnect or a slow client: drop everything (a
        read still waiting for the gate leaves its line)."""
        self.cancelled = True
        self._held = []
        self.subscriber.budget.release_replay(self)
        self._give_up()

    async def run(self) -> None:
        reading: Deferred[tuple[list[ChatMessage], bool, IdKey | None]] = Deferred()
        self._reading = reading

        def settle(result: tuple[list[ChatMessage], bool, IdKey | None] | Failure) -> None:
            if not reading.called:
                reading.callback(result)  # a Failure runs the errbacks

        Deferred.fromCoroutine(self._history()).addBoth(settle)
        try:
            messages, gap, read_up_to = await reading
        except Exception as e:
            if self.cancelled:
                return
            if self._slack:
                failures.warn(self._clock, "overtaken", "a replay gave up: the live messages held while"
                              " history was read passed the client's send buffer")
            else:
                failures.warn(self._clock, type(e).__name__, "a replay failed: {error}",
                              error=type(e).__name__)
            self._finish()
            raise ReplayFailed() from None
        finally:
            self._reading = None
        for start in range(0, len(messages), REPLAY_CHUNK):
            # Paced by the socket: a long gap must not overflow the client's
            # send buffer and get it cut as too slow.
            await self.subscriber.when_writable()
            if self.cancelled or not self.subscriber.is_open:
                return
            chunk = messages[start:start + REPLAY_CHUNK]
            self._send([(m.id, m.to_json()) for m in chunk], gap=gap and start == 0)
            self._last_sent = id_key(chunk[-1].id)
        if self.cancelled:
            return
        if read_up_to is not None:
            self._last_sent = max(self._last_sent, read_up_to)
        fed = self._fed_up_to()
        if read_up_to is not None and (fed is None or fed < self._last_sent):
            self._awaiting = self._last_sent  # on_feed finishes
            return
        self._finish()

    # -- inside -------------------------------------------------------------------

    def _give_up(self) -> None:
        """Stop waiting for history: leave the gate's line if still in it
        (a read already running is not cut short, only no longer heeded:
        it may be on a database thread)."""
        if self._entering is not None:
            self._entering.cancel()
        if self._reading is not None and not self._reading.called:
            self._reading.errback(GaveUp())

    async def _history(self) -> tuple[list[ChatMessage], bool, IdKey | None]:
        """What to replay, whether more was missed, and the newest id read."""
        if self._rate is not None:
            self._rate.admit()  # the node's history rate, shared with REST
        if self._gate is None:
            messages, gap = await self._read()
        else:
            entering = self._entering = self._gate.enter()
            try:
                await entering
            finally:
                self._entering = None
            try:
                messages, gap = await self._read()
            finally:
                self._gate.leave()
        if self._rate is not None:
            self._rate.charge(len(messages))
        read_up_to = id_key(messages[-1].id) if messages else None
        deleted = await self._hidden([m.id for m in messages])
        if deleted:  # a moderator removed them: never replayed
            messages = [m for m in messages if m.id not in deleted]
        return messages, gap, read_up_to

    async def _read(self) -> tuple[list[ChatMessage], bool]:
        """What was missed after ``since`` (at most ``limit``, the newest),
        and whether more was missed than that."""
        limit = self._limit
        after = await self._buffer.read_after(self.since, limit + 1)
        if after is not None:
            if len(after) <= limit:
                return after, False
            return await self._buffer.read_before(None, limit), True
        # Older than the buffer holds. Everything older than the buffer's
        # oldest entry is archived (trimming never passes an unarchived
        # one), so the archive is read only below it: no hole even when
        # another node archived a later batch before an earlier one.
        tail = await self._buffer.read_before(None, limit + 1)
        if len(tail) > limit:
            return tail[1:], True
        if self._archive is None:
            return tail, False
        since = id_key(self.since)
        older = await self._archive.read_before(tail[0].id if tail else None, limit + 1 - len(tail))
        missed = [m for m in older if id_key(m.id) > since] + tail
        if len(missed) > limit:
            return missed[-limit:], True
        return missed, False

    def _finish(self) -> None:
        """Hand the held live messages over, then go live. Paced by the
        socket like the replay: held messages are written a chunk at a time
        while the carrier has room (more live ones are held meanwhile), so
        the hand-over is never one burst into a full socket, which a
        carrier would count against the client and cut it for."""
        if self.cancelled or self.finished or self._handing_over:
            return
        self._handing_over = True
        Deferred.fromCoroutine(self._hand_over()).addErrback(
            lambda failure: log.failure("a replay's hand-over failed", failure))

    async def _hand_over(self) -> None:
        budget = self.subscriber.budget
        while self._held:
            await self.subscriber.when_writable()
            if self.cancelled or not self.subscriber.is_open:
                return
            chunk, self._held = self._held[:REPLAY_CHUNK], self._held[REPLAY_CHUNK:]
            budget.unhold(sum(len(body) for _, _, body in chunk))
            last = self._last_sent
            fresh = [(message_id, body) for key, message_id, body in chunk if key > last]
            self._send(fresh)
            self._last_sent = max(last, chunk[-1][0])
        # the same turn as the last check: no feed batch can fall between
        self.finished = True
        budget.release_replay(self)
        self._go_live(self)

    def _send(self, messages: Sequence[tuple[str, bytes]], gap: bool = False) -> None:
        """Messages (id, body) for this subscriber alone, in one write; the
        first carries the gap flag when asked."""
        if not messages:
            return
        version = self.subscriber.version
        self.subscriber.deliver(Outbound.batch([
            Outbound(message_frame(self.destination, self.subscription, message_id, body, version,
                                   GAP_HEADER if gap and index == 0 else ()))
            for index, (message_id, body) in enumerate(messages)
        ]))
