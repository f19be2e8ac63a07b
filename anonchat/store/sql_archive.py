"""The permanent archive: ``chat_messages`` in MySQL (PyMySQL) or SQLite, over adbapi.

A batch is one transaction of multi-row ``INSERT``s that skip ids already
there, so a retried batch is harmless. A row the database refuses for its
data (not for a lost connection) must never stall the flusher: the batch is
then written row by row in the same transaction and each refused row is set
aside in ``chat_messages_dead_letter``; connection errors fail the whole
store with ArchiveUnavailable so the flusher retries it later.

History reads (REST pages, replays) run on a pool of their own, so a flood
of them can never delay a flush: at most ``readers`` run at once and at most
``WAITING_READS_PER_READER`` times as many wait; past that a read fails at
once with ArchiveBusy, so callers answer "try later" instead of queueing
without bound.

SQLite writes on a one-connection pool: it serialises writers anyway. A file
database runs in WAL mode so readers and the writer never block each other;
``sqlite:///:memory:`` becomes a shared-cache in-memory database private to
this archive, whose readers read without table locks (they may see a batch
being written; the same rows are in the buffer anyway).

With a MySQL read replica, history reads go to it when it has everything
they need, else to the primary (the rule is in ``sql_replica.py``); writes,
the schema and pings only ever go to the primary.
"""

from __future__ import annotations

import itertools
import json
import os
from contextlib import suppress
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat.chat.message import ChatMessage, MessageType, id_key
from anonchat.chat.ports import ArchiveUnavailable, IMessageArchive
from anonchat.chat.readgate import ReadGate
from anonchat.store.sql_dialect import MYSQL, SQLITE, SqlDialect
from anonchat.store.sql_replica import REPLICA_TIMEOUTS, Passed, ReplicaRoute, primary_position, rows_if_caught_up

#: the schema version this code writes; a database with a newer one is refused
SCHEMA_VERSION = 1
#: rows per INSERT statement: a default batch (500) is one statement, bigger
#: ones stay under SQLite's bound-parameter and MySQL's packet limits
ROWS_PER_STATEMENT = 1000
#: history reads that may run at once, unless the caller says (history-readers)
DEFAULT_READERS = 4
#: reads that may wait for a reader, per reader; more are refused (ArchiveBusy)
WAITING_READS_PER_READER = 4
COLUMNS = "id, id_ms, id_seq, type, sender, content, created_at"
SELECTED = "id, type, sender, content, created_at"
#: A chat message a moderator deleted keeps its row with its content erased
#: (chat content is never empty otherwise); reads leave it out.
VISIBLE = "NOT (type = 'CHAT' AND content = '')"
#: Ids erased in one statement at most.
ERASE_BATCH = 500
MYSQL_TIMEOUTS = {"connect_timeout": 5.0, "read_timeout": 30.0, "write_timeout": 30.0}

Row = tuple[Any, ...]
_memory_databases = itertools.count(1)


