"""The moderation store in Redis, shared by every node; all keys under
``<prefix>mod:`` (``key_prefix`` defaults to ``anonchat:``).

Keys: ``sanctions:<kind>`` a hash id -> JSON, with ``sanctions:<kind>:expiry``
a sorted set id -> expiry ms of the ones that expire (removed, from both, by
every listing and every new sanction of that kind, so they never pile up);
``next_id`` the sanction id counter; ``slow_mode`` a plain key; ``reports`` a
sorted set message id -> newest report ms, and ``report:<message id>`` a hash
reporter -> JSON (only the newest ``max_reported`` messages are kept);
``deleted`` a sorted set message id -> when it was deleted, kept for
``deleted_retention`` (7 days by default: enough for every page and resume a
client still shows; older ones are trimmed at the next deletion); ``client_key``
made once with ``SET NX`` and read back; ``name:<nickname>`` the client of a
nickname, with a TTL (a day by default) so a node that died leaves none for long.

Every call has a timeout and fails with ModerationUnavailable at once while
the connection is down (txredisapi reconnects by itself), as the buffer does.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.chat.moderation import KINDS, Report, ReportSummary, Sanction
from anonchat.chat.ports import IModerationStore, ModerationUnavailable
from anonchat.store.redis_connection import TIMEOUT_GRACE, connect, guarded, is_connected, parse_redis_url, wait_connected

T = TypeVar("T")


# Remove the sanctions expired at ARGV[1] from the hash (KEYS[1]) and the
# expiry set (KEYS[2]); with ARGV[2] (JSON) also add one under the next id of
# KEYS[3], expiring at ARGV[3] ('' = never), and return that id.
SANCTION_SCRIPT = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[1], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if ARGV[2] == nil then return false end
local id = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], id, ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], id) end
return id
"""

LIFT_SCRIPT = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return value
"""

# KEYS: the reports index, this message's hash. ARGV: message id, reporter,
# JSON, created ms, the most messages kept, the prefix of the hashes.
REPORT_SCRIPT = """
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not last) or tonumber(last) < tonumber(ARGV[4]) then redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1]) end
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then
  for _, message in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
    redis.call('DEL', ARGV[6] .. message)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
return 1
"""

# Every reported message, newest first, with its reports' JSON values.
REPORTS_SCRIPT = """
local out = {}
for _, message in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = {message, redis.call('HVALS', ARGV[1] .. message)}
end
return out
"""

DISMISS_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
"""

# KEYS: the deleted set. ARGV: message id, now ms, oldest ms kept.
DELETE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
return redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"a sanction kind is one of {', '.join(KINDS)}")
    return kind


