"""The SQL moderation store and log: the contracts on SQLite (a file and
``:memory:``) and on a real MariaDB/MySQL (its tables dropped before and after
each test, under the archive tests' lock), plus what only SQL has: state that
survives a restart, the log's table and its time column."""

from __future__ import annotations

import os
import sqlite3

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from anonchat.chat.moderation import BAN, MUTE, LogEntry, Report, Sanction
from anonchat.chat.ports import ArchiveUnavailable, IModerationLog, IModerationStore
from anonchat.store.sql_archive import SqlArchive
from anonchat.store.sql_moderation import SqlModerationLog, SqlModerationStore
from tests.moderation_contract import NOW, ModerationStoreContractMixin
from tests.moderation_log_contract import ModerationLogContractMixin
from tests.test_archive_mysql import prepare_mysql, query_mysql

STORE_TABLES = ("moderation_sanctions", "moderation_reports", "moderation_deleted", "moderation_names",
                "moderation_settings")


async def started_store(test: unittest.TestCase, url: str) -> SqlModerationStore:
    store = SqlModerationStore.from_url(url)
    test.addCleanup(store.stop)
    await store.start()
    return store


async def started_log(test: unittest.TestCase, url: str) -> SqlModerationLog:
    log = SqlModerationLog.from_url(url)
    test.addCleanup(log.stop)
    await log.start()
    return log


def sqlite_url(test: unittest.TestCase) -> str:
    return "sqlite:///" + os.path.abspath(test.mktemp()) + ".sqlite3"


async def fresh_mysql(test: unittest.TestCase) -> str:
    """The test database with none of the moderation tables, before or after ``test``."""
    url = await prepare_mysql(test)

    async def drop() -> None:
        for table in (*STORE_TABLES, "moderation_log"):
            await query_mysql(url, f"DROP TABLE IF EXISTS `{table}`")

    await drop()
    test.addCleanup(lambda: Deferred.fromCoroutine(drop()))
    return url


class SqliteModerationStoreContractTests(ModerationStoreContractMixin, unittest.TestCase):
    def make_store(self) -> Deferred[IModerationStore]:
        return Deferred.fromCoroutine(started_store(self, sqlite_url(self)))


class SqliteMemoryModerationStoreContractTests(ModerationStoreContractMixin, unittest.TestCase):
    def make_store(self) -> Deferred[IModerationStore]:
        return Deferred.fromCoroutine(started_store(self, "sqlite:///:memory:"))


class MysqlModerationStoreContractTests(ModerationStoreContractMixin, unittest.TestCase):
    async def make(self) -> IModerationStore:
        return await started_store(self, await fresh_mysql(self))

    def make_store(self) -> Deferred[IModerationStore]:
        return Deferred.fromCoroutine(self.make())


class SqliteModerationLogContractTests(ModerationLogContractMixin, unittest.TestCase):
    def make_log(self) -> Deferred[IModerationLog]:
        return Deferred.fromCoroutine(started_log(self, sqlite_url(self)))


class MysqlModerationLogContractTests(ModerationLogContractMixin, unittest.TestCase):
    async def make(self) -> IModerationLog:
        return await started_log(self, await fresh_mysql(self))

    def make_log(self) -> Deferred[IModerationLog]:
        return Deferred.fromCoroutine(self.make())


class SqliteModerationStoreTests(unittest.TestCase):
    async def test_everything_survives_a_restart(self) -> None:
        url = sqlite_url(self)
        first = SqlModerationStore.from_url(url)
        await first.start()
        key = await first.client_key()
        ban = await first.add_sanction(Sanction(BAN, "c1", NOW, None, "spam", "익명-10000"))
        await first.set_slow_mode(30)
        await first.add_report(Report("5-0", "c2", "rude", NOW))
        await first.mark_deleted("5-0")
        await first.set_name_client("익명-10000", "c1")
        await first.stop()
        second = await started_store(self, url)
        self.assertEqual(await second.client_key(), key)
        self.assertEqual(await second.sanctions(BAN, NOW), [ban])
        self.assertEqual(await second.slow_mode(), 30)
        self.assertEqual([(s.message_id, s.count) for s in await second.reports()], [("5-0", 1)])
        self.assertFalse(await second.mark_deleted("5-0"))
        self.assertEqual(await second.name_clients(["익명-10000"]), {"익명-10000": "c1"})
        more = await second.add_sanction(Sanction(MUTE, "c3", NOW, None))
        self.assertNotEqual(more.id, ban.id)

    async def test_two_stores_on_one_database_share_state(self) -> None:
        url = sqlite_url(self)
        a, b = await started_store(self, url), await started_store(self, url)
        self.assertEqual(await a.client_key(), await b.client_key())
        mute = await a.add_sanction(Sanction(MUTE, "c1", NOW, NOW + 1000))
        self.assertEqual(await b.sanctions(MUTE, NOW), [mute])
        self.assertTrue(await b.mark_deleted("1-0"))
        self.assertFalse(await a.mark_deleted("1-0"))

    async def test_expired_sanctions_are_deleted_by_the_next_one_added(self) -> None:
        url = sqlite_url(self)
        store = await started_store(self, url)
        for i in range(3):
            await store.add_sanction(Sanction(MUTE, f"c{i}", NOW, NOW + 1000))
        forever = await store.add_sanction(Sanction(MUTE, "cf", NOW, None))
        self.assertEqual(await store.sanctions(MUTE, NOW + 1000), [forever])
        later = await store.add_sanction(Sanction(MUTE, "c9", NOW + 1000, None))
        with sqlite3.connect(url[len("sqlite:///"):]) as db:
            rows = db.execute("SELECT id FROM moderation_sanctions ORDER BY id").fetchall()
        db.close()
        self.assertEqual(rows, [(int(forever.id),), (int(later.id),)])

    async def test_many_ids_at_once(self) -> None:
        store = await started_store(self, "sqlite:///:memory:")
        ids = [f"{i}-0" for i in range(2500)]
        for message_id in ids[::100]:
            await store.mark_deleted(message_id)
        self.assertEqual(await store.deleted_among(ids), set(ids[::100]))
        names = [f"익명-{i}" for i in range(2500)]
        await store.set_name_client(names[-1], "c9")
        self.assertEqual(await store.name_clients(names), {names[-1]: "c9"})

    async def test_an_unknown_kind_is_refused_and_has_nothing(self) -> None:
        store = await started_store(self, "sqlite:///:memory:")
        await self.assertFailure(store.add_sanction(Sanction("kick", "c1", NOW, None)), ValueError)
        self.assertEqual(await store.sanctions("kick", NOW), [])
        self.assertIsNone(await store.lift_sanction("kick", "1"))

    async def test_calls_after_stop_are_unavailable(self) -> None:
        store = SqlModerationStore.from_url("sqlite:///:memory:")
        await store.start()
        await store.stop()
        await self.assertFailure(store.slow_mode(), ArchiveUnavailable)

    async def test_unopenable_file_fails_start_as_unavailable(self) -> None:
        store = SqlModerationStore.from_url("sqlite:///" + os.path.abspath(self.mktemp()) + "/missing/x.sqlite3")
        self.addCleanup(store.stop)
        await self.assertFailure(store.start(), ArchiveUnavailable)


