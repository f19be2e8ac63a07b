"""Everything that differs between the archive's two SQL databases, in one place.

``created_at`` is ``DATETIME(3)`` (UTC) in MySQL and ISO-8601 UTC text with
milliseconds (``2026-11-24T06:11:54.123Z``, which sorts as time) in SQLite, so
operators read a time, not a number, in both. The schema lives in packaged
``anonchat/sql/schema-<dialect>.sql`` files (``etc/schema-mysql.sql`` is the
same file); this module only knows how to read and run them.
"""

from __future__ import annotations

import datetime
from importlib import resources
from typing import Any, Callable

import attrs

EPOCH = datetime.datetime(1970, 1, 1)
ONE_MS = datetime.timedelta(milliseconds=1)
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _naive_utc(created_ms: int) -> datetime.datetime:
    # epoch arithmetic, not fromtimestamp: no dependence on the platform's time_t
    return EPOCH + datetime.timedelta(milliseconds=created_ms)


def _ms(moment: datetime.datetime) -> int:
    return (moment.replace(tzinfo=None) - EPOCH) // ONE_MS


def _iso_text(created_ms: int) -> str:
    moment = _naive_utc(created_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def _from_iso_text(text: str) -> int:
    return _ms(datetime.datetime.strptime(text, ISO_FORMAT))


def _from_datetime(value: Any) -> int:
    if isinstance(value, str):  # a server configured to hand back text
        return _ms(datetime.datetime.fromisoformat(value))
    return _ms(value)


def split_statements(sql: str) -> list[str]:
    """The statements of a schema file: ``--`` comment lines dropped, then
    split on ``;`` (so no ``;`` inside a statement's literals)."""
    kept = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in kept.split(";") if statement.strip()]


def _mysql_data_errors() -> tuple[type[BaseException], ...]:
    import pymysql

    return (pymysql.err.DataError, pymysql.err.IntegrityError, UnicodeError)


def _sqlite_data_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    return (sqlite3.DataError, sqlite3.IntegrityError, UnicodeError)


@attrs.frozen
class SqlDialect:
    """How one database spells the few things the archive needs."""

    name: str
    #: the DB-API module adbapi loads
    dbapi_name: str
    #: parameter marker of that module
    placeholder: str
    #: ``INSERT`` that skips rows whose key is already there: prefix and suffix
    insert_ignore: str
    on_duplicate: str
    to_db_time: Callable[[int], Any]
    from_db_time: Callable[[Any], int]
    #: exceptions that blame the data of a row, not the connection: the
    #: archive sets such rows aside instead of retrying them forever
    data_errors: tuple[type[BaseException], ...]
    #: server error codes that blame the data although the driver classes
    #: them as operational (MySQL's "Incorrect ... value" family)
    data_error_codes: frozenset[int] = frozenset()

    def is_data_error(self, error: BaseException) -> bool:
        if isinstance(error, self.data_errors):
            return True
        args: tuple[Any, ...] = error.args
        return bool(args) and args[0] in self.data_error_codes

    def schema(self) -> list[str]:
        text = resources.files("anonchat").joinpath("sql", f"schema-{self.name}.sql").read_text(encoding="utf-8")
        return split_statements(text)

    def params(self, sql: str) -> str:
        """``sql`` written with ``?`` markers, in this module's style."""
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)


MYSQL = SqlDialect(
    name="mysql",
    dbapi_name="pymysql",
    placeholder="%s",
    insert_ignore="INSERT INTO",
    on_duplicate=" ON DUPLICATE KEY UPDATE id = id",
    to_db_time=_naive_utc,
    from_db_time=_from_datetime,
    data_errors=_mysql_data_errors(),
    # 1292 truncated wrong value, 1300 invalid character string,
    # 1366 incorrect string value, 1367 illegal value
    data_error_codes=frozenset({1292, 1300, 1366, 1367}),
)

SQLITE = SqlDialect(
    name="sqlite",
    dbapi_name="sqlite3",
    placeholder="?",
    insert_ignore="INSERT OR IGNORE INTO",
    on_duplicate="",
    to_db_time=_iso_text,
    from_db_time=_from_iso_text,
    data_errors=_sqlite_data_errors(),
)
