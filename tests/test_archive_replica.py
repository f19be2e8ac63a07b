"""History reads through a read replica, on a private MariaDB primary and
GTID replica (tests/privatemariadb.py), never the shared server.

Which server answered is proved with a row written on the replica alone
(``REPLICA_ONLY``): a read that holds it came from the replica, one that
holds the newest rows without it came from the primary. Slow: the pair
starts once per run (a few seconds), then each test has a fresh database.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs
from twisted.trial import unittest

from anonchat.chat.message import ChatMessage
from anonchat.store.sql_archive import SqlArchive
from anonchat.store.sql_replica import RECHECK_SECONDS
from tests.archive_contract import BASE_MS, ids, message, sequence
from tests.privatemariadb import MariaDBPair, shared_pair
from tests.serverprocess import ServerProcess
from tests.test_cluster_faults import until
from tests.test_history_resume import Http, Resumer, caught_up, first_chatter, flatten, stream_of
from tests.test_history_resume import ids as message_ids
from tests.test_history_resume import walk as walk_over_rest

#: older than every stored message, and only ever on the replica
REPLICA_ONLY = message(f"{BASE_MS}-1", "on the replica alone")
#: stored messages are ``sequence`` from here on, all newer than REPLICA_ONLY
FIRST = 10


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def later_sequence(count: int, skip: int = 0) -> list[ChatMessage]:
    """``count`` messages after REPLICA_ONLY (``skip`` of them already made)."""
    return sequence(FIRST + skip + count)[FIRST + skip:]


async def walk(archive: SqlArchive, limit: int) -> list[ChatMessage]:
    """Every message, by read_before pages of ``limit`` from the newest."""
    pages: list[list[ChatMessage]] = []
    before: str | None = None
    while True:
        page = await archive.read_before(before, limit)
        if page:
            pages.append(page)
        if len(page) < limit:
            return [m for page in reversed(pages) for m in page]
        before = page[0].id


class ReplicaArchiveTests(unittest.TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        self.pair: MariaDBPair = await shared_pair(self)
        database = await threads.deferToThread(self.pair.fresh_database)
        self.primary_url = self.pair.primary.url(database)
        self.replica_url = self.pair.replica.url(database, connect_timeout="1", read_timeout="2")
        self.database = database
        self.archive = SqlArchive.from_url(self.primary_url, replica=self.replica_url)
        self.addCleanup(self.archive.stop)
        await self.archive.start()
        self.stored = later_sequence(12)
        await self.archive.store(self.stored)
        await self.caught_up()
        await self.on_replica_alone(REPLICA_ONLY)

    async def caught_up(self) -> None:
        await threads.deferToThread(self.pair.caught_up)

    async def on_replica_alone(self, extra: ChatMessage) -> None:
        (row,) = await self.archive.read_pool.runInteraction(lambda txn: [self.archive._row(extra)])
        await threads.deferToThread(
            self.pair.replica.query,
            "INSERT INTO chat_messages (id, id_ms, id_seq, type, sender, content, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)", *row, database=self.database)

    async def replica_query(self, sql: str) -> list[tuple[Any, ...]]:
        return await threads.deferToThread(self.pair.replica.query, sql)

    async def test_a_caught_up_replica_serves_pages_and_replays(self) -> None:
        with_marker = [REPLICA_ONLY, *self.stored]
        self.assertEqual(ids(await self.archive.read_before(None, 100)), ids(with_marker))
        self.assertEqual(ids(await self.archive.read_after("0-0", 100)), ids(with_marker))
        self.assertEqual(ids(await walk(self.archive, 5)), ids(with_marker))

    async def test_a_lagging_replica_sends_reads_to_the_primary_until_it_catches_up(self) -> None:
        await self.replica_query("STOP SLAVE SQL_THREAD")
        newer = later_sequence(7, skip=12)
        await self.archive.store(newer)
        with capturedLogs() as events:
            for limit in (4, 5, 100):
                self.assertEqual(ids(await walk(self.archive, limit)), ids(self.stored + newer), f"limit {limit}")
            self.assertEqual(ids(await self.archive.read_after(self.stored[3].id, 100)),
                             ids(self.stored[4:] + newer))
        self.assertEqual(len([e for e in events if e.get("reason") == "behind"]), 1, "one line per episode")
        await self.replica_query("START SLAVE SQL_THREAD")
        await self.caught_up()
        await sleep(RECHECK_SECONDS)
        self.assertIn(REPLICA_ONLY.id, ids(await self.archive.read_before(None, 100)))

    async def test_a_replica_whose_threads_stopped_still_serves_what_it_has(self) -> None:
        await self.replica_query("STOP SLAVE")
        self.assertIn(REPLICA_ONLY.id, ids(await self.archive.read_before(None, 100)))
        await self.archive.store(later_sequence(3, skip=12))
        page = await self.archive.read_before(None, 100)
        self.assertEqual(ids(page), ids(self.stored + later_sequence(3, skip=12)))

    async def test_a_killed_replica_sends_reads_to_the_primary_without_an_error(self) -> None:
        self.assertIn(REPLICA_ONLY.id, ids(await self.archive.read_before(None, 100)))
        await threads.deferToThread(self.pair.replica.kill)
        newer = later_sequence(4, skip=12)
        await self.archive.store(newer)
        with capturedLogs() as events:
            for limit in (3, 100):
                self.assertEqual(ids(await walk(self.archive, limit)), ids(self.stored + newer))
                await sleep(RECHECK_SECONDS / 2)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual([e.get("reason") for e in warnings], ["failed"], "one warning for the outage")
        await self.pair.healthy()
        await sleep(RECHECK_SECONDS)
        self.assertIn(REPLICA_ONLY.id, ids(await self.archive.read_before(None, 100)))

    async def test_a_hung_replica_costs_its_read_timeout_once_then_is_skipped(self) -> None:
        self.pair.replica.pause()
        self.addCleanup(self.pair.replica.resume)
        started = reactor.seconds()
        self.assertEqual(ids(await self.archive.read_before(None, 100)), ids(self.stored))
        first = reactor.seconds() - started
        started = reactor.seconds()
        self.assertEqual(ids(await self.archive.read_before(None, 100)), ids(self.stored))
        second = reactor.seconds() - started
        self.assertLess(first, 5.0)
        self.assertLess(second, 0.5, "the replica is skipped for a while after it timed out")


class ReplicaNodeTests(unittest.TestCase):
    """A real node with ``--database`` on the private primary and
    ``--database-replica`` on its replica: REST history walks and a replay
    before, during and after a replica outage."""

    timeout = 120
    #: the row only the replica has: the oldest of all, so every full walk ends on it
    MARKER = ("1-0", 1, 0, "CHAT", "익명-00000", "on the replica alone", "1970-01-01 00:00:00.001")

    async def archived(self, count: int) -> None:
        async def done() -> bool:
            rows = await threads.deferToThread(self.pair.primary.query, "SELECT COUNT(*) FROM chat_messages",
                                               database=self.database)
            return bool(rows[0][0] == count)

        await until(done, 20, f"{count} messages archived on the primary", step=0.1)

    async def walk(self, http: Http, limit: int) -> list[str]:
        return message_ids(flatten(self, await walk_over_rest(http, limit), limit))

    async def test_history_walks_and_replays_have_no_hole_while_the_replica_is_down(self) -> None:
        self.pair = await shared_pair(self)
        self.database = await threads.deferToThread(self.pair.fresh_database)
        server = ServerProcess(
            self, "--database", self.pair.primary.url(self.database),
            "--database-replica", self.pair.replica.url(self.database, connect_timeout="1", read_timeout="2"),
            "--redis-retain", "5", "--flush-interval", "0.1", "--api-rate", "0", "--rate-limit", "0",
            "--frame-rate", "0", "--max-replay", "10000", "--rejoin-grace", "0", name="replica-node")
        await server.start()
        http, made, sender, join = await first_chatter(self, server, "s")
        for _ in range(40):
            sender.send()
        await caught_up(sender, sender)
        await self.archived(41)
        await threads.deferToThread(self.pair.caught_up)
        await threads.deferToThread(
            self.pair.replica.query, "INSERT INTO chat_messages (id, id_ms, id_seq, type, sender, content, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)", *self.MARKER, database=self.database)
        marker = self.MARKER[0]
        self.assertEqual(await self.walk(http, 7), [marker, *message_ids(stream_of(sender, join))],
                         "a caught-up replica serves the walk")

        await threads.deferToThread(self.pair.replica.kill)
        for _ in range(15):
            sender.send()
        await caught_up(sender, sender)
        await self.archived(56)
        everything = message_ids(stream_of(sender, join))
        for limit in (7, 50):
            self.assertEqual(await self.walk(http, limit), everything, f"limit {limit} with the replica down")
        resumer = Resumer(server, "r")
        made.append(resumer)
        await resumer.join(since=join["id"])
        await until(lambda: len(resumer.messages()) >= 55, 10, "the replay of every CHAT")
        self.assertEqual(message_ids(resumer.messages()), everything[1:], "the replay: every CHAT after the JOIN")

        await self.pair.healthy()
        await sleep(RECHECK_SECONDS)
        everything = message_ids(stream_of(sender, join))  # now with the resumer's JOIN
        await self.archived(len(everything))
        self.assertEqual(await self.walk(http, 7), [marker, *everything], "the replica serves again")
        log = server.read_log()
        self.assertEqual(log.count("History reads go to the primary"), 1, log[-3000:])
        self.assertEqual(log.count("The database replica serves history reads again"), 1)
        self.assertNotIn("안녕하세요", log)
