"""History reads from a MariaDB read replica, when it is caught up enough.

The rule. Callers read the buffer first and ask the archive only for what
the buffer no longer held, and the buffer lets a message go only after the
primary committed it; so everything a history read needs was committed on
the primary before the read began. The replica therefore serves a read
only if it has applied every transaction the primary had written when the
read began: the read asks the primary for ``@@gtid_binlog_pos`` (a
variable, no table), then runs on the replica ``MASTER_GTID_WAIT(position,
CATCH_UP_WAIT)`` and, only if that answers 0, the page query in a snapshot
taken after it (autocommit). Comparing newest ids instead would not do:
nodes may archive a later batch before an earlier one.

Anything else sends the read to the primary: a replica behind by more than
``CATCH_UP_WAIT`` seconds, one that fails or times out (its URL's
``connect_timeout``/``read_timeout``, short by default), a primary that
writes no binary log. The replica is then left alone for ``RECHECK_SECONDS``
so a bad one costs one round trip a second, not one per read, and each
episode is logged once. The primary's position is never cached: an old one
could miss a batch the buffer has trimmed since.
"""

from __future__ import annotations

import enum
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

#: seconds a read waits for the replica to apply what the primary has (the
#: usual few milliseconds of lag right after a flush), then goes elsewhere
CATCH_UP_WAIT = 0.2
#: seconds the replica is left alone after it was passed over
RECHECK_SECONDS = 1.0
#: MySQL URL timeouts of the replica's connections unless its URL says
REPLICA_TIMEOUTS = {"connect_timeout": 2.0, "read_timeout": 10.0, "write_timeout": 10.0}
PRIMARY_POSITION = "SELECT @@GLOBAL.gtid_binlog_pos"
REPLICA_REACHED = "SELECT MASTER_GTID_WAIT(%s, %s)"

Row = tuple[Any, ...]


def primary_position(txn: Any) -> str:
    """On the primary: its GTID position ("" when it writes no binary log)."""
    txn.execute(PRIMARY_POSITION)
    (position,) = txn.fetchone()
    return "" if position is None else str(position)


def rows_if_caught_up(txn: Any, position: str, sql: str, args: tuple[Any, ...]) -> list[Row] | None:
    """On the replica: the rows of ``sql``, or None when the replica has not
    applied ``position`` within CATCH_UP_WAIT."""
    txn.execute(REPLICA_REACHED, (position, CATCH_UP_WAIT))
    (reached,) = txn.fetchone()
    if reached != 0:
        return None
    txn.execute(sql, args)
    return list(txn.fetchall())


class Passed(enum.Enum):
    """Why a read went to the primary instead."""

    BEHIND = "behind"
    FAILED = "failed"
    UNKNOWN_POSITION = "unknown-position"


_WHY = {
    Passed.BEHIND: "the database replica is behind the primary",
    Passed.FAILED: "the database replica failed",
    Passed.UNKNOWN_POSITION: "the primary's replication position is unknown",
}


class ReplicaRoute:
    """Sans-IO: whether the next history read should try the replica, from
    what the last tries found; logs each change once."""

    log = Logger()

    def __init__(self, clock: IReactorTime, recheck: float = RECHECK_SECONDS) -> None:
        self._clock = clock
        self._recheck = recheck
        self._skip_until = 0.0
        self._passed: Passed | None = None

    def worth_trying(self) -> bool:
        return self._clock.seconds() >= self._skip_until

    def served(self) -> None:
        self._skip_until = 0.0
        if self._passed is not None:
            self._passed = None
            self.log.info("The database replica serves history reads again")

    def passed_over(self, why: Passed, error: str) -> None:
        """The read went to the primary because of ``why`` (``error``: what
        failed, for FAILED and UNKNOWN_POSITION)."""
        self._skip_until = self._clock.seconds() + self._recheck
        if why is self._passed:
            return
        self._passed = why
        if why is Passed.BEHIND:
            self.log.info("History reads go to the primary: {why}", why=_WHY[why], reason=why.value)
        else:
            self.log.warn(
                "History reads go to the primary: {why} ({error}); trying it again every {seconds}s",
                why=_WHY[why], error=error, seconds=self._recheck, reason=why.value,
            )