class SqliteModerationLogTests(unittest.TestCase):
    async def test_created_at_is_iso_utc_text_with_milliseconds(self) -> None:
        url = sqlite_url(self)
        log = await started_log(self, url)
        await log.record(LogEntry("ban", "c1", "", NOW + 7))
        await log.stop()
        with sqlite3.connect(url[len("sqlite:///"):]) as db:
            rows = db.execute("SELECT created_at, typeof(id) FROM moderation_log").fetchall()
        db.close()
        self.assertEqual(rows, [("2025-11-24T16:00:00.007Z", "integer")])

    async def test_the_archive_creates_the_same_table(self) -> None:
        url = sqlite_url(self)
        archive = SqlArchive.from_url(url)
        await archive.start()
        await archive.stop()
        log = await started_log(self, url)
        recorded = await log.record(LogEntry("mute", "c1", "why", NOW))
        self.assertEqual(await log.newest(1), [recorded])

    async def test_record_after_stop_is_unavailable(self) -> None:
        log = SqlModerationLog.from_url("sqlite:///:memory:")
        await log.start()
        await log.stop()
        await self.assertFailure(log.record(LogEntry("ban", "c1", "", NOW)), ArchiveUnavailable)


class MysqlModerationTests(unittest.TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.url = await fresh_mysql(self)

    async def test_tables_are_innodb_utf8mb4(self) -> None:
        await started_store(self, self.url)
        await started_log(self, self.url)
        rows = await query_mysql(
            self.url,
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'moderation%%' ORDER BY TABLE_NAME",
        )
        self.assertEqual(rows, [(t, "InnoDB", "utf8mb4_bin") for t in sorted((*STORE_TABLES, "moderation_log"))])

    async def test_log_created_at_is_datetime_with_milliseconds(self) -> None:
        log = await started_log(self, self.url)
        await log.record(LogEntry("ban", "익명-😀", "", NOW + 7))
        rows = await query_mysql(self.url, "SELECT CAST(created_at AS CHAR), HEX(target) FROM moderation_log")
        self.assertEqual(rows, [("2025-11-24 16:00:00.007", "익명-😀".encode("utf-8").hex().upper())])

    async def test_unicode_round_trips_byte_for_byte(self) -> None:
        store = await started_store(self, self.url)
        ban = await store.add_sanction(Sanction(BAN, "c1", NOW, None, "안녕 👋 𝕳", "익명-😀"))
        self.assertEqual(await store.sanctions(BAN, NOW), [ban])
        rows = await query_mysql(self.url, "SELECT HEX(reason) FROM moderation_sanctions")
        self.assertEqual(rows, [("안녕 👋 𝕳".encode("utf-8").hex().upper(),)])

    async def test_two_stores_share_state(self) -> None:
        a, b = await started_store(self, self.url), await started_store(self, self.url)
        self.assertEqual(await a.client_key(), await b.client_key())
        self.assertTrue(await a.add_report(Report("1-0", "c1", "", NOW)))
        self.assertFalse(await b.add_report(Report("1-0", "c1", "", NOW)))
        await b.set_slow_mode(9)
        self.assertEqual(await a.slow_mode(), 9)

    async def test_an_unreachable_server_fails_start_as_unavailable(self) -> None:
        store = SqlModerationStore.from_url("mysql://root:@127.0.0.1:1/x?connect_timeout=1")
        self.addCleanup(store.stop)
        await self.assertFailure(store.start(), ArchiveUnavailable)
        log = SqlModerationLog.from_url("mysql://root:@127.0.0.1:1/x?connect_timeout=1")
        self.addCleanup(log.stop)
        await self.assertFailure(log.start(), ArchiveUnavailable)