def connection_settings(
    url: str, timeouts: dict[str, float] = MYSQL_TIMEOUTS
) -> tuple[SqlDialect, tuple[Any, ...], dict[str, Any]]:
    """The dialect, and the ``adbapi.ConnectionPool`` arguments, for a
    ``sqlite:///path`` or ``mysql://user:password@host:port/db`` URL
    (MySQL ``timeouts`` unless its query string sets them)."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        prefix = "sqlite:///"
        path = url[len(prefix) :] if url.lower().startswith(prefix) else ""
        if not path:
            raise ValueError("a SQLite URL is sqlite:///relative/path, sqlite:////absolute/path or sqlite:///:memory:")
        kwargs: dict[str, Any] = {
            "timeout": 10.0,
            "check_same_thread": False,  # the pool closes it from the reactor thread
            "cp_min": 1,
            "cp_max": 1,
            "cp_reconnect": True,
            "cp_noisy": False,
        }
        return SQLITE, (path,), kwargs
    if scheme == "mysql":
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database:
            raise ValueError("a MySQL URL is mysql://user:password@host:port/database")
        timeouts = dict(timeouts)
        for name, value in parse_qsl(parts.query):
            if name not in timeouts:
                raise ValueError(f"unknown MySQL URL option {name!r} (known: {', '.join(sorted(timeouts))})")
            timeouts[name] = float(value)
        kwargs = {
            "host": parts.hostname,
            "port": parts.port or 3306,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "database": database,
            "charset": "utf8mb4",
            "autocommit": False,
            # refuse what does not fit instead of truncating it; UTC for the
            # server's own timestamps (created_at is written as UTC already)
            "sql_mode": "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION",
            "init_command": "SET time_zone = '+00:00'",
            **timeouts,
            "cp_min": 1,
            "cp_max": 4,
            "cp_reconnect": True,
            "cp_noisy": False,
        }
        return MYSQL, (), kwargs
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or mysql://")


def _sqlite_wal(connection: Any) -> None:
    connection.execute("PRAGMA journal_mode=WAL")


def _sqlite_unlocked_reads(connection: Any) -> None:
    connection.execute("PRAGMA read_uncommitted = 1")


class _QuietConnection(adbapi.Connection):  # type: ignore[misc]
    """adbapi's connection wrapper without its error logging: a connection
    that cannot roll back is dropped from the pool (the next interaction opens
    a new one) and the failure surfaces once, as ArchiveUnavailable, instead of
    as logged tracebacks on every attempt during a database outage."""

    def rollback(self) -> None:
        try:
            self._connection.rollback()
        except Exception:
            pool, connection = self._pool, self._connection
            if pool.connections.get(pool.threadID()) is connection:
                del pool.connections[pool.threadID()]
            with suppress(Exception):
                connection.close()


def _describe(error: BaseException, dialect: SqlDialect) -> str:
    """What went wrong, for logs: the class and code, plus the driver's text
    when it is about the connection (data errors may quote the data)."""
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    name = type(error).__name__ if code is None else f"{type(error).__name__} {code}"
    if dialect.is_data_error(error) or isinstance(error, UnicodeError):
        return name
    return f"{name}: {error}"


def _escaped(text: str) -> str:
    """``text`` with anything UTF-8 cannot carry written as a backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _raw_json(message: ChatMessage) -> str:
    kind = message.type
    return _escaped(
        json.dumps(
            {
                "id": message.id,
                "type": kind.value if isinstance(kind, MessageType) else str(kind),
                "sender": message.sender,
                "content": message.content,
                "created_ms": message.created_ms,
            },
            ensure_ascii=False,
            default=repr,
        )
    )