@implementer(IModerationStore)
class RedisModerationStore:
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        *,
        key_prefix: str = "anonchat:",
        command_timeout: float = 5.0,
        deleted_retention: float = 7 * 24 * 3600.0,
        max_reported: int = 10_000,
        name_ttl: float = 24 * 3600.0,
        clock: Any = None,
    ) -> None:
        self._reactor = reactor
        self._clock = clock or reactor
        self._address = parse_redis_url(url)
        self._prefix = key_prefix + "mod:"
        self._timeout = command_timeout
        self._retention_ms = int(deleted_retention * 1000)
        self._max_reported = max_reported
        self._name_ttl_ms = max(int(name_ttl * 1000), 1)
        self._connection: Any = None

    # -- plumbing ---------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _command(self, *args: Any) -> Deferred[Any]:
        if self._connection is None:
            return fail(ModerationUnavailable("the Redis moderation store is not running"))
        if not is_connected(self._connection):
            return fail(ModerationUnavailable("not connected to Redis"))
        d: Deferred[Any] = self._connection.handler.execute_command(*args)
        return d.addTimeout(self._timeout + TIMEOUT_GRACE, self._reactor)

    async def _pipeline(self, *commands: Sequence[Any]) -> list[Any]:
        """Several commands written at once, answered in order; the first
        failure is raised and the others' are consumed."""
        sent = [self._command(*command) for command in commands]
        results = []
        failure: BaseException | None = None
        for d in sent:
            try:
                results.append(await d)
            except Exception as e:
                failure = failure or e
        if failure is not None:
            raise failure
        return results

    def _public(self, name: str, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """One operation; whatever Redis did wrong becomes ModerationUnavailable."""
        return guarded(self.log, "moderation " + name, work, ModerationUnavailable)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Deferred[None]:
        return self._public("start", self._start)

    async def _start(self) -> None:
        if self._connection is not None:
            return
        self._connection = connect(self._reactor, self._address, reply_timeout=self._timeout,
                                   connect_timeout=self._timeout)
        try:
            await wait_connected(self._reactor, self._connection, self._timeout)
            await self._command("PING")
        except BaseException:
            await self._close()
            raise

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        await DeferredList([connection.disconnect()], consumeErrors=True)
        # txredisapi hands new connections over with callLater(0, ...)
        await deferLater(self._reactor, 0, lambda: None)

    # -- the client key ---------------------------------------------------

    def client_key(self) -> Deferred[bytes]:
        async def work() -> bytes:
            key = self._key("client_key")
            _, kept = await self._pipeline(("SET", key, secrets.token_hex(32), "NX"), ("GET", key))
            return bytes.fromhex(_text(kept))

        return self._public("client_key", work)

    # -- sanctions --------------------------------------------------------

    def _sanction_keys(self, kind: str) -> tuple[str, str]:
        hash_key = self._key("sanctions", _kind(kind))
        return hash_key, hash_key + ":expiry"

    def add_sanction(self, sanction: Sanction) -> Deferred[Sanction]:
        async def work() -> Sanction:
            hash_key, expiry_key = self._sanction_keys(sanction.kind)
            value = json.dumps({"client": sanction.client, "created_ms": sanction.created_ms,
                                "expires_ms": sanction.expires_ms, "reason": sanction.reason,
                                "name": sanction.name}, ensure_ascii=False)
            expires = "" if sanction.expires_ms is None else str(sanction.expires_ms)
            new_id = await self._command("EVAL", SANCTION_SCRIPT, 3, hash_key, expiry_key, self._key("next_id"),
                                         sanction.created_ms, value, expires)
            return Sanction(sanction.kind, sanction.client, sanction.created_ms, sanction.expires_ms,
                            sanction.reason, sanction.name, _text(new_id))

        return self._public("add_sanction", work)

    @staticmethod
    def _sanction(kind: str, sanction_id: Any, value: Any) -> Sanction:
        fields = json.loads(_text(value))
        return Sanction(kind, fields["client"], fields["created_ms"], fields["expires_ms"], fields["reason"],
                        fields["name"], _text(sanction_id))

    def sanctions(self, kind: str, now_ms: int) -> Deferred[list[Sanction]]:
        async def work() -> list[Sanction]:
            hash_key, expiry_key = self._sanction_keys(kind)
            _, pairs = await self._pipeline(
                ("EVAL", SANCTION_SCRIPT, 3, hash_key, expiry_key, self._key("next_id"), now_ms),
                ("HGETALL", hash_key),
            )
            listed = [self._sanction(kind, i, v) for i, v in zip(pairs[::2], pairs[1::2])]
            return sorted(listed, key=lambda s: (s.created_ms, int(s.id)), reverse=True)

        return self._public("sanctions", work)

    def lift_sanction(self, kind: str, sanction_id: str) -> Deferred[Sanction | None]:
        async def work() -> Sanction | None:
            hash_key, expiry_key = self._sanction_keys(kind)
            value = await self._command("EVAL", LIFT_SCRIPT, 2, hash_key, expiry_key, sanction_id)
            return None if value is None else self._sanction(kind, sanction_id, value)

        return self._public("lift_sanction", work)

    # -- slow mode --------------------------------------------------------

    def set_slow_mode(self, seconds: int) -> Deferred[None]:
        async def work() -> None:
            if seconds < 0:
                raise ValueError("slow mode is 0 (off) or a number of seconds")
            await self._command("SET", self._key("slow_mode"), int(seconds))

        return self._public("set_slow_mode", work)

    def slow_mode(self) -> Deferred[int]:
        async def work() -> int:
            value = await self._command("GET", self._key("slow_mode"))
            return 0 if value is None else int(_text(value))

        return self._public("slow_mode", work)

    # -- reports ----------------------------------------------------------

    def add_report(self, report: Report) -> Deferred[bool]:
        async def work() -> bool:
            value = json.dumps({"reason": report.reason, "created_ms": report.created_ms}, ensure_ascii=False)
            added = await self._command(
                "EVAL", REPORT_SCRIPT, 2, self._key("reports"), self._key("report", report.message_id),
                report.message_id, report.reporter, value, report.created_ms, self._max_reported, self._key("report", ""),
            )
            return int(added) == 1

        return self._public("add_report", work)

    def reports(self) -> Deferred[list[ReportSummary]]:
        async def work() -> list[ReportSummary]:
            reply = await self._command("EVAL", REPORTS_SCRIPT, 1, self._key("reports"), self._key("report", ""))
            summaries = []
            for message_id, values in reply:
                reports = sorted((json.loads(_text(v)) for v in values), key=lambda r: r["created_ms"])
                if reports:
                    summaries.append(ReportSummary(_text(message_id), len(reports),
                                                   tuple(r["reason"] for r in reports), reports[-1]["created_ms"]))
            return sorted(summaries, key=lambda s: s.last_ms, reverse=True)

        return self._public("reports", work)

    def dismiss_report(self, message_id: str) -> Deferred[bool]:
        async def work() -> bool:
            removed = await self._command("EVAL", DISMISS_SCRIPT, 2, self._key("reports"),
                                          self._key("report", message_id), message_id)
            return int(removed) == 1

        return self._public("dismiss_report", work)

    # -- nicknames --------------------------------------------------------

    def set_name_client(self, name: str, client: str | None) -> Deferred[None]:
        async def work() -> None:
            if client is None:
                await self._command("DEL", self._key("name", name))
            else:
                await self._command("SET", self._key("name", name), client, "PX", self._name_ttl_ms)

        return self._public("set_name_client", work)

    def name_clients(self, names: Sequence[str]) -> Deferred[dict[str, str]]:
        async def work() -> dict[str, str]:
            wanted = list(names)
            if not wanted:
                return {}
            values = await self._command("MGET", *[self._key("name", n) for n in wanted])
            return {n: _text(v) for n, v in zip(wanted, values) if v is not None}

        return self._public("name_clients", work)

    # -- deleted messages -------------------------------------------------

    def mark_deleted(self, message_id: str) -> Deferred[bool]:
        async def work() -> bool:
            now_ms = int(self._clock.seconds() * 1000)
            added = await self._command("EVAL", DELETE_SCRIPT, 1, self._key("deleted"), message_id, now_ms,
                                        now_ms - self._retention_ms)
            return int(added) == 1

        return self._public("mark_deleted", work)

    def deleted_among(self, message_ids: Sequence[str]) -> Deferred[set[str]]:
        async def work() -> set[str]:
            wanted = list(message_ids)
            if not wanted:
                return set()
            scores = await self._command("ZMSCORE", self._key("deleted"), *wanted)
            return {i for i, score in zip(wanted, scores) if score is not None}

        return self._public("deleted_among", work)
