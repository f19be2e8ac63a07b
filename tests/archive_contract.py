"""The behaviour every IMessageArchive implementation must have.

Mixed into one trial TestCase per backend; the module name has no ``test_``
prefix so trial never collects the mixins on their own. ``ArchiveContractMixin``
holds what any archive must do; ``SqlArchiveContractMixin`` adds what every
SQL dialect of ``SqlArchive`` must do (dead letters, schema version).

NUL (U+0000) is ordinary content: it round-trips through both SQLite and
MySQL, so the archive neither refuses nor strips it.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Awaitable, Callable, Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import SkipTest
from zope.interface.verify import verifyObject

from anonchat.chat.message import ChatMessage, MessageType, id_key
from anonchat.chat.ports import ArchiveBusy, ArchiveUnavailable, IMessageArchive
from tests.samples import UNICODE_CONTENTS

BASE_MS = 1_732_430_000_000
#: a read held in its pool thread gives up after this long, so a failing
#: test never leaves a pool that cannot close
HOLD_SECONDS = 30.0

def message(
    message_id: str,
    content: str = "hello",
    *,
    sender: str = "익명-12345",
    created_ms: int | None = None,
    type: MessageType = MessageType.CHAT,
) -> ChatMessage:
    """A message with its id already assigned, created at its id's millisecond."""
    if created_ms is None:
        created_ms = id_key(message_id)[0] if "-" in message_id and message_id[0].isdigit() else BASE_MS
    return ChatMessage(type, sender, content, created_ms, message_id)


def sequence(count: int, start_ms: int = BASE_MS, per_ms: int = 3) -> list[ChatMessage]:
    """``count`` messages in id order, ``per_ms`` of them sharing each millisecond."""
    return [message(f"{start_ms + i // per_ms}-{i % per_ms}", f"m{i}") for i in range(count)]


def ids(messages: Sequence[ChatMessage]) -> list[str]:
    return [m.id for m in messages]


