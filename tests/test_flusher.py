"""The flusher between a buffer and an archive, driven by a ``task.Clock``.

The buffer and archive here are small fakes that can be made to fail or to
hold a call open, so the order of store and acknowledge can be pinned.
"""

from __future__ import annotations

from typing import Any, Sequence, cast

import attrs
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial import unittest

from anonchat.chat.message import ChatMessage, MessageType, id_key
from anonchat.store.flusher import Flusher
from anonchat.chat.ports import ArchiveUnavailable, BufferUnavailable

START = 1_732_430_000.0


class FakeBuffer:
    """The claim/acknowledge/backlog part of an IMessageBuffer, in memory.

    ``claim_batch`` offers the oldest unacknowledged messages again and again
    until they are acknowledged (one node: nothing else could take them).
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.pending: dict[str, ChatMessage] = {}
        self.appended = 0
        self.claims: list[int] = []
        self.acks: list[list[str]] = []
        self.fail_claims = False
        self.fail_acks = False
        self._last = (0, 0)

    def append_now(self, content: str = "x", type: MessageType = MessageType.CHAT) -> ChatMessage:
        ms = int(self.clock.seconds() * 1000)
        seq = self._last[1] + 1 if self._last[0] == ms else 0
        self._last = (ms, seq)
        message = ChatMessage(type, "익명-12345", content, ms, f"{ms}-{seq}")
        self.pending[message.id] = message
        self.appended += 1
        return message

    def claim_batch(self, limit: int) -> Deferred[list[ChatMessage]]:
        if self.fail_claims:
            return defer.fail(BufferUnavailable("claim refused"))
        batch = sorted(self.pending.values(), key=lambda m: id_key(m.id))[:limit]
        self.claims.append(len(batch))
        return defer.succeed(batch)

    def acknowledge(self, message_ids: Sequence[str]) -> Deferred[None]:
        if self.fail_acks:
            return defer.fail(BufferUnavailable("ack refused"))
        self.acks.append(list(message_ids))
        for message_id in message_ids:
            self.pending.pop(message_id, None)
        return defer.succeed(None)

    def backlog(self) -> Deferred[int]:
        return defer.succeed(len(self.pending))


class FakeArchive:
    """An idempotent archive that can fail, raise, or hold a store open."""

    def __init__(self) -> None:
        self.rows: dict[str, ChatMessage] = {}
        self.batches: list[list[str]] = []
        self.failing: type[Exception] | None = None
        self.raise_synchronously = False
        self.held: list[Deferred[None]] | None = None

    def store(self, messages: Sequence[ChatMessage]) -> Deferred[None]:
        if self.failing is not None:
            if self.raise_synchronously:
                raise self.failing("store broke")
            return defer.fail(self.failing("store refused"))
        self.batches.append([m.id for m in messages])

        def write(_: object = None) -> None:
            for m in messages:
                self.rows.setdefault(m.id, m)

        if self.held is not None:
            held: Deferred[None] = Deferred()
            held.addCallback(write)
            self.held.append(held)
            return held
        write()
        return defer.succeed(None)

    def erase(self, message_ids: Sequence[str]) -> Deferred[None]:
        for message_id in message_ids:
            if message_id in self.rows and self.rows[message_id].type is MessageType.CHAT:
                self.rows[message_id] = attrs.evolve(self.rows[message_id], content="")
        return defer.succeed(None)


class FlusherTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.buffer = FakeBuffer(self.clock)
        self.archive = FakeArchive()
        self.events: list[dict[str, Any]] = []
        self.flusher = self.make_flusher()

    def make_flusher(self, **kwargs: Any) -> Flusher:
        flusher = Flusher(self.buffer, self.archive, self.clock, **{"interval": 1.0, "batch_size": 500, **kwargs})
        flusher.log = Logger(namespace="test.flusher", observer=cast(ILogObserver, self.events.append))
        return flusher

    def fill(self, count: int) -> list[ChatMessage]:
        return [self.buffer.append_now(f"m{i}") for i in range(count)]

    def stop_at_end(self) -> None:
        self.addCleanup(lambda: self.successResultOf(self.flusher.stop()))

    def test_flush_once_stores_batches_of_batch_size(self) -> None:
        self.fill(1_200)
        self.assertEqual(self.successResultOf(self.flusher.flush_once()), 1_200)
        self.assertEqual([len(b) for b in self.archive.batches], [500, 500, 200])
        self.assertEqual(self.buffer.claims, [500, 500, 200])
        self.assertEqual(len(self.archive.rows), 1_200)
        self.assertEqual(self.buffer.pending, {})

    def test_a_full_last_batch_claims_once_more(self) -> None:
        self.fill(1_000)
        self.assertEqual(self.successResultOf(self.flusher.flush_once()), 1_000)
        self.assertEqual(self.buffer.claims, [500, 500, 0])

    def test_nothing_to_flush_is_zero(self) -> None:
        self.assertEqual(self.successResultOf(self.flusher.flush_once()), 0)
        self.assertEqual(self.archive.batches, [])

    def test_batches_are_stored_oldest_first(self) -> None:
        made = self.fill(7)
        self.flusher = self.make_flusher(batch_size=3)
        self.successResultOf(self.flusher.flush_once())
        self.assertEqual([i for b in self.archive.batches for i in b], [m.id for m in made])

    def test_acknowledges_only_after_the_store_succeeded(self) -> None:
        made = self.fill(3)
        self.archive.held = []
        flushed = self.flusher.flush_once()
        self.assertNoResult(flushed)
        self.assertEqual(len(self.archive.held), 1)
        self.assertEqual(self.buffer.acks, [])
        self.archive.held[0].callback(None)
        self.assertEqual(self.successResultOf(flushed), 3)
        self.assertEqual(self.buffer.acks, [[m.id for m in made]])

    def test_store_failure_acknowledges_nothing(self) -> None:
        self.fill(3)
        self.archive.failing = ArchiveUnavailable
        self.failureResultOf(self.flusher.flush_once(), ArchiveUnavailable)
        self.assertEqual(self.buffer.acks, [])
        self.assertEqual(len(self.buffer.pending), 3)
        self.assertEqual(self.flusher.consecutive_failures, 1)

    def test_loop_flushes_every_interval(self) -> None:
        self.stop_at_end()
        self.flusher.start()
        self.fill(2)
        self.clock.advance(0.5)
        self.assertEqual(len(self.archive.rows), 0)
        self.clock.advance(0.5)
        self.assertEqual(len(self.archive.rows), 2)
        self.fill(1)
        self.clock.advance(1.0)
        self.assertEqual(len(self.archive.rows), 3)
        self.assertEqual(self.flusher.flushed_total, 3)

    def test_store_failure_is_retried_next_tick(self) -> None:
        self.stop_at_end()
        self.fill(5)
        self.archive.failing = ArchiveUnavailable
        self.flusher.start()
        self.clock.advance(1.0)
        self.assertEqual(self.flusher.consecutive_failures, 2)
        self.assertEqual(len(self.buffer.pending), 5)
        self.archive.failing = None
        self.clock.advance(1.0)
        self.assertEqual(len(self.archive.rows), 5)
        self.assertEqual(self.buffer.pending, {})
        self.assertEqual(self.flusher.consecutive_failures, 0)

    def test_loop_survives_buffer_failures(self) -> None:
        self.stop_at_end()
        self.fill(2)
        self.buffer.fail_claims = True
        self.flusher.start()
        self.clock.pump([1.0] * 3)
        self.assertTrue(self.flusher.running)
        self.assertEqual(self.flusher.consecutive_failures, 4)
        self.buffer.fail_claims = False
        self.clock.advance(1.0)
        self.assertEqual(len(self.archive.rows), 2)

    def test_loop_survives_unexpected_exceptions(self) -> None:
        self.stop_at_end()
        self.fill(2)
        self.archive.failing = RuntimeError
        self.archive.raise_synchronously = True
        self.flusher.start()
        self.clock.advance(2.0)
        self.assertTrue(self.flusher.running)
        self.archive.failing = None
        self.clock.advance(1.0)
        self.assertEqual(len(self.archive.rows), 2)
        self.assertEqual(self.flusher.consecutive_failures, 0)

    def test_acknowledge_failure_stores_again_later_without_losing_anything(self) -> None:
        self.stop_at_end()
        self.fill(4)
        self.buffer.fail_acks = True
        self.flusher.start()
        self.clock.advance(1.0)
        self.assertEqual(len(self.buffer.pending), 4)
        self.buffer.fail_acks = False
        self.clock.advance(1.0)
        self.assertEqual(self.buffer.pending, {})
        self.assertEqual(len(self.archive.rows), 4)
        self.assertEqual(len(self.archive.batches), 3)  # stored on every tick until the ack went through

    def test_an_outage_is_logged_once_and_its_end_once(self) -> None:
        self.stop_at_end()
        self.fill(1)
        self.archive.failing = ArchiveUnavailable
        self.flusher.start()
        self.clock.advance(1.0)
        self.clock.pump([1.0] * 10)
        self.archive.failing = None
        self.clock.advance(1.0)
        loud = [e for e in self.events if e["log_level"] >= LogLevel.warn]
        self.assertEqual(len(loud), 1)
        self.assertEqual(loud[0]["error_type"], "ArchiveUnavailable")
        recovered = [e for e in self.events if e.get("failures") == 12]
        self.assertEqual(len(recovered), 1)
        self.fill(1)
        self.archive.failing = ArchiveUnavailable
        self.clock.pump([1.0] * 3)
        self.assertEqual(len([e for e in self.events if e["log_level"] >= LogLevel.warn]), 2)
        self.flushLoggedErrors()

    def test_counters(self) -> None:
        self.fill(3)
        self.clock.advance(2.5)
        self.fill(2)
        self.clock.advance(0.25)
        self.flusher = self.make_flusher(batch_size=4)
        self.successResultOf(self.flusher.flush_once())
        self.assertEqual(self.flusher.flushed_total, 5)
        self.assertEqual(self.flusher.last_batch_size, 1)
        self.assertAlmostEqual(self.flusher.last_lag_seconds, 0.25, places=3)
        self.successResultOf(self.flusher.flush_once())
        self.assertEqual(self.flusher.last_batch_size, 0)
        self.assertEqual(self.flusher.last_lag_seconds, 0.0)

    def test_lag_is_of_the_oldest_message_in_the_batch(self) -> None:
        self.fill(1)
        self.clock.advance(10.0)
        self.fill(1)
        self.clock.advance(1.0)
        self.successResultOf(self.flusher.flush_once())
        self.assertAlmostEqual(self.flusher.last_lag_seconds, 11.0, places=3)

    def test_stop_drains_the_buffer(self) -> None:
        self.flusher = self.make_flusher(batch_size=10)
        self.flusher.start()
        self.fill(95)
        self.successResultOf(self.flusher.stop())
        self.assertFalse(self.flusher.running)
        self.assertEqual(self.buffer.pending, {})
        self.assertEqual(len(self.archive.rows), 95)
        self.fill(1)
        self.clock.advance(5.0)
        self.assertEqual(len(self.archive.rows), 95)  # the loop really stopped

    def test_stop_waits_for_the_flush_in_progress(self) -> None:
        self.fill(3)
        self.archive.held = []
        self.flusher.start()
        stopped = self.flusher.stop()
        self.assertNoResult(stopped)
        self.fill(2)
        self.archive.held.pop(0).callback(None)
        self.assertNoResult(stopped)  # draining the two that came meanwhile
        self.archive.held.pop(0).callback(None)
        self.successResultOf(stopped)
        self.assertEqual(len(self.archive.rows), 5)

    def test_stop_gives_up_when_the_archive_fails(self) -> None:
        self.fill(3)
        self.archive.failing = ArchiveUnavailable
        self.flusher.start()
        self.successResultOf(self.flusher.stop())
        self.assertEqual(len(self.buffer.pending), 3)

    def test_stop_without_start_still_drains(self) -> None:
        self.fill(3)
        self.successResultOf(self.flusher.stop())
        self.assertEqual(len(self.archive.rows), 3)

    def test_direct_flushes_do_not_overlap(self) -> None:
        self.fill(3)
        self.archive.held = []
        first = self.flusher.flush_once()
        second = self.flusher.flush_once()
        self.assertEqual(len(self.archive.held), 1)
        self.archive.held[0].callback(None)
        self.assertEqual(self.successResultOf(first), 3)
        self.assertEqual(self.successResultOf(second), 0)
        self.assertEqual(self.buffer.claims, [3, 0])



class NudgeTests(unittest.TestCase):
    """A full batch waiting is flushed at once, not at the next tick."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.buffer = FakeBuffer(self.clock)
        self.archive = FakeArchive()

    def test_nudge_flushes_before_the_next_tick(self) -> None:
        flusher = Flusher(self.buffer, self.archive, self.clock, interval=10.0, batch_size=5)
        flusher.start()
        for n in range(7):
            self.buffer.append_now(f"m{n}")
        self.clock.advance(1)
        self.assertEqual(self.archive.rows, {})
        flusher.nudge()
        self.assertEqual(len(self.archive.rows), 7)
        self.assertEqual(self.buffer.pending, {})
        self.successResultOf(flusher.stop())

    def test_nudge_while_a_flush_runs_does_not_start_another(self) -> None:
        self.archive.held = []
        flusher = Flusher(self.buffer, self.archive, self.clock, interval=10.0, batch_size=5)
        self.buffer.append_now()
        flusher.start()
        flusher.nudge()
        self.assertEqual(len(self.archive.held), 1)
        self.archive.held.pop().callback(None)
        self.successResultOf(flusher.stop())

    def test_nudge_does_nothing_when_stopped(self) -> None:
        flusher = Flusher(self.buffer, self.archive, self.clock)
        self.buffer.append_now()
        flusher.nudge()
        self.assertEqual(self.archive.rows, {})


