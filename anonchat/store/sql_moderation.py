"""Moderation in the SQL database (SQLite or MySQL over adbapi): the store the
embedded defaults use, so bans and deleted ids survive a node restart, and
the ``moderation_log`` audit table whichever store holds the state.

Each has a small pool of its own (one connection for SQLite, two for MySQL)
so moderation never waits behind a flush, and fails with ArchiveUnavailable,
as the archive does, when the database cannot answer. The store's tables are
in ``anonchat/sql/moderation-<dialect>.sql``; ``moderation_log`` is in the
archive's schema files (operators create it with the archive's tables).
Unlike Redis, deleted ids are kept for good: the archive keeps the messages.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any, Callable, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat.chat.moderation import KINDS, LogEntry, Report, ReportSummary, Sanction
from anonchat.chat.ports import ArchiveUnavailable, IModerationLog, IModerationStore
from anonchat.store.sql_archive import _describe, _QuietConnection, connection_settings
from anonchat.store.sql_dialect import SqlDialect, split_statements

#: most ids in one ``IN (...)``: far under SQLite's bound-parameter limit
IDS_PER_QUERY = 500
SANCTION_COLUMNS = "id, client, name, reason, created_at, expires_at"

Row = tuple[Any, ...]


class SqlDatabase:
    """A small adbapi pool of its own and the interactions run on it: each in
    a pool thread, in one transaction; any failure becomes ArchiveUnavailable;
    ``close`` waits for those running, then closes the pool."""

    def __init__(self, url: str, reactor: Any = None, max_connections: int = 2) -> None:
        dialect, args, kwargs = connection_settings(url)
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        kwargs["cp_max"] = min(kwargs["cp_max"], max_connections)
        self.dialect: SqlDialect = dialect
        self.clock = reactor
        self.pool = adbapi.ConnectionPool(dialect.dbapi_name, *args, cp_reactor=reactor, **kwargs)
        self.pool.connectionFactory = _QuietConnection
        self._running: set[Deferred[Any]] = set()
        self._closed = False

    def run(self, interaction: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._closed:
            return Deferred.fromCoroutine(self._refuse())
        running: Deferred[Any] = self.pool.runInteraction(interaction, *args)
        self._running.add(running)
        running.addBoth(self._done, running)
        return running.addErrback(self._unavailable)

    async def _refuse(self) -> None:
        raise ArchiveUnavailable("the moderation database is closed")

    def _done(self, result: Any, running: Deferred[Any]) -> Any:
        self._running.discard(running)
        return result

    def _unavailable(self, failure: Failure) -> None:
        if failure.check(ArchiveUnavailable, ValueError):
            failure.raiseException()
        raise ArchiveUnavailable(_describe(failure.value, self.dialect)) from failure.value

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while self._running:
            await DeferredList(list(self._running), consumeErrors=True)
        self.pool.close()

    def sql(self, text: str) -> str:
        return self.dialect.params(text)

    def insert_new(self, table: str, columns: str) -> str:
        """An ``INSERT`` of one row that does nothing (rowcount 0) when its
        key is already there; ``table`` needs an ``id`` column for MySQL."""
        d = self.dialect
        marks = ", ".join("?" for _ in columns.split(","))
        return d.params(f"{d.insert_ignore} {table} ({columns}) VALUES ({marks}){d.on_duplicate}")

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)


def _execute_all(txn: adbapi.Transaction, statements: Sequence[str]) -> None:
    for statement in statements:
        txn.execute(statement)


def _chunks(values: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(values))
    return [unique[i : i + IDS_PER_QUERY] for i in range(0, len(unique), IDS_PER_QUERY)]


class _OnDatabase:
    """What both SQL ports share: built from a URL, stopped by closing the pool."""

    max_connections = 2

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    @classmethod
    def from_url(cls: type[_Port], url: str, reactor: Any = None) -> _Port:
        return cls(SqlDatabase(url, reactor, cls.max_connections))

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._db.close())


_Port = TypeVar("_Port", bound=_OnDatabase)


@implementer(IModerationStore)
class SqlModerationStore(_OnDatabase):
    """Sanctions of an unknown kind cannot be added, and there are none to list or lift."""

    def start(self) -> Deferred[None]:
        name = self._db.dialect.name
        text = resources.files("anonchat").joinpath("sql", f"moderation-{name}.sql").read_text(encoding="utf-8")
        return self._db.run(_execute_all, split_statements(text))

    def _query(self, sql: str, *args: Any) -> Deferred[list[Row]]:
        def query(txn: adbapi.Transaction) -> list[Row]:
            txn.execute(self._db.sql(sql), args)
            return list(txn.fetchall())

        return self._db.run(query)

    # -- the client key and slow mode -------------------------------------

    def _setting(self, txn: adbapi.Transaction, name: str, initial: str, replace: bool) -> str:
        """The setting ``name``: made ``initial`` if missing (or set to it
        when ``replace``), then read back."""
        txn.execute(self._db.insert_new("moderation_settings", "id, value"), (name, initial))
        if replace:
            txn.execute(self._db.sql("UPDATE moderation_settings SET value = ? WHERE id = ?"), (initial, name))
        txn.execute(self._db.sql("SELECT value FROM moderation_settings WHERE id = ?"), (name,))
        return str(txn.fetchone()[0])

    def client_key(self) -> Deferred[bytes]:
        made = self._db.run(self._setting, "client_key", secrets.token_hex(32), False)
        return made.addCallback(bytes.fromhex)

    def set_slow_mode(self, seconds: int) -> Deferred[None]:
        if seconds < 0:
            return Deferred.fromCoroutine(self._invalid("slow mode is 0 (off) or a number of seconds"))
        return self._db.run(self._setting, "slow_mode", str(int(seconds)), True).addCallback(lambda _: None)

    async def _invalid(self, why: str) -> Any:
        raise ValueError(why)

    def slow_mode(self) -> Deferred[int]:
        read = self._query("SELECT value FROM moderation_settings WHERE id = ?", "slow_mode")
        return read.addCallback(lambda rows: int(rows[0][0]) if rows else 0)

    # -- sanctions --------------------------------------------------------

    def _prune(self, txn: adbapi.Transaction, kind: str, now_ms: int) -> None:
        """Expired rows go when a sanction of their kind is added, so that
        listing stays a read (on SQLite a write locks the archive's file)."""
        txn.execute(self._db.sql("DELETE FROM moderation_sanctions WHERE kind = ? AND expires_at <= ?"),
                    (kind, self._db.dialect.to_db_time(now_ms)))

    def _sanction(self, kind: str, row: Row) -> Sanction:
        sanction_id, client, name, reason, created_at, expires_at = row
        from_db = self._db.dialect.from_db_time
        return Sanction(kind, client, from_db(created_at), None if expires_at is None else from_db(expires_at),
                        reason, name, str(sanction_id))

    def add_sanction(self, sanction: Sanction) -> Deferred[Sanction]:
        to_db = self._db.dialect.to_db_time

        def add(txn: adbapi.Transaction) -> Sanction:
            if sanction.kind not in KINDS:
                raise ValueError(f"a sanction kind is one of {', '.join(KINDS)}")
            self._prune(txn, sanction.kind, sanction.created_ms)
            txn.execute(
                self._db.sql("INSERT INTO moderation_sanctions (kind, client, name, reason, created_at, expires_at)"
                             " VALUES (?, ?, ?, ?, ?, ?)"),
                (sanction.kind, sanction.client, sanction.name, sanction.reason, to_db(sanction.created_ms),
                 None if sanction.expires_ms is None else to_db(sanction.expires_ms)),
            )
            return Sanction(sanction.kind, sanction.client, sanction.created_ms, sanction.expires_ms,
                            sanction.reason, sanction.name, str(txn.lastrowid))

        return self._db.run(add)

    def sanctions(self, kind: str, now_ms: int) -> Deferred[list[Sanction]]:
        listed = self._query(
            f"SELECT {SANCTION_COLUMNS} FROM moderation_sanctions WHERE kind = ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id DESC",
            kind, self._db.dialect.to_db_time(now_ms),
        )
        return listed.addCallback(lambda rows: [self._sanction(kind, row) for row in rows])

    def lift_sanction(self, kind: str, sanction_id: str) -> Deferred[Sanction | None]:
        def lift(txn: adbapi.Transaction) -> Sanction | None:
            if not sanction_id.isdigit():
                return None
            where = "WHERE kind = ? AND id = ?"
            txn.execute(self._db.sql(f"SELECT {SANCTION_COLUMNS} FROM moderation_sanctions {where}"),
                        (kind, int(sanction_id)))
            row = txn.fetchone()
            if row is None:
                return None
            txn.execute(self._db.sql(f"DELETE FROM moderation_sanctions {where}"), (kind, int(sanction_id)))
            return self._sanction(kind, row)

        return self._db.run(lift)

    # -- reports ----------------------------------------------------------

    def add_report(self, report: Report) -> Deferred[bool]:
        insert = self._db.insert_new("moderation_reports", "message_id, reporter, reason, created_at")

        def add(txn: adbapi.Transaction) -> bool:
            txn.execute(insert, (report.message_id, report.reporter, report.reason,
                                 self._db.dialect.to_db_time(report.created_ms)))
            return bool(txn.rowcount == 1)

        return self._db.run(add)

    def reports(self) -> Deferred[list[ReportSummary]]:
        def summarise(rows: list[Row]) -> list[ReportSummary]:
            by_message: dict[str, list[tuple[str, int]]] = {}
            for message_id, reason, created_at in rows:
                by_message.setdefault(message_id, []).append((reason, self._db.dialect.from_db_time(created_at)))
            summaries = [ReportSummary(message_id, len(reports), tuple(r for r, _ in reports), reports[-1][1])
                         for message_id, reports in by_message.items()]
            return sorted(summaries, key=lambda s: s.last_ms, reverse=True)

        read = self._query("SELECT message_id, reason, created_at FROM moderation_reports ORDER BY created_at, id")
        return read.addCallback(summarise)

    def dismiss_report(self, message_id: str) -> Deferred[bool]:
        def dismiss(txn: adbapi.Transaction) -> bool:
            txn.execute(self._db.sql("DELETE FROM moderation_reports WHERE message_id = ?"), (message_id,))
            return bool(txn.rowcount > 0)

        return self._db.run(dismiss)

    # -- nicknames and deleted messages -----------------------------------

    def set_name_client(self, name: str, client: str | None) -> Deferred[None]:
        def assign(txn: adbapi.Transaction) -> None:
            txn.execute(self._db.sql("DELETE FROM moderation_names WHERE name = ?"), (name,))
            if client is not None:
                txn.execute(self._db.sql("INSERT INTO moderation_names (name, client) VALUES (?, ?)"), (name, client))

        return self._db.run(assign)

    def _among(self, sql: str, values: Sequence[str]) -> Deferred[list[Row]]:
        """Rows of ``sql`` (ending in ``IN``) for ``values``, a chunk per query."""

        def query(txn: adbapi.Transaction) -> list[Row]:
            rows: list[Row] = []
            for chunk in _chunks(values):
                txn.execute(self._db.sql(f"{sql} ({', '.join('?' for _ in chunk)})"), chunk)
                rows.extend(txn.fetchall())
            return rows

        return self._db.run(query)

    def name_clients(self, names: Sequence[str]) -> Deferred[dict[str, str]]:
        read = self._among("SELECT name, client FROM moderation_names WHERE name IN", names)
        return read.addCallback(lambda rows: {name: client for name, client in rows})

    def mark_deleted(self, message_id: str) -> Deferred[bool]:
        insert = self._db.insert_new("moderation_deleted", "id, deleted_at")
        deleted_at = self._db.dialect.to_db_time(self._db.now_ms())

        def mark(txn: adbapi.Transaction) -> bool:
            txn.execute(insert, (message_id, deleted_at))
            return bool(txn.rowcount == 1)

        return self._db.run(mark)

    def deleted_among(self, message_ids: Sequence[str]) -> Deferred[set[str]]:
        read = self._among("SELECT id FROM moderation_deleted WHERE id IN", message_ids)
        return read.addCallback(lambda rows: {row[0] for row in rows})


@implementer(IModerationLog)
class SqlModerationLog(_OnDatabase):
    max_connections = 1

    def start(self) -> Deferred[None]:
        """Runs the archive schema's statements about ``moderation_log``."""
        statements = [s for s in self._db.dialect.schema() if "moderation_log" in s]
        return self._db.run(_execute_all, statements)

    def record(self, entry: LogEntry) -> Deferred[LogEntry]:
        def insert(txn: adbapi.Transaction) -> LogEntry:
            txn.execute(self._db.sql("INSERT INTO moderation_log (action, target, reason, created_at)"
                                     " VALUES (?, ?, ?, ?)"),
                        (entry.action, entry.target, entry.reason, self._db.dialect.to_db_time(entry.created_ms)))
            return LogEntry(entry.action, entry.target, entry.reason, entry.created_ms, str(txn.lastrowid))

        return self._db.run(insert)

    def newest(self, limit: int) -> Deferred[list[LogEntry]]:
        def entries(txn: adbapi.Transaction) -> list[LogEntry]:
            if limit <= 0:
                return []
            txn.execute(self._db.sql("SELECT id, action, target, reason, created_at FROM moderation_log"
                                     " ORDER BY id DESC LIMIT ?"), (int(limit),))
            from_db = self._db.dialect.from_db_time
            return [LogEntry(action, target, reason, from_db(created_at), str(entry_id))
                    for entry_id, action, target, reason, created_at in txn.fetchall()]

        return self._db.run(entries)