class ArchiveContractMixin:
    """Tests for any IMessageArchive; mix into a ``twisted.trial`` TestCase."""

    # supplied by the TestCase this is mixed into
    assertEqual: Callable[..., None]
    assertTrue: Callable[..., None]
    assertFalse: Callable[..., None]
    assertIn: Callable[..., None]
    assertIsInstance: Callable[..., None]
    assertFailure: Callable[..., Any]
    failureResultOf: Callable[..., Any]

    def make_archive(self) -> IMessageArchive | Awaitable[IMessageArchive]:
        """A started archive on empty tables (or an awaitable of one, e.g. from
        ``async def``); the TestCase stops it in cleanup."""
        raise NotImplementedError

    def fail_whole_batches(self, archive: IMessageArchive) -> None:
        """Make ``archive`` fail a batch holding an unstorable row as a whole
        (ArchiveUnavailable) instead of setting the row aside; skip when the
        implementation cannot."""
        raise SkipTest("this archive cannot be made to fail a batch midway")

    def unstorable(self, message_id: str) -> ChatMessage:
        """A message this archive's database refuses (a lone surrogate)."""
        return message(message_id, "lone \ud800 surrogate")

    async def archive(self) -> Any:
        made = self.make_archive()
        if inspect.isawaitable(made):
            return await made
        return made

    async def everything(self, archive: Any) -> list[ChatMessage]:
        return await archive.read_after("0-0", 100_000)

    async def test_provides_interface(self) -> None:
        archive = await self.archive()
        self.assertTrue(verifyObject(IMessageArchive, archive))

    async def test_stored_messages_read_back_with_every_field(self) -> None:
        archive = await self.archive()
        batch = [
            message(f"{BASE_MS}-0", "hi", sender="익명-00001", created_ms=BASE_MS + 123),
            message(f"{BASE_MS}-1", "", sender="익명-00002", type=MessageType.JOIN),
            message(f"{BASE_MS + 5}-0", "", sender="익명-00002", type=MessageType.LEAVE),
        ]
        await archive.store(batch)
        self.assertEqual(await self.everything(archive), batch)

    async def test_erased_messages_are_left_out_of_every_read(self) -> None:
        archive = await self.archive()
        batch = sequence(6)
        await archive.store(batch)
        await archive.erase([batch[1].id, batch[4].id, f"{BASE_MS + 99}-0"])  # the last never stored
        kept = [batch[i] for i in (0, 2, 3, 5)]
        self.assertEqual(await self.everything(archive), kept)
        self.assertEqual(await archive.read_before(None, 10), kept)
        self.assertEqual(await archive.read_before(batch[5].id, 2), [batch[2], batch[3]])
        self.assertEqual(await archive.read_after(batch[0].id, 2), [batch[2], batch[3]])

    async def test_a_deletion_stored_before_its_target_still_erases_nothing_else(self) -> None:
        """JOIN and LEAVE rows are never erased, nor is anything not named."""
        archive = await self.archive()
        join = message(f"{BASE_MS}-0", "", type=MessageType.JOIN)
        chat = message(f"{BASE_MS}-1", "hello")
        await archive.store([join, chat])
        await archive.erase([join.id])
        self.assertEqual(await self.everything(archive), [join, chat])

    async def test_empty_batch_is_a_no_op(self) -> None:
        archive = await self.archive()
        await archive.store([])
        self.assertEqual(await self.everything(archive), [])

    async def test_same_batch_twice_is_one_row_each(self) -> None:
        archive = await self.archive()
        batch = sequence(10)
        await archive.store(batch)
        await archive.store(batch)
        self.assertEqual(await self.everything(archive), batch)
        self.assertEqual(getattr(archive, "dead_lettered", 0), 0)

    async def test_overlapping_batches_keep_one_row_per_id(self) -> None:
        archive = await self.archive()
        batch = sequence(10)
        await archive.store(batch[:6])
        await archive.store(batch[3:])
        self.assertEqual(await self.everything(archive), batch)
        self.assertEqual(getattr(archive, "dead_lettered", 0), 0)

    async def test_duplicate_id_inside_one_batch_is_one_row(self) -> None:
        archive = await self.archive()
        first = message(f"{BASE_MS}-0", "first")
        await archive.store([first, first])
        self.assertEqual(await self.everything(archive), [first])

    async def test_first_write_of_an_id_wins(self) -> None:
        # a retried batch must never rewrite what is already archived
        archive = await self.archive()
        await archive.store([message(f"{BASE_MS}-0", "original")])
        await archive.store([message(f"{BASE_MS}-0", "retry with other content")])
        self.assertEqual(ids(await self.everything(archive)), [f"{BASE_MS}-0"])
        self.assertEqual((await self.everything(archive))[0].content, "original")

    async def test_batch_larger_than_one_statement_is_stored_whole(self) -> None:
        archive = await self.archive()
        batch = sequence(2_345)
        await archive.store(batch)
        self.assertEqual(await self.everything(archive), batch)

    async def test_failing_batch_leaves_nothing_partial(self) -> None:
        archive = await self.archive()
        self.fail_whole_batches(archive)
        batch = sequence(1_500)
        bad = self.unstorable(f"{BASE_MS + 10_000}-0")
        await self.assertFailure(archive.store(batch + [bad]), ArchiveUnavailable)
        self.assertEqual(await self.everything(archive), [])

    async def test_read_before_none_is_the_newest_page_oldest_first(self) -> None:
        archive = await self.archive()
        batch = sequence(10)
        await archive.store(batch)
        self.assertEqual(await archive.read_before(None, 4), batch[6:])
        self.assertEqual(await archive.read_before(None, 100), batch)

    async def test_read_before_excludes_the_boundary(self) -> None:
        archive = await self.archive()
        batch = sequence(10)
        await archive.store(batch)
        self.assertEqual(await archive.read_before(batch[5].id, 3), batch[2:5])
        self.assertEqual(await archive.read_before(batch[5].id, 100), batch[:5])
        self.assertEqual(await archive.read_before(batch[0].id, 100), [])

    async def test_read_after_excludes_the_boundary(self) -> None:
        archive = await self.archive()
        batch = sequence(10)
        await archive.store(batch)
        self.assertEqual(await archive.read_after(batch[5].id, 3), batch[6:9])
        self.assertEqual(await archive.read_after(batch[5].id, 100), batch[6:])
        self.assertEqual(await archive.read_after(batch[-1].id, 100), [])

    async def test_boundaries_need_not_be_stored_ids(self) -> None:
        archive = await self.archive()
        stored = [message("100-0"), message("300-0")]
        await archive.store(stored)
        self.assertEqual(await archive.read_after("200-7", 10), stored[1:])
        self.assertEqual(await archive.read_before("200-7", 10), stored[:1])
        self.assertEqual(await archive.read_after("0-0", 10), stored)
        self.assertEqual(await archive.read_before("99999999999999-0", 10), stored)

    async def test_order_is_by_id_key_not_by_string(self) -> None:
        archive = await self.archive()
        in_order = [message("9-5"), message("9-10"), message("10-0"), message("100-2"), message("1000-0")]
        await archive.store(list(reversed(in_order)))
        self.assertEqual(await self.everything(archive), in_order)
        self.assertEqual(await archive.read_after("9-5", 2), in_order[1:3])
        self.assertEqual(await archive.read_before("10-0", 10), in_order[:2])
        self.assertEqual(await archive.read_before(None, 2), in_order[3:])

    async def test_paging_back_visits_every_message_once(self) -> None:
        archive = await self.archive()
        batch = sequence(95, per_ms=4)
        await archive.store(batch)
        seen: list[ChatMessage] = []
        before: str | None = None
        while True:
            page = await archive.read_before(before, 10)
            if not page:
                break
            self.assertEqual(page, sorted(page, key=lambda m: id_key(m.id)))
            seen = page + seen
            before = page[0].id
        self.assertEqual(seen, batch)

    async def test_zero_limit_reads_nothing(self) -> None:
        archive = await self.archive()
        await archive.store(sequence(3))
        self.assertEqual(await archive.read_before(None, 0), [])
        self.assertEqual(await archive.read_after("0-0", 0), [])

    async def test_unicode_round_trips_exactly(self) -> None:
        archive = await self.archive()
        # empty chat content exists only as an erased (deleted) message here:
        # SEND refuses it
        contents = [c for c in UNICODE_CONTENTS if c]
        batch = [
            message(f"{BASE_MS}-{i}", content, sender="익명-😀𝕳-12345")
            for i, content in enumerate(contents)
        ]
        await archive.store(batch)
        back = await self.everything(archive)
        self.assertEqual([m.content for m in back], contents)
        self.assertEqual([m.content.encode("utf-8") for m in back], [c.encode("utf-8") for c in contents])
        self.assertEqual(back, batch)
        self.assertEqual(len(back[-1].content), 1000)

    async def test_timestamps_keep_their_milliseconds(self) -> None:
        archive = await self.archive()
        moments = [BASE_MS, BASE_MS + 1, BASE_MS + 999, BASE_MS + 1_000, 0, 253_402_300_799_999]
        batch = [message(f"{BASE_MS}-{i}", created_ms=ms) for i, ms in enumerate(moments)]
        await archive.store(batch)
        back = await self.everything(archive)
        self.assertEqual([m.created_ms for m in back], moments)
        self.assertEqual(back[0].to_dict()["timestamp"], "2024-11-24T06:33:20.000Z")

    async def test_ping_is_true_when_reachable(self) -> None:
        archive = await self.archive()
        self.assertTrue(await archive.ping())