class DeletionRaceTests(unittest.TestCase):
    """A moderator's deletion wins against the flusher, whichever comes first."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.buffer = FakeBuffer(self.clock)
        self.archive = FakeArchive()
        self.deleted: set[str] = set()
        self.flusher = Flusher(self.buffer, self.archive, self.clock, hidden=self.hidden)

    def hidden(self, ids: Sequence[str]) -> Deferred[set[str]]:
        return defer.succeed({i for i in ids if i in self.deleted})

    def chat(self, content: str) -> ChatMessage:
        return self.buffer.append_now(content)

    def test_deleted_before_its_batch_is_stored_erased(self) -> None:
        kept, gone = self.chat("fine"), self.chat("awful")
        self.deleted.add(gone.id)
        self.successResultOf(self.flusher.flush_once())
        self.assertEqual((self.archive.rows[kept.id].content, self.archive.rows[gone.id].content), ("fine", ""))

    def test_a_delete_message_erases_a_target_stored_earlier(self) -> None:
        gone = self.chat("awful")
        self.successResultOf(self.flusher.flush_once())
        self.deleted.add(gone.id)
        self.buffer.append_now(gone.id, MessageType.DELETE)  # a DELETE carries its target where content goes
        self.successResultOf(self.flusher.flush_once())
        self.assertEqual(self.archive.rows[gone.id].content, "")

    def test_a_deletion_marked_while_its_batch_is_written_is_erased_after(self) -> None:
        gone = self.chat("awful")
        self.archive.held = []
        flushed = self.flusher.flush_once()
        self.deleted.add(gone.id)  # its DELETE goes to another node's batch
        self.archive.held.pop().callback(None)
        self.successResultOf(flushed)
        self.assertEqual(self.archive.rows[gone.id].content, "")
