"""The behaviour every IMessageBuffer implementation must have.

Mixed into one trial TestCase per backend; the module name has no ``test_``
prefix so trial never collects the mixin on its own. The concrete case
supplies ``make_buffer`` (a started buffer, stopped in its own cleanup) and
``eventually`` (the in-memory feed is synchronous, the Redis one is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from anonchat.chat.message import ChatMessage, MessageType, id_key
from anonchat.chat.ports import BufferUnavailable, IMessageBuffer
from tests.samples import UNICODE_CONTENTS



def chat(content: str = "hello", sender: str = "익명-12345", created_ms: int = 1_732_430_000_000) -> ChatMessage:
    return ChatMessage(MessageType.CHAT, sender, content, created_ms)


class Recorder:
    """A feed listener that keeps every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[ChatMessage]] = []

    def __call__(self, batch: Sequence[ChatMessage]) -> None:
        self.batches.append(list(batch))

    @property
    def messages(self) -> list[ChatMessage]:
        return [m for batch in self.batches for m in batch]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.messages]


# type checkers see the TestCase this is mixed into; trial sees a plain mixin
if TYPE_CHECKING:
    _TestCase = unittest.TestCase
else:
    _TestCase = object


class BufferContractMixin(_TestCase):
    """Tests for any IMessageBuffer; mix into a ``twisted.trial`` TestCase."""

    def make_buffer(self, retain: int = 1000) -> IMessageBuffer | Deferred[IMessageBuffer]:
        """A started buffer on an empty store; the TestCase stops it in cleanup."""
        raise NotImplementedError

    async def eventually(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` is true (or fail the test)."""
        raise NotImplementedError

    async def buffer(self, retain: int = 1000) -> IMessageBuffer:
        return await maybeDeferred(self.make_buffer, retain=retain)

    async def append_all(self, buffer: IMessageBuffer, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Append without waiting for earlier ones (pipelined), in call order."""
        ds = [buffer.append(m) for m in messages]
        results = await DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)
        return [value for _ok, value in results]

    async def fill(self, buffer: IMessageBuffer, count: int) -> list[ChatMessage]:
        return await self.append_all(buffer, [chat(f"message {i}") for i in range(count)])

    def assertStrictlyIncreasing(self, ids: Sequence[str]) -> None:
        keys = [id_key(i) for i in ids]
        for earlier, later in zip(keys, keys[1:]):
            self.assertLess(earlier, later)

    # -- appending and the feed ---------------------------------------------

    async def test_provides_interface(self) -> None:
        buffer = await self.buffer()
        self.assertTrue(verifyObject(IMessageBuffer, buffer))

    async def test_append_fires_with_message_carrying_new_id(self) -> None:
        buffer = await self.buffer()
        original = chat("첫 메시지", created_ms=1_732_430_000_123)
        stored = await buffer.append(original)
        self.assertIsInstance(id_key(stored.id), tuple)
        self.assertEqual(stored, original.with_id(stored.id))

    async def test_ids_increase_and_are_unique(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 50)
        ids = [m.id for m in stored]
        self.assertEqual(len(set(ids)), 50)
        self.assertStrictlyIncreasing(ids)
        self.assertEqual([m.content for m in stored], [f"message {i}" for i in range(50)])

    async def test_ids_are_after_the_zero_id(self) -> None:
        buffer = await self.buffer()
        stored = await buffer.append(chat())
        self.assertLess(id_key("0-0"), id_key(stored.id))

    async def test_listener_gets_every_message_once_in_id_order(self) -> None:
        buffer = await self.buffer()
        recorder = Recorder()
        buffer.add_listener(recorder)
        stored = await self.fill(buffer, 30)
        await self.eventually(lambda: len(recorder.messages) >= 30)
        self.assertEqual(recorder.messages, stored)
        self.assertTrue(all(recorder.batches))

    async def test_every_listener_gets_the_same_feed(self) -> None:
        buffer = await self.buffer()
        first, second = Recorder(), Recorder()
        buffer.add_listener(first)
        buffer.add_listener(second)
        stored = await self.fill(buffer, 5)
        await self.eventually(lambda: len(first.messages) >= 5 and len(second.messages) >= 5)
        self.assertEqual(first.messages, stored)
        self.assertEqual(second.messages, stored)

    async def test_failing_listener_does_not_stop_the_feed(self) -> None:
        buffer = await self.buffer()

        def broken(batch: Sequence[ChatMessage]) -> None:
            raise RuntimeError("listener bug")

        recorder = Recorder()
        buffer.add_listener(broken)
        buffer.add_listener(recorder)
        stored = await self.fill(buffer, 3)
        await self.eventually(lambda: len(recorder.messages) >= 3)
        more = await buffer.append(chat("after"))
        await self.eventually(lambda: len(recorder.messages) >= 4)
        self.assertEqual(recorder.messages, stored + [more])
        self.assertTrue(self.flushLoggedErrors(RuntimeError))

    async def test_unicode_round_trips_exactly(self) -> None:
        buffer = await self.buffer()
        recorder = Recorder()
        buffer.add_listener(recorder)
        originals = [chat(c, sender="익명-00042 🐱") for c in UNICODE_CONTENTS]
        originals.append(ChatMessage(MessageType.JOIN, "익명-77777", "", 1))
        originals.append(ChatMessage(MessageType.LEAVE, "익명-77777", "", 2**41))
        stored = await self.append_all(buffer, originals)
        self.assertEqual(stored, [o.with_id(s.id) for o, s in zip(originals, stored)])
        await self.eventually(lambda: len(recorder.messages) >= len(stored))
        self.assertEqual(recorder.messages, stored)
        self.assertEqual(await buffer.recent(100), stored)
        self.assertEqual(await buffer.read_after("0-0", 100), stored)
        self.assertEqual(await buffer.read_before(None, 100), stored)
        self.assertEqual(await buffer.claim_batch(100), stored)

    async def test_content_that_is_not_unicode_text_is_refused(self) -> None:
        buffer = await self.buffer()
        await self.assertFailure(buffer.append(chat("lone \ud800 surrogate")), ValueError)
        self.assertTrue(await buffer.ping())
        self.assertEqual(await buffer.recent(10), [])
        self.assertEqual(await buffer.backlog(), 0)

    # -- reading --------------------------------------------------------------

    async def test_empty_buffer_reads_nothing(self) -> None:
        buffer = await self.buffer()
        self.assertEqual(await buffer.recent(10), [])
        self.assertEqual(await buffer.read_before(None, 10), [])
        self.assertEqual(await buffer.read_after("0-0", 10), [])
        self.assertEqual(await buffer.claim_batch(10), [])
        self.assertEqual(await buffer.backlog(), 0)

    async def test_recent_is_newest_oldest_first(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 10)
        self.assertEqual(await buffer.recent(3), stored[-3:])
        self.assertEqual(await buffer.recent(100), stored)
        self.assertEqual(await buffer.recent(0), [])

    async def test_read_before(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 10)
        ids = [m.id for m in stored]
        self.assertEqual(await buffer.read_before(None, 4), stored[-4:])
        self.assertEqual(await buffer.read_before(ids[5], 100), stored[:5])
        self.assertEqual(await buffer.read_before(ids[5], 2), stored[3:5])
        self.assertEqual(await buffer.read_before(ids[0], 10), [])
        self.assertEqual(await buffer.read_before("0-0", 10), [])
        ms, seq = id_key(ids[-1])
        self.assertEqual(await buffer.read_before(f"{ms + 1}-0", 100), stored)

    async def test_read_after(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 10)
        ids = [m.id for m in stored]
        self.assertEqual(await buffer.read_after("0-0", 100), stored)
        self.assertEqual(await buffer.read_after(ids[0], 100), stored[1:])
        self.assertEqual(await buffer.read_after(ids[3], 2), stored[4:6])
        self.assertEqual(await buffer.read_after(ids[-1], 10), [])
        ms, seq = id_key(ids[-1])
        self.assertEqual(await buffer.read_after(f"{ms + 5}-0", 10), [])

    async def test_read_after_an_id_between_two_messages(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 3)
        ms, seq = id_key(stored[1].id)
        # the id right before stored[1] is not a message, yet a valid boundary
        before_second = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**63}"
        self.assertEqual(await buffer.read_after(before_second, 10), stored[1:])

    # -- claiming, acknowledging, trimming -------------------------------------

    async def test_claim_offers_unacknowledged_oldest_first_and_again_until_acknowledged(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 5)
        self.assertEqual(await buffer.claim_batch(3), stored[:3])
        # not acknowledged (the insert failed): offered again
        self.assertEqual(await buffer.claim_batch(3), stored[:3])
        await buffer.acknowledge([m.id for m in stored[:3]])
        self.assertEqual(await buffer.claim_batch(10), stored[3:])
        await buffer.acknowledge([m.id for m in stored[3:]])
        self.assertEqual(await buffer.claim_batch(10), [])

    async def test_claim_of_more_than_available_returns_all_then_new_ones(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 2)
        self.assertEqual(await buffer.claim_batch(10), stored)
        later = await self.fill(buffer, 2)
        self.assertEqual(await buffer.claim_batch(10), stored + later)

    async def test_backlog_counts_what_is_not_acknowledged(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 5)
        self.assertEqual(await buffer.backlog(), 5)
        await buffer.claim_batch(3)
        self.assertEqual(await buffer.backlog(), 5)
        await buffer.acknowledge([m.id for m in stored[:3]])
        self.assertEqual(await buffer.backlog(), 2)

    async def test_acknowledging_twice_or_unknown_ids_is_harmless(self) -> None:
        buffer = await self.buffer()
        stored = await self.fill(buffer, 3)
        await buffer.claim_batch(10)
        await buffer.acknowledge([stored[0].id])
        await buffer.acknowledge([stored[0].id, "1-1"])
        await buffer.acknowledge([])
        self.assertEqual(await buffer.backlog(), 2)
        self.assertEqual(await buffer.claim_batch(10), stored[1:])

    async def test_trim_keeps_the_newest_retained_acknowledged(self) -> None:
        buffer = await self.buffer(retain=3)
        stored = await self.fill(buffer, 10)
        batch = await buffer.claim_batch(100)
        await buffer.acknowledge([m.id for m in batch])
        self.assertEqual(await buffer.recent(100), stored[-3:])
        self.assertEqual(await buffer.read_before(None, 100), stored[-3:])
        self.assertEqual(await buffer.backlog(), 0)

    async def test_trim_never_drops_unacknowledged(self) -> None:
        buffer = await self.buffer(retain=2)
        stored = await self.fill(buffer, 10)
        ids = [m.id for m in stored]
        await buffer.claim_batch(100)
        await buffer.acknowledge(ids[:3] + ids[5:])
        held = await buffer.read_before(None, 100)
        self.assertIn(stored[3], held)
        self.assertIn(stored[4], held)
        self.assertEqual(held[-2:], stored[-2:])
        self.assertEqual(await buffer.claim_batch(100), stored[3:5])
        self.assertEqual(await buffer.backlog(), 2)
        await buffer.acknowledge(ids[3:5])
        self.assertEqual(await buffer.recent(100), stored[-2:])

    async def test_unclaimed_messages_are_never_trimmed(self) -> None:
        buffer = await self.buffer(retain=1)
        stored = await self.fill(buffer, 4)
        await buffer.claim_batch(2)
        await buffer.acknowledge([m.id for m in stored[:2]])
        # the newest acknowledged one is the retained window, the rest is backlog
        self.assertEqual(await buffer.read_before(None, 100), stored[1:])
        self.assertEqual(await buffer.claim_batch(10), stored[2:])

    async def test_read_after_is_none_once_something_after_it_was_trimmed(self) -> None:
        buffer = await self.buffer(retain=3)
        stored = await self.fill(buffer, 10)
        ids = [m.id for m in stored]
        await buffer.claim_batch(100)
        await buffer.acknowledge(ids)
        self.assertIsNone(await buffer.read_after("0-0", 10))
        self.assertIsNone(await buffer.read_after(ids[0], 10))
        self.assertIsNone(await buffer.read_after(ids[5], 10))
        # the predecessor of the oldest retained message is still a complete boundary
        self.assertEqual(await buffer.read_after(ids[6], 10), stored[7:])
        self.assertEqual(await buffer.read_after(ids[7], 10), stored[8:])
        self.assertEqual(await buffer.read_after(ids[-1], 10), [])

    async def test_trim_point_is_the_newest_trimmed_id(self) -> None:
        buffer = await self.buffer(retain=3)
        self.assertIsNone(await buffer.trim_point())
        stored = await self.fill(buffer, 10)
        ids = [m.id for m in stored]
        await buffer.claim_batch(100)
        await buffer.acknowledge(ids[:4])
        partly = await buffer.trim_point()
        # never past what is acknowledged; and exactly the boundary read_after uses
        self.assertIn(partly, ids[:4])
        self.assertIsNotNone(await buffer.read_after(partly, 10))
        await buffer.acknowledge(ids[4:])
        self.assertEqual(await buffer.trim_point(), ids[6])
        self.assertIsNone(await buffer.read_after(ids[5], 10))
        self.assertIsNotNone(await buffer.read_after(ids[6], 10))

    # -- lifecycle ------------------------------------------------------------

    async def test_ping_is_true_when_running(self) -> None:
        buffer = await self.buffer()
        self.assertTrue(await buffer.ping())

    async def test_append_after_stop_fails_with_buffer_unavailable(self) -> None:
        buffer = await self.buffer()
        await buffer.stop()
        await self.assertFailure(buffer.append(chat()), BufferUnavailable)
        await buffer.stop()  # stopping twice is harmless


class SharedBufferContractMixin(BufferContractMixin):
    """For buffers several nodes share (Redis): what one node appends,
    every node's feed delivers, in one order."""

    async def test_two_nodes_see_every_message_once_in_the_same_order(self) -> None:
        node_a, node_b = await self.buffer(), await self.buffer()
        seen_a, seen_b = Recorder(), Recorder()
        node_a.add_listener(seen_a)
        node_b.add_listener(seen_b)
        ds = []
        for i in range(20):
            node = node_a if i % 2 else node_b
            ds.append(node.append(chat(f"node message {i}")))
        results = await DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)
        stored = sorted((m for _ok, m in results), key=lambda m: id_key(m.id))
        await self.eventually(lambda: len(seen_a.messages) >= 20 and len(seen_b.messages) >= 20)
        self.assertEqual(seen_a.messages, stored)
        self.assertEqual(seen_b.messages, stored)
        self.assertStrictlyIncreasing(seen_a.ids)
