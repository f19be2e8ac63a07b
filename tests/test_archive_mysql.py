"""The SQL archive on a real MySQL/MariaDB: the contract, utf8mb4 and dead letters.

The database (``anonchat_test`` by default) is created when missing and this
archive's tables are dropped before every test, through a plain PyMySQL
connection run in a thread so the reactor never blocks. That connection holds
a server-wide named lock until the test ends, so two test runs at once (two
developers, or trial -j) take turns instead of dropping each other's tables.
"""

from __future__ import annotations

import os
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from twisted.internet import threads
from twisted.trial import unittest

from anonchat.store.sql_archive import SqlArchive
from tests.archive_contract import BASE_MS, SqlArchiveContractMixin, message, sequence
from tests.services import require_mysql

TABLES = ("chat_messages", "chat_messages_dead_letter", "moderation_log", "schema_version")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_SECONDS = 120


def _admin_connect(url: str, database: bool = True) -> Any:
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") if database else None,
        charset="utf8mb4",
        connect_timeout=5,
        read_timeout=LOCK_SECONDS + 10,  # GET_LOCK may wait that long
        autocommit=True,
    )


def _lock_and_prepare(url: str) -> Any:
    name = urlsplit(url).path.lstrip("/")
    db = _admin_connect(url, database=False)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, %s)", (f"{name}.archive_tests", LOCK_SECONDS))
            if cursor.fetchone()[0] != 1:
                raise AssertionError(f"another test run held the {name} archive tables for {LOCK_SECONDS}s")
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cursor.execute(f"USE `{name}`")
            for table in TABLES:
                cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    except BaseException:
        db.close()
        raise
    return db


def _release(db: Any) -> None:
    db.close()  # ends the session, which releases its named lock


def _query(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with _admin_connect(url) as db, db.cursor() as cursor:
        cursor.execute(sql, args)
        return [tuple(row) for row in cursor.fetchall()]


async def prepare_mysql(test: unittest.TestCase) -> str:
    """The test database URL, with the database present and our tables gone,
    and ours alone until ``test`` has cleaned up."""
    url = require_mysql()
    db = await threads.deferToThread(_lock_and_prepare, url)
    test.addCleanup(threads.deferToThread, _release, db)
    return url


async def query_mysql(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one query on a fresh connection of its own, in a thread."""
    return await threads.deferToThread(_query, url, sql, args)


class MysqlArchiveContractTests(SqlArchiveContractMixin, unittest.TestCase):
    async def database_url(self) -> str:
        return await prepare_mysql(self)


class MysqlArchiveTests(unittest.TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.url = await prepare_mysql(self)
        self.archive = SqlArchive.from_url(self.url)
        self.addCleanup(self.archive.stop)
        await self.archive.start()

    async def test_tables_are_innodb_utf8mb4_bin(self) -> None:
        rows = await query_mysql(
            self.url,
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
        )
        self.assertEqual(rows, [(table, "InnoDB", "utf8mb4_bin") for table in sorted(TABLES)])
        columns = dict(
            await query_mysql(
                self.url,
                "SELECT COLUMN_NAME, CONCAT(COLUMN_TYPE, ' ', COALESCE(CHARACTER_SET_NAME, '-'))"
                " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'chat_messages'",
            )
        )
        self.assertEqual(columns["content"], "mediumtext utf8mb4")
        self.assertEqual(columns["created_at"], "datetime(3) -")
        self.assertEqual(columns["id_ms"], "bigint(20) -")
        self.assertEqual(columns["sender"].split()[-1], "utf8mb4")

    async def test_pool_connections_speak_utf8mb4(self) -> None:
        rows = await self.archive.pool.runQuery(
            "SELECT @@character_set_client, @@character_set_connection, @@character_set_results"
        )
        self.assertEqual(tuple(rows[0]), ("utf8mb4", "utf8mb4", "utf8mb4"))

    async def test_stored_bytes_are_the_utf8_encoding(self) -> None:
        content = "안녕 👋 𝕳 \U0010fffd \u0000 끝"
        await self.archive.store([message(f"{BASE_MS}-0", content, sender="익명-😀")])
        rows = await query_mysql(self.url, "SELECT HEX(content), HEX(sender), CAST(content AS BINARY) FROM chat_messages")
        self.assertEqual(rows[0][0], content.encode("utf-8").hex().upper())
        self.assertEqual(rows[0][1], "익명-😀".encode("utf-8").hex().upper())
        self.assertEqual(bytes(rows[0][2]), content.encode("utf-8"))

    async def test_created_at_is_datetime_with_milliseconds(self) -> None:
        await self.archive.store([message(f"{BASE_MS}-0", created_ms=BASE_MS + 7)])
        rows = await query_mysql(self.url, "SELECT CAST(created_at AS CHAR) FROM chat_messages")
        self.assertEqual(rows, [("2024-11-24 06:33:20.007",)])

    async def test_rows_the_database_rejects_are_set_aside(self) -> None:
        good = sequence(4)
        too_long_sender = message(f"{BASE_MS}-50", "body", sender="x" * 65)
        year_10000 = message(f"{BASE_MS}-51", created_ms=253_402_300_800_000)
        batch = [good[0], too_long_sender, good[1], good[2], year_10000, good[3]]
        await self.archive.store(batch)
        self.assertEqual(await self.archive.read_after("0-0", 100), good)
        self.assertEqual(self.archive.dead_lettered, 2)
        dead = await query_mysql(self.url, "SELECT id, error FROM chat_messages_dead_letter ORDER BY id")
        self.assertEqual([row[0] for row in dead], [too_long_sender.id, year_10000.id])
        self.assertIn("1406", dead[0][1])
        self.assertEqual(await query_mysql(self.url, "SELECT COUNT(*) FROM chat_messages"), [(4,)])

    async def test_dead_letter_log_line_never_carries_the_body(self) -> None:
        from twisted.logger import ILogObserver, globalLogPublisher

        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        secret = "비밀-secret-body"
        await self.archive.store([message(f"{BASE_MS}-0", secret, sender="y" * 80)])
        mine = [e for e in events if e.get("log_namespace", "").startswith("anonchat.store")]
        self.assertTrue(mine)
        from twisted.logger import formatEvent

        for event in mine:
            self.assertNotIn(secret, formatEvent(event))
            self.assertNotIn(secret, repr(event))

    async def test_ping_is_false_when_the_server_is_gone(self) -> None:
        archive = SqlArchive.from_url("mysql://root:@127.0.0.1:1/anonchat_test?connect_timeout=1")
        self.addCleanup(archive.stop)
        self.assertFalse(await archive.ping())


class SchemaFileTests(unittest.TestCase):
    def test_etc_schema_is_the_packaged_schema(self) -> None:
        with open(os.path.join(ROOT, "etc", "schema-mysql.sql"), encoding="utf-8") as etc:
            with open(os.path.join(ROOT, "anonchat", "sql", "schema-mysql.sql"), encoding="utf-8") as packaged:
                self.assertEqual(etc.read(), packaged.read())