class HeldReads:
    """Makes every read of one ``SqlArchive`` stop in its pool thread, its
    query started and its first row fetched (so whatever locks or snapshot
    the database gives a read are held), until :meth:`release`. Counts the
    reads that got a thread, and the most that had one at once."""

    def __init__(self, archive: Any) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self.entered = 0
        self.inside = 0
        self.peak = 0

        def held(txn: Any, sql: str, args: tuple[Any, ...]) -> list[Any]:
            with self._lock:
                self.entered += 1
                self.inside += 1
                self.peak = max(self.peak, self.inside)
            try:
                txn.execute(sql, args)
                first = txn.fetchone()
                reactor.callFromThread(self._wake)  # type: ignore[attr-defined]
                self._released.wait(HOLD_SECONDS)
                return [] if first is None else [first, *txn.fetchall()]
            finally:
                with self._lock:
                    self.inside -= 1

        archive._query = held

    def _wake(self) -> None:
        ready = [w for w in self._waiters if w[0] <= self.entered]
        self._waiters = [w for w in self._waiters if w[0] > self.entered]
        for _, waiter in ready:
            waiter.callback(None)

    def entered_at_least(self, count: int, timeout: float = 5.0) -> Deferred[None]:
        """Fires once ``count`` reads are (or were) in a pool thread."""
        waiter: Deferred[None] = Deferred()
        self._waiters.append((count, waiter))
        self._wake()
        return waiter.addTimeout(timeout, reactor)

    def release(self) -> None:
        self._released.set()