@implementer(IMessageArchive)
class SqlArchive:
    """IMessageArchive over an ``adbapi.ConnectionPool``; build it with
    :meth:`from_url`. ``dead_lettered`` counts rows set aside, ``dropped``
    rows whose dead letter the database refused too (logged, then lost)."""

    log = Logger()

    def __init__(
        self,
        pool: adbapi.ConnectionPool,
        dialect: SqlDialect,
        clock: Any,
        read_pool: adbapi.ConnectionPool | None = None,
        readers: int = DEFAULT_READERS,
        replica_pool: adbapi.ConnectionPool | None = None,
    ) -> None:
        #: the writes' pool (the flusher's), and the history reads' own
        self.pool = pool
        self.read_pool = pool if read_pool is None else read_pool
        #: history reads on the read replica, when there is one
        self.replica_pool = replica_pool
        self._replica_route = ReplicaRoute(clock)
        self._reads = ReadGate(readers, readers * WAITING_READS_PER_READER)
        self._dialect = dialect
        self._clock = clock
        self.dead_lettered = 0
        self.dropped = 0
        self._schema_ready = False
        self._stopped = False
        self._busy = 0
        self._idle: list[Deferred[None]] = []

    @classmethod
    def from_url(
        cls, url: str, reactor: Any = None, readers: int = DEFAULT_READERS, replica: str | None = None
    ) -> SqlArchive:
        """An archive on ``url`` with ``readers`` connections for history reads
        besides the writes' own, and as many on the MySQL read ``replica``."""
        if readers < 1:
            raise ValueError("an archive needs at least one reader")
        dialect, args, kwargs = connection_settings(url)
        replica_settings = None if replica is None else connection_settings(replica, REPLICA_TIMEOUTS)
        if replica_settings is not None and (dialect is not MYSQL or replica_settings[0] is not MYSQL):
            raise ValueError("a read replica needs a mysql:// database and a mysql:// replica")
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        write_setup: Callable[[Any], None] | None = None
        read_setup: Callable[[Any], None] | None = None
        if dialect is SQLITE and args[0] == ":memory:":
            args = (f"file:anonchat-{os.getpid()}-{next(_memory_databases)}?mode=memory&cache=shared",)
            kwargs = {**kwargs, "uri": True}
            read_setup = _sqlite_unlocked_reads
        elif dialect is SQLITE:
            write_setup = read_setup = _sqlite_wal

        def pool(setup: Callable[[Any], None] | None, **overrides: Any) -> adbapi.ConnectionPool:
            made = adbapi.ConnectionPool(
                dialect.dbapi_name, *args, cp_reactor=reactor, cp_openfun=setup, **{**kwargs, **overrides}
            )
            made.connectionFactory = _QuietConnection
            return made

        replica_pool = None
        if replica_settings is not None:
            # autocommit: each page query reads a snapshot taken after the
            # replica said it had caught up
            _, _, replica_kwargs = replica_settings
            replica_pool = adbapi.ConnectionPool(
                MYSQL.dbapi_name, cp_reactor=reactor,
                **{**replica_kwargs, "autocommit": True, "cp_min": 1, "cp_max": readers},
            )
            replica_pool.connectionFactory = _QuietConnection
        read_pool = pool(read_setup, cp_min=1, cp_max=readers)
        return cls(pool(write_setup), dialect, reactor, read_pool, readers, replica_pool)

    @property
    def reads_refused(self) -> int:
        """History reads refused with ArchiveBusy so far."""
        return self._reads.refused

    # -- the port --------------------------------------------------------

    def start(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._ensure_schema())

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    def store(self, messages: Sequence[ChatMessage]) -> Deferred[None]:
        return Deferred.fromCoroutine(self._store(list(messages)))

    def read_before(self, before_id: str | None, limit: int) -> Deferred[list[ChatMessage]]:
        return Deferred.fromCoroutine(self._read(before_id, limit, newest_first=True))

    def read_after(self, after_id: str, limit: int) -> Deferred[list[ChatMessage]]:
        return Deferred.fromCoroutine(self._read(after_id, limit, newest_first=False))

    def erase(self, message_ids: Sequence[str]) -> Deferred[None]:
        return Deferred.fromCoroutine(self._erase(list(message_ids)))

    async def _erase(self, message_ids: list[str]) -> None:
        if not message_ids:
            return
        await self._ensure_schema()
        await self._run(self._erase_rows, message_ids)

    def _erase_rows(self, txn: adbapi.Transaction, message_ids: list[str]) -> None:
        for start in range(0, len(message_ids), ERASE_BATCH):
            part = message_ids[start:start + ERASE_BATCH]
            marks = ", ".join("?" * len(part))
            txn.execute(self._dialect.params(
                f"UPDATE chat_messages SET content = '' WHERE type = 'CHAT' AND id IN ({marks})"), tuple(part))

    def ping(self) -> Deferred[bool]:
        if self._stopped:
            return succeed(False)
        pinged = self._run(lambda txn: txn.execute("SELECT 1"))
        return pinged.addCallbacks(lambda _: True, lambda _: False)

    # -- plumbing --------------------------------------------------------

    def _run(
        self, interaction: Callable[..., Any], *args: Any, pool: adbapi.ConnectionPool | None = None
    ) -> Deferred[Any]:
        """``interaction`` in a thread of ``pool`` (the writes' by default), in
        one transaction; any failure becomes ArchiveUnavailable. ``stop``
        waits for these to finish."""
        if self._stopped:
            return Deferred.fromCoroutine(self._refuse())
        self._busy += 1
        running: Deferred[Any] = (pool or self.pool).runInteraction(interaction, *args)
        running.addBoth(self._finished)
        return running.addErrback(self._unavailable)

    async def _refuse(self) -> None:
        raise ArchiveUnavailable("the archive is stopped")

    def _finished(self, result: Any) -> Any:
        self._busy -= 1
        if not self._busy:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
        return result

    def _unavailable(self, failure: Failure) -> None:
        if failure.check(ArchiveUnavailable):
            failure.raiseException()
        raise ArchiveUnavailable(_describe(failure.value, self._dialect)) from failure.value

    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._busy:
            waiter: Deferred[None] = Deferred()
            self._idle.append(waiter)
            await waiter
        # no interaction is running, so joining the idle pool threads is quick
        if self.replica_pool is not None:
            self.replica_pool.close()
        if self.read_pool is not self.pool:
            self.read_pool.close()
        self.pool.close()

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        version = await self._run(self._apply_schema)
        if version is not None and version > SCHEMA_VERSION:
            raise ArchiveUnavailable(
                f"the database schema is version {version}, newer than this anonchat's {SCHEMA_VERSION}"
            )
        self._schema_ready = True

    def _apply_schema(self, txn: adbapi.Transaction) -> int | None:
        for statement in self._dialect.schema():
            txn.execute(statement)
        txn.execute("SELECT MAX(version) FROM schema_version")
        (version,) = txn.fetchone()
        return None if version is None else int(version)

    async def _read(self, boundary: str | None, limit: int, newest_first: bool) -> list[ChatMessage]:
        """A page next to ``boundary`` (exclusive; None: the newest), oldest
        first; a malformed boundary fails with ValueError."""
        if newest_first:
            where, order = f"WHERE (id_ms < ? OR (id_ms = ? AND id_seq < ?)) AND {VISIBLE}", "id_ms DESC, id_seq DESC"
        else:
            where, order = f"WHERE (id_ms > ? OR (id_ms = ? AND id_seq > ?)) AND {VISIBLE}", "id_ms, id_seq"
        args: tuple[Any, ...] = ()
        if boundary is None:
            where = f"WHERE {VISIBLE}"
        else:
            ms, seq = id_key(boundary)
            args = (ms, ms, seq)
        if limit <= 0:
            return []
        await self._reads.enter()
        try:
            await self._ensure_schema()
            sql = self._dialect.params(f"SELECT {SELECTED} FROM chat_messages {where} ORDER BY {order} LIMIT ?")
            args = (*args, int(limit))
            rows = await self._from_replica(sql, args)
            if rows is None:
                rows = await self._run(self._query, sql, args, pool=self.read_pool)
        finally:
            self._reads.leave()
        messages = [self._message(row) for row in rows]
        return messages[::-1] if newest_first else messages

    async def _from_replica(self, sql: str, args: tuple[Any, ...]) -> list[Row] | None:
        """The rows of a history read from the replica, or None when the
        primary must answer it (the rule is in ``sql_replica.py``)."""
        route = self._replica_route
        if self.replica_pool is None or self._stopped or not route.worth_trying():
            return None
        try:
            position = await self._run(primary_position, pool=self.read_pool)
        except ArchiveUnavailable as e:
            route.passed_over(Passed.UNKNOWN_POSITION, str(e))
            return None
        if not position:
            route.passed_over(Passed.UNKNOWN_POSITION, "the primary writes no binary log")
            return None
        try:
            rows: list[Row] | None = await self._run(rows_if_caught_up, position, sql, args, pool=self.replica_pool)
        except ArchiveUnavailable as e:
            route.passed_over(Passed.FAILED, str(e))
            return None
        if rows is None:
            route.passed_over(Passed.BEHIND, "")
            return None
        route.served()
        return rows

    @staticmethod
    def _query(txn: adbapi.Transaction, sql: str, args: tuple[Any, ...]) -> list[Row]:
        txn.execute(sql, args)
        return list(txn.fetchall())

    def _message(self, row: Row) -> ChatMessage:
        message_id, kind, sender, content, created_at = row
        return ChatMessage(MessageType(kind), sender, content, self._dialect.from_db_time(created_at), message_id)

    # -- storing ---------------------------------------------------------

    def _row(self, message: ChatMessage) -> Row:
        """The column values of ``message``; raises for a message that can
        never be stored (malformed id, unknown type, time out of range)."""
        ms, seq = id_key(message.id)
        if not isinstance(message.sender, str) or not isinstance(message.content, str):
            raise TypeError("sender and content must be text")
        kind = MessageType(message.type).value
        created_at = self._dialect.to_db_time(message.created_ms)
        return (message.id, ms, seq, kind, message.sender, message.content, created_at)

    async def _store(self, messages: list[ChatMessage]) -> None:
        if not messages:
            return
        rows: list[tuple[ChatMessage, Row]] = []
        refused: list[tuple[ChatMessage, BaseException]] = []
        for message in messages:
            try:
                rows.append((message, self._row(message)))
            except (ValueError, TypeError, OverflowError, AttributeError) as error:
                refused.append((message, error))
        await self._ensure_schema()
        failed_at = self._dialect.to_db_time(int(self._clock.seconds() * 1000))
        set_aside, lost = await self._run(self._write, rows, refused, failed_at)
        for message_id, why in set_aside:
            self.dead_lettered += 1
            self.log.error(
                "Archive refused message {message_id} ({error}); it is set aside in chat_messages_dead_letter",
                message_id=message_id,
                error=why,
            )
        for message_id, why in lost:
            self.dropped += 1
            self.log.critical(
                "Archive refused message {message_id} and its dead letter ({error}); it is lost",
                message_id=message_id,
                error=why,
            )

    def _insert(self, count: int) -> str:
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
        d = self._dialect
        return d.params(f"{d.insert_ignore} chat_messages ({COLUMNS}) VALUES {values}{d.on_duplicate}")

    def _write(
        self,
        txn: adbapi.Transaction,
        rows: list[tuple[ChatMessage, Row]],
        refused: list[tuple[ChatMessage, BaseException]],
        failed_at: Any,
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """In a pool thread, one transaction: the rows, then the dead letters.
        Both databases undo a failed statement, not the transaction, so after
        a data error the rows are retried one by one on the same transaction
        (rows already in are skipped by the idempotent insert)."""
        dialect = self._dialect
        refused = list(refused)
        try:
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start : start + ROWS_PER_STATEMENT]
                txn.execute(self._insert(len(chunk)), [value for _, row in chunk for value in row])
        except Exception as error:
            if not dialect.is_data_error(error):
                raise
            single = self._insert(1)
            for message, row in rows:
                try:
                    txn.execute(single, row)
                except Exception as row_error:
                    if not dialect.is_data_error(row_error):
                        raise
                    refused.append((message, row_error))
        set_aside: list[tuple[str, str]] = []
        lost: list[tuple[str, str]] = []
        dead_letter = dialect.params(
            f"{dialect.insert_ignore} chat_messages_dead_letter (id, raw_json, error, failed_at)"
            f" VALUES (?, ?, ?, ?){dialect.on_duplicate}"
        )
        for message, refusal in refused:
            message_id = _escaped(str(message.id))[:191]
            summary = _describe(refusal, dialect)
            detail = _escaped(f"{type(refusal).__name__}: {refusal}")[:4000]
            try:
                txn.execute(dead_letter, (message_id, _raw_json(message), detail, failed_at))
            except Exception as dead_error:
                if not dialect.is_data_error(dead_error):
                    raise
                lost.append((message_id, summary))
            else:
                set_aside.append((message_id, summary))
        return set_aside, lost
