"""The SQL archive on SQLite: the contract on a temporary file, plus URLs."""

from __future__ import annotations

import os
import sqlite3

from twisted.trial import unittest

from anonchat.chat.ports import ArchiveUnavailable
from anonchat.store.sql_archive import SqlArchive, connection_settings
from tests.archive_contract import BASE_MS, SqlArchiveContractMixin, message, sequence


class SqliteArchiveContractTests(SqlArchiveContractMixin, unittest.TestCase):
    async def database_url(self) -> str:
        return "sqlite:///" + os.path.abspath(self.mktemp()) + ".sqlite3"


class SqliteMemoryArchiveContractTests(SqlArchiveContractMixin, unittest.TestCase):
    async def database_url(self) -> str:
        return "sqlite:///:memory:"


class SqliteArchiveTests(unittest.TestCase):
    async def test_rows_survive_a_restart_of_the_archive(self) -> None:
        path = os.path.abspath(self.mktemp())
        first = SqlArchive.from_url("sqlite:///" + path)
        await first.start()
        await first.store(sequence(3))
        await first.stop()
        second = SqlArchive.from_url("sqlite:///" + path)
        self.addCleanup(second.stop)
        await second.start()
        self.assertEqual(await second.read_after("0-0", 10), sequence(3))

    async def test_created_at_is_iso_utc_text_with_milliseconds(self) -> None:
        path = os.path.abspath(self.mktemp())
        archive = SqlArchive.from_url("sqlite:///" + path)
        await archive.start()
        await archive.store([message(f"{BASE_MS}-0", created_ms=BASE_MS + 7)])
        await archive.stop()
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT created_at, typeof(id_ms) FROM chat_messages").fetchall()
        db.close()
        self.assertEqual(rows, [("2024-11-24T06:33:20.007Z", "integer")])

    async def test_unopenable_file_fails_start_as_unavailable(self) -> None:
        archive = SqlArchive.from_url("sqlite:///" + os.path.abspath(self.mktemp()) + "/missing/dir/x.sqlite3")
        self.addCleanup(archive.stop)
        await self.assertFailure(archive.start(), ArchiveUnavailable)
        self.assertFalse(await archive.ping())

    async def test_store_after_stop_is_unavailable(self) -> None:
        archive = SqlArchive.from_url("sqlite:///:memory:")
        await archive.start()
        await archive.stop()
        await self.assertFailure(archive.store(sequence(1)), ArchiveUnavailable)

    async def test_store_creates_the_schema_when_start_could_not(self) -> None:
        directory = os.path.abspath(self.mktemp())
        archive = SqlArchive.from_url("sqlite:///" + directory + "/x.sqlite3")
        self.addCleanup(archive.stop)
        await self.assertFailure(archive.start(), ArchiveUnavailable)
        os.makedirs(directory)
        await archive.store(sequence(2))
        self.assertEqual(await archive.read_after("0-0", 10), sequence(2))

    async def test_malformed_boundary_is_a_value_error(self) -> None:
        archive = SqlArchive.from_url("sqlite:///:memory:")
        self.addCleanup(archive.stop)
        await archive.start()
        await self.assertFailure(archive.read_before("nope", 10), ValueError)
        await self.assertFailure(archive.read_after("1-x", 10), ValueError)

    async def test_newer_schema_refuses_to_start(self) -> None:
        path = os.path.abspath(self.mktemp())
        archive = SqlArchive.from_url("sqlite:///" + path)
        await archive.start()
        await archive.pool.runOperation("INSERT INTO schema_version (version, applied_at) VALUES (999, 'x')")
        await archive.stop()
        again = SqlArchive.from_url("sqlite:///" + path)
        self.addCleanup(again.stop)
        try:
            await again.start()
        except ArchiveUnavailable as refused:
            self.assertIn("999", str(refused))
        else:
            self.fail("started on a schema newer than the code")


class ConnectionSettingsTests(unittest.TestCase):
    def test_sqlite_relative_path(self) -> None:
        dialect, args, kwargs = connection_settings("sqlite:///anonchat.sqlite3")
        self.assertEqual((dialect.name, args[0]), ("sqlite", "anonchat.sqlite3"))
        self.assertEqual((kwargs["cp_min"], kwargs["cp_max"]), (1, 1))

    def test_sqlite_absolute_path(self) -> None:
        _, args, _ = connection_settings("sqlite:////var/lib/anonchat/chat.sqlite3")
        self.assertEqual(args[0], "/var/lib/anonchat/chat.sqlite3")

    def test_sqlite_memory(self) -> None:
        _, args, kwargs = connection_settings("sqlite:///:memory:")
        self.assertEqual(args[0], ":memory:")
        self.assertFalse(kwargs["check_same_thread"])

    def test_mysql_url(self) -> None:
        dialect, args, kwargs = connection_settings("mysql://chat%40app:p%3Ass@db.example:3307/anon")
        self.assertEqual(dialect.name, "mysql")
        self.assertEqual(args, ())
        for key, value in {
            "host": "db.example",
            "port": 3307,
            "user": "chat@app",
            "password": "p:ss",
            "database": "anon",
            "charset": "utf8mb4",
            "cp_reconnect": True,
        }.items():
            self.assertEqual(kwargs[key], value)
        self.assertGreater(kwargs["connect_timeout"], 0)
        self.assertGreater(kwargs["read_timeout"], 0)

    def test_mysql_defaults_and_timeouts_from_the_query(self) -> None:
        _, _, kwargs = connection_settings("mysql://root@localhost/anon?connect_timeout=2&read_timeout=3.5")
        self.assertEqual((kwargs["port"], kwargs["password"]), (3306, ""))
        self.assertEqual((kwargs["connect_timeout"], kwargs["read_timeout"]), (2.0, 3.5))

    def test_unknown_scheme_or_missing_parts_are_refused(self) -> None:
        for url in ["postgres://x/y", "sqlite://", "sqlite:///", "mysql://host", "mysql://h/db?nope=1"]:
            self.assertRaises(ValueError, connection_settings, url)