class SqlArchiveContractMixin(ArchiveContractMixin):
    """What every dialect of ``SqlArchive`` adds to the contract."""

    addCleanup: Callable[..., None]

    async def database_url(self) -> str:
        """The URL of an empty database for this test (called once per test)."""
        raise NotImplementedError

    async def sql_archive(self, readers: int | None = None) -> Any:
        """A started ``SqlArchive`` on :meth:`database_url`, stopped in cleanup."""
        from anonchat.store.sql_archive import SqlArchive

        url = await self.database_url()
        archive = SqlArchive.from_url(url) if readers is None else SqlArchive.from_url(url, readers=readers)
        self.addCleanup(archive.stop)
        await archive.start()
        return archive

    def make_archive(self) -> Awaitable[Any]:
        return self.sql_archive()

    async def every_reader_held(
        self, readers: int, stored: list[ChatMessage]
    ) -> tuple[Any, HeldReads, list[Deferred[list[ChatMessage]]]]:
        """A started archive with ``readers`` readers holding ``stored``, and
        that many reads of everything, each held in a reader's thread."""
        archive = await self.sql_archive(readers=readers)
        await archive.store(stored)
        held = HeldReads(archive)
        self.addCleanup(held.release)  # runs before the archive's stop
        reads = [archive.read_after("0-0", 10) for _ in range(readers)]
        await held.entered_at_least(readers)
        return archive, held, reads

    async def test_store_is_not_delayed_by_reads_holding_every_reader(self) -> None:
        # four readers, at least as many threads as the write pool has (SQLite
        # one, MySQL four): were reads and writes one pool, it would be full
        readers = 4
        first = sequence(3)
        archive, held, reads = await self.every_reader_held(readers, first)
        later = [message(f"{BASE_MS + 100}-0", "stored while every reader is busy")]
        await archive.store(later).addTimeout(5.0, reactor)
        self.assertEqual(held.inside, readers, "a held read finished before it was released")
        held.release()
        # whether a read that began before the store sees it depends on the
        # database's isolation (SQLite :memory: readers read uncommitted)
        pages = await gatherResults(reads)
        self.assertEqual([page[: len(first)] for page in pages], [first] * readers)
        self.assertEqual(await self.everything(archive), first + later)

    async def test_reads_past_the_waiting_bound_fail_at_once_with_archive_busy(self) -> None:
        from anonchat.store.sql_archive import WAITING_READS_PER_READER

        readers = 2
        stored = sequence(5)
        archive, held, running = await self.every_reader_held(readers, stored)
        waiting = [archive.read_before(None, 10) for _ in range(readers * WAITING_READS_PER_READER)]
        refused = [archive.read_after("0-0", 10), archive.read_before(stored[2].id, 10)]
        self.assertEqual([d.called for d in refused], [True, True], "a read past the bound was queued")
        for d in refused:
            failure = self.failureResultOf(d, ArchiveBusy)
            self.assertIsInstance(failure.value, ArchiveUnavailable)
        self.assertFalse(any(d.called for d in running + waiting), "a read within the bound was refused")
        held.release()
        self.assertEqual(await gatherResults(running), [stored] * readers)
        self.assertEqual(await gatherResults(waiting), [stored] * len(waiting))
        self.assertEqual(held.peak, readers, "more reads ran at once than there are readers")
        self.assertEqual(await archive.read_after(stored[2].id, 10), stored[3:])

    def fail_whole_batches(self, archive: Any) -> None:
        # pretend the database never reports data errors, so an unstorable
        # row fails its transaction the way a lost connection would
        import attrs

        archive._dialect = attrs.evolve(archive._dialect, data_errors=(), data_error_codes=frozenset())

    async def query(self, archive: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows = await archive.pool.runQuery(sql, args) if args else await archive.pool.runQuery(sql)
        return [tuple(row) for row in rows]

    async def test_unstorable_row_is_set_aside_and_the_rest_stored(self) -> None:
        archive: Any = await self.archive()
        good = sequence(5)
        bad = self.unstorable(f"{BASE_MS}-99")
        await archive.store(good[:2] + [bad] + good[2:])
        self.assertEqual(await self.everything(archive), good)
        self.assertEqual(archive.dead_lettered, 1)
        rows = await self.query(archive, "SELECT id, raw_json, error FROM chat_messages_dead_letter")
        self.assertEqual(len(rows), 1)
        dead_id, raw_json, error = rows[0]
        self.assertEqual(dead_id, bad.id)
        self.assertIn("\\ud800", raw_json)
        self.assertIn("익명-12345", raw_json)
        self.assertTrue(error)

    async def test_malformed_id_is_set_aside(self) -> None:
        archive: Any = await self.archive()
        good = sequence(2)
        await archive.store([good[0], message("not-an-id"), good[1]])
        self.assertEqual(await self.everything(archive), good)
        self.assertEqual(archive.dead_lettered, 1)
        rows = await self.query(archive, "SELECT id FROM chat_messages_dead_letter")
        self.assertEqual(rows, [("not-an-id",)])

    async def test_retried_unstorable_row_is_one_dead_letter(self) -> None:
        archive: Any = await self.archive()
        batch = [message(f"{BASE_MS}-0"), self.unstorable(f"{BASE_MS}-1")]
        await archive.store(batch)
        await archive.store(batch)
        rows = await self.query(archive, "SELECT COUNT(*) FROM chat_messages_dead_letter")
        self.assertEqual(rows, [(1,)])
        self.assertEqual(ids(await self.everything(archive)), [f"{BASE_MS}-0"])

    async def test_batch_of_only_unstorable_rows_succeeds(self) -> None:
        archive: Any = await self.archive()
        await archive.store([self.unstorable(f"{BASE_MS}-0")])
        self.assertEqual(await self.everything(archive), [])
        self.assertEqual(archive.dead_lettered, 1)

    async def test_schema_version_is_recorded(self) -> None:
        from anonchat.store.sql_archive import SCHEMA_VERSION

        archive: Any = await self.archive()
        self.assertEqual(await self.query(archive, "SELECT MAX(version) FROM schema_version"), [(SCHEMA_VERSION,)])

    async def test_start_again_keeps_rows(self) -> None:
        archive: Any = await self.archive()
        await archive.store(sequence(3))
        await archive.start()
        self.assertEqual(await self.everything(archive), sequence(3))

    async def test_columns_operators_query_directly(self) -> None:
        archive: Any = await self.archive()
        await archive.store([message(f"{BASE_MS}-7", "보여요", created_ms=BASE_MS + 45)])
        rows = await self.query(archive, "SELECT id, id_ms, id_seq, type, sender, content FROM chat_messages")
        self.assertEqual(rows, [(f"{BASE_MS}-7", BASE_MS, 7, "CHAT", "익명-12345", "보여요")])
