"""The in-process buffer: the contract, driven by a ``task.Clock``."""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet import task
from twisted.trial import unittest

from anonchat.chat.message import ChatMessage, id_key
from anonchat.store.memory import InMemoryBuffer
from tests.buffer_contract import BufferContractMixin, Recorder, chat


class InMemoryBufferContractTests(BufferContractMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_732_430_000.5)

    def make_buffer(self, retain: int = 1000) -> InMemoryBuffer:
        buffer = InMemoryBuffer(self.clock, retain=retain)
        self.addCleanup(buffer.stop)
        buffer.start()
        return buffer

    async def eventually(self, check: Callable[[], bool]) -> None:
        # the in-process feed is synchronous: it has already happened or never will
        self.assertTrue(check())


class InMemoryBufferTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.buffer = InMemoryBuffer(self.clock, retain=3)
        self.buffer.start()

    def append(self, content: str = "x") -> ChatMessage:
        return self.successResultOf(self.buffer.append(chat(content)))

    def test_ids_come_from_the_clock_in_milliseconds(self) -> None:
        self.clock.advance(1_732_430_000.123)
        self.assertEqual(self.append().id, "1732430000123-0")
        self.assertEqual(self.append().id, "1732430000123-1")
        self.clock.advance(0.001)
        self.assertEqual(self.append().id, "1732430000124-0")

    def test_first_id_at_time_zero_is_after_the_zero_id(self) -> None:
        self.assertEqual(self.append().id, "0-1")

    def test_clock_going_back_keeps_ids_increasing(self) -> None:
        self.clock.advance(10)
        first = self.append()
        self.clock.rightNow = 5.0
        second = self.append()
        self.assertEqual((first.id, second.id), ("10000-0", "10000-1"))

    def test_listener_appending_does_not_reorder_the_feed(self) -> None:
        order: list[list[str]] = [[], []]

        def echo(batch: Sequence[ChatMessage]) -> None:
            order[0].extend(m.content for m in batch)
            for m in batch:
                if m.content == "ping":
                    self.buffer.append(chat("pong"))

        def second(batch: Sequence[ChatMessage]) -> None:
            order[1].extend(m.content for m in batch)

        self.buffer.add_listener(echo)
        self.buffer.add_listener(second)
        self.append("ping")
        self.append("after")
        self.assertEqual(order[0], ["ping", "pong", "after"])
        self.assertEqual(order[1], ["ping", "pong", "after"])

    def test_append_result_fires_after_delivery_in_feed_order(self) -> None:
        recorder = Recorder()
        self.buffer.add_listener(recorder)
        fired: list[str] = []
        for i in range(3):
            self.buffer.append(chat(str(i))).addCallback(lambda m: fired.append(m.id))
        self.assertEqual(fired, recorder.ids)

    def test_memory_is_bounded_by_retain_plus_backlog(self) -> None:
        for i in range(2000):
            self.append(str(i))
            if i % 100 == 99:
                batch = self.successResultOf(self.buffer.claim_batch(80))
                self.successResultOf(self.buffer.acknowledge([m.id for m in batch]))
        backlog = self.successResultOf(self.buffer.backlog())
        self.assertEqual(backlog, 400)
        held = self.successResultOf(self.buffer.read_before(None, 10_000))
        self.assertEqual(len(held), 3 + backlog)

    def test_read_after_rejects_a_malformed_id(self) -> None:
        self.failureResultOf(self.buffer.read_after("nope", 10), ValueError)

    def test_stop_fires_at_once(self) -> None:
        self.successResultOf(self.buffer.stop())
        self.assertTrue(self.successResultOf(self.buffer.ping()) is False)

    def test_ids_sort_numerically_not_as_strings(self) -> None:
        self.clock.advance(9.999)
        a = self.append()
        self.clock.advance(0.001)
        b = self.append()
        self.assertEqual((a.id, b.id), ("9999-0", "10000-0"))
        self.assertLess(id_key(a.id), id_key(b.id))
        self.assertEqual(self.successResultOf(self.buffer.read_after(a.id, 10)), [b])
