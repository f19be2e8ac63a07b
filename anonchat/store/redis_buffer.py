"""The Redis Streams message buffer: one stream every node appends to and
reads its ordered feed from, and one consumer group the flushers share.

Keys (``key_prefix`` defaults to ``anonchat:``): ``<prefix>messages`` is the
stream (fields ``type sender content ts``), consumer group ``archiver``;
``<prefix>trimmed`` holds the newest id ever trimmed away, because Redis 7.0
does not record it for ``XTRIM`` (``max-deleted-entry-id`` stays ``0-0``), and
``read_after`` needs it to tell "nothing newer" from "already trimmed".

Two txredisapi connections, each a pool of one: commands are written as soon
as they are made (pipelined, answered in order), and the feed's blocking
``XREAD`` has its own. txredisapi reconnects with backoff by itself and its
``replyTimeout`` drops a connection that stops answering; a timeout of our
own on every call also covers calls waiting for a connection, and turns every
failure into BufferUnavailable. txredisapi schedules on the global reactor;
the injected one times our own calls.

Appends made in one reactor turn go to Redis as one script call
(``EVALSHA``) that runs an ``XADD`` per message and returns their ids: one
command, one reply and one timeout per batch instead of per message, which
is what lets a node take tens of thousands of messages a second. Each field
is encoded to UTF-8 at ``append``, so one bad message fails alone, never its
batch.

An append whose answer is lost (timeout, connection dropped after it was
written) has an unknown outcome, and "not stored" would be a lie half the
time: the sender resends and the chat shows it twice. So each batch carries
a token, and the script also sets ``<prefix>append:<token>`` to its ids for
``outcome_ttl`` seconds. After a lost answer the buffer asks Redis (again
and again until it answers) with a second script that returns the marker,
or, when there is none, sets it to ``-``: a fence, so the append, should it
still reach Redis later (it sat in a socket buffer), finds the token taken
and writes nothing. A ``-`` is proof of "not stored" only while a marker
could not yet have expired, so only an answer received within
``outcome_ttl`` of sending counts; past that the append fails with
AppendOutcomeUnknown, which never claims "not stored". Redis acknowledges
the marker and the entries in one atomic script, so one is never kept
without the other.

With ``wait_replicas`` (``--redis-wait``) a batch is only acknowledged once
that many replicas hold it: ``WAIT`` right after the script, on the same
connection (``WAIT`` counts that connection's own writes), so one per batch.
A ``WAIT`` that ends short, or a connection lost before it, leaves the batch
stored on the master but perhaps not on a replica (a failover could lose
it): AppendOutcomeUnknown (the sender hears UNCONFIRMED), never "not
stored", which would be false and make the sender double it. A lost answer
that the outcome script finds stored is waited for on the connection that
asked (the script writes the marker again, so ``WAIT`` covers the append).

An entry this node cannot decode (a ``type`` from a newer node in a rolling
upgrade, a missing field) would stay pending in the group for ever and stop
trimming; the flusher's claim copies it, raw, to the bounded stream
``<prefix>deadletter`` (fields ``_id``, ``_reason``, then the entry's own)
and acknowledges it, in one script. The feed and the reads skip it.

The consumer group is created at id ``0``, so entries already in the stream
(from before any node ran, or after Redis lost the group) are archived at
least once; the archive insert is idempotent. Trimming runs as one Lua script
so nothing can be claimed between reading the group's state and ``XTRIM``;
it reads the newest ``retain`` + 1 entries, so it runs with an acknowledge
at most once per ``trim_interval`` seconds, and otherwise once that interval
is up: Redis holds at most ``trim_interval`` seconds of archived entries
more than ``retain``.
"""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import txredisapi
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.chat.message import ChatMessage, MessageType, id_key
from anonchat.chat.ports import AppendOutcomeUnknown, BufferUnavailable, FeedListener, IMessageBuffer
from anonchat.store.redis_connection import (
    TIMEOUT_GRACE, guarded, RedisAddress, connect, is_connected, parse_redis_url, wait_connected,
)
from anonchat.store.redis_script import RedisScript
from anonchat.store.turnbatch import TurnBatcher

__all__ = ["RedisStreamBuffer", "RedisAddress", "parse_redis_url"]

T = TypeVar("T")

GROUP = "archiver"
FEED_BACKOFF_MAX = 2.0

#: Most messages one append script carries; a larger turn sends several.
APPEND_BATCH = 500
#: Longest pause between two questions about a lost append's outcome.
OUTCOME_BACKOFF_MAX = 1.0
#: Fields every entry must have; what the stream holds beyond them is ignored.
FIELDS = ("type", "sender", "content", "ts")

# KEYS: stream, the batch's outcome marker. ARGV: marker lifetime (s), then
# 4 per message (type, sender, content, ts). XADD each, record their ids in
# the marker, return them; nothing (nil) when the token was already resolved
# as not stored (this call arrived late).
APPEND_SCRIPT = RedisScript("""
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local ids = {}
for i = 2, #ARGV, 4 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'type', ARGV[i], 'sender', ARGV[i + 1],
                             'content', ARGV[i + 2], 'ts', ARGV[i + 3])
end
redis.call('SET', KEYS[2], table.concat(ids, ' '), 'EX', ARGV[1])
return ids
""")

# KEYS: an outcome marker. ARGV: marker lifetime (s). The ids it recorded
# (written again: a write on this connection that a WAIT can wait for), or
# '-' (and the marker set to '-', so the append can never land later).
OUTCOME_SCRIPT = RedisScript("""
local ids = redis.call('GET', KEYS[1])
if ids then
  redis.call('SET', KEYS[1], ids, 'EX', ARGV[1])
  return ids
end
redis.call('SET', KEYS[1], '-', 'EX', ARGV[1])
return '-'
""")

# KEYS: stream, dead-letter stream. ARGV: group, entries kept (about), then
# id, reason for each. Copies each entry there, raw, and acknowledges it.
DEAD_LETTER_SCRIPT = RedisScript("""
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local fields = {'_id', id, '_reason', ARGV[i + 1]}
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if #entry == 1 then
    for _, value in ipairs(entry[1][2]) do fields[#fields + 1] = value end
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
  redis.call('XACK', KEYS[1], ARGV[1], id)
end
return (#ARGV - 2) / 2
""")

# Trim what is archived down to the newest ``retain`` entries, never past the
# oldest entry the group has pending or not yet delivered; record the newest
# id removed. KEYS: stream, marker. ARGV: group, retain.
TRIM_SCRIPT = RedisScript("""
local stream, marker = KEYS[1], KEYS[2]
local group, retain = ARGV[1], tonumber(ARGV[2])
local function parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function older(a, b)
  local ams, aseq = parts(a)
  local bms, bseq = parts(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
if redis.call('EXISTS', stream) == 0 then return 0 end
local window = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', retain + 1)
if #window <= retain then return 0 end
local boundary = nil
if retain > 0 then boundary = window[retain][1] end
local delivered = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, last = nil, nil
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == group then delivered = last end
end
if not delivered then return 0 end
if boundary == nil or older(delivered, boundary) then boundary = delivered end
local pending = redis.call('XPENDING', stream, group)
if pending[1] > 0 and older(pending[2], boundary) then boundary = pending[2] end
if boundary == '0-0' then return 0 end
local gone = redis.call('XREVRANGE', stream, '(' .. boundary, '-', 'COUNT', 1)
if #gone == 0 then return 0 end
local trimmed = redis.call('XTRIM', stream, 'MINID', boundary)
local previous = redis.call('GET', marker)
if (not previous) or older(previous, gone[1][1]) then redis.call('SET', marker, gone[1][1]) end
return trimmed
""")


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(flat[::2], flat[1::2]))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Undecodable(Exception):
    """A stream entry that is not a message this node knows; the text says
    why, without any of the entry's values."""


def decode_entry(entry: Sequence[Any]) -> ChatMessage:
    """A stream entry ``[id, [field, value, ...]]`` as a ChatMessage."""
    entry_id, fields = _text(entry[0]), entry[1]
    values = {_text(k): _text(v) for k, v in _pairs(fields or []).items()}
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise Undecodable("missing field " + ",".join(missing))
    try:
        type_ = MessageType(values["type"])
    except ValueError:
        raise Undecodable("unknown type") from None
    try:
        created_ms = int(values["ts"])
    except ValueError:
        raise Undecodable("bad ts") from None
    try:
        return ChatMessage(type=type_, sender=values["sender"], content=values["content"],
                           created_ms=created_ms, id=entry_id)
    except ValueError:
        raise Undecodable("invalid message") from None


@implementer(IMessageBuffer)
class RedisStreamBuffer:
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        *,
        retain: int = 1000,
        claim_idle: float = 30.0,
        key_prefix: str = "anonchat:",
        node_id: str | None = None,
        command_timeout: float = 5.0,
        block_ms: int = 1000,
        read_count: int = 500,
        trim_interval: float = 2.0,
        outcome_ttl: float = 60.0,
        dead_letter_max: int = 10_000,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        if retain < 0 or trim_interval < 0 or wait_replicas < 0:
            raise ValueError("retain, trim_interval and wait_replicas must not be negative")
        if wait_timeout_ms <= 0:
            raise ValueError("wait_timeout_ms must be positive (WAIT 0 blocks for ever)")
        if outcome_ttl <= command_timeout:
            raise ValueError("outcome_ttl must be longer than command_timeout")
        self._reactor = reactor
        self._address = parse_redis_url(url)
        self._retain = retain
        self._claim_idle_ms = max(int(claim_idle * 1000), 0)
        self._stream = key_prefix + "messages"
        self._marker = key_prefix + "trimmed"
        self._dead_letters = key_prefix + "deadletter"
        self._consumer = node_id or uuid.uuid4().hex
        # unique to this process even when node ids are reused by restarts
        self._outcome_prefix = f"{key_prefix}append:{self._consumer}:{uuid.uuid4().hex[:12]}:"
        self._tokens = itertools.count(1)
        self._outcome_ttl = outcome_ttl
        self._dead_letter_max = dead_letter_max
        self._trim_interval = trim_interval
        self._last_trim: float | None = None
        self._trim_call: IDelayedCall | None = None
        #: For metrics: entries set aside in the dead-letter stream by this node.
        self.dead_lettered = 0
        self._timeout = command_timeout
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._block_ms = block_ms
        self._read_count = read_count
        self._listeners: list[FeedListener] = []
        self._commands: Any = None
        #: History reads (recent, pages, replays) on a connection of their
        #: own: their large replies never queue ahead of an append, a claim
        #: or an acknowledge (txredisapi answers one connection in order).
        self._reads: Any = None
        self._feed_connection: Any = None
        self._running = False
        self._last_id = "0-0"
        self._feed_call: Deferred[Any] | None = None
        self._feed_done: Deferred[None] | None = None
        self._appends: TurnBatcher[list[bytes], Any] = TurnBatcher(reactor, self._send_appends, APPEND_BATCH)

    # -- connections ----------------------------------------------------------

    def _connect(self, reply_timeout: float) -> Any:
        return connect(self._reactor, self._address, reply_timeout=reply_timeout, connect_timeout=self._timeout)

    def _call(self, factory: Any, timeout: float, *args: Any) -> Deferred[Any]:
        if not self._running or factory is None:
            return fail(BufferUnavailable("the Redis buffer is not running"))
        if not is_connected(factory):
            # and /healthz answers at once instead of after the timeout
            return fail(BufferUnavailable("not connected to Redis"))
        try:
            d: Deferred[Any] = factory.handler.execute_command(*args)
        except Exception as e:
            return fail(BufferUnavailable(str(e)))
        d.addTimeout(timeout + TIMEOUT_GRACE, self._reactor)
        return d

    def _command(self, *args: Any) -> Deferred[Any]:
        return self._call(self._commands, self._timeout, *args)

    def _read(self, *args: Any) -> Deferred[Any]:
        return self._call(self._reads, self._timeout, *args)

    def _script(self, script: RedisScript, keys: Sequence[Any], args: Sequence[Any] = ()) -> Deferred[Any]:
        return script.run(self._command, keys, args)

    def _public(self, name: str, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run one public operation; every failure becomes BufferUnavailable."""
        return guarded(self.log, name, work, BufferUnavailable, (AppendOutcomeUnknown,))

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Deferred[None]:
        return self._public("start", self._start)

    async def _start(self) -> None:
        if self._running:
            return
        self._running = True
        self._commands = self._connect(self._timeout)
        self._reads = self._connect(self._timeout)
        self._feed_connection = self._connect(self._block_ms / 1000 + self._timeout)
        try:
            for factory in (self._commands, self._reads, self._feed_connection):
                await wait_connected(self._reactor, factory, self._timeout)
            await self._ensure_group()
            info = _pairs(await self._command("XINFO", "STREAM", self._stream))
            self._last_id = _text(info["last-generated-id"])
            await self._call(self._feed_connection, self._timeout, "PING")
        except BaseException:
            await self._close()
            raise
        self._feed_done = Deferred.fromCoroutine(self._feed())
        self.log.info(
            "Redis buffer started: stream {stream}, consumer {consumer}, feed after {last_id}",
            stream=self._stream, consumer=self._consumer, last_id=self._last_id,
        )

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._trim_call is not None and self._trim_call.active():
            self._trim_call.cancel()
        self._trim_call = None
        if self._feed_call is not None:
            self._feed_call.cancel()
        if self._feed_done is not None:
            await self._feed_done
            self._feed_done = None
        await self._close()

    async def _close(self) -> None:
        self._running = False
        factories = [f for f in (self._commands, self._reads, self._feed_connection) if f is not None]
        self._commands = self._reads = self._feed_connection = None
        await DeferredList([f.disconnect() for f in factories], consumeErrors=True)
        # txredisapi hands new connections over with callLater(0, ...)
        await deferLater(self._reactor, 0, lambda: None)

    async def _ensure_group(self) -> None:
        try:
            await self._command("XGROUP", "CREATE", self._stream, GROUP, "0", "MKSTREAM")
        except txredisapi.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def _group_command(self, *args: Any) -> Any:
        """A group command; the group is created again if Redis lost it
        (restarted without persistence)."""
        try:
            return await self._command(*args)
        except txredisapi.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
        self.log.warn("Redis consumer group {group} was missing, creating it", group=GROUP)
        await self._ensure_group()
        return await self._command(*args)

    # -- the ordered feed -----------------------------------------------------

    def add_listener(self, listener: FeedListener) -> None:
        self._listeners.append(listener)

    async def _feed(self) -> None:
        backoff = 0.0
        while self._running:
            try:
                self._feed_call = self._call(
                    self._feed_connection, self._block_ms / 1000 + self._timeout,
                    "XREAD", "BLOCK", self._block_ms, "COUNT", self._read_count, "STREAMS", self._stream, self._last_id,
                )
                reply = await self._feed_call
            except Exception as e:
                if not self._running:
                    break
                backoff = min(max(backoff * 2, 0.1), FEED_BACKOFF_MAX)
                self.log.warn(
                    "Redis feed read failed ({error}), retrying in {delay}s after {last_id}",
                    error=type(e).__name__, delay=backoff, last_id=self._last_id,
                )
                self._feed_call = deferLater(self._reactor, backoff, lambda: None)
                try:
                    await self._feed_call
                except CancelledError:
                    break
                continue
            finally:
                self._feed_call = None
            backoff = 0.0
            entries = reply[0][1] if reply else []
            if not entries:
                continue
            self._last_id = _text(entries[-1][0])
            batch = self._messages(entries, report=True)
            if batch:
                self._deliver(batch)

    def _deliver(self, batch: list[ChatMessage]) -> None:
        for listener in list(self._listeners):
            try:
                listener(batch)
            except Exception:
                self.log.failure("feed listener {listener!r} failed", listener=listener)

    def _messages(self, entries: Sequence[Any], *, report: bool = False) -> list[ChatMessage]:
        """The entries this node can decode; the others are skipped (the
        feed says so once per entry, with ``report``)."""
        messages = []
        for entry in entries:
            if not entry[1]:
                continue  # deleted from the stream, still pending in the group
            try:
                messages.append(decode_entry(entry))
            except Undecodable as e:
                if report:
                    self.log.warn("feed skips stream entry {entry_id} this node cannot decode: {reason}",
                                  entry_id=_text(entry[0]), reason=str(e))
        return messages

    # -- appending and reading ------------------------------------------------

    def append(self, message: ChatMessage) -> Deferred[ChatMessage]:
        if not self._running:
            return fail(BufferUnavailable("the Redis buffer is not running"))
        try:
            fields = [message.type.value.encode(), message.sender.encode("utf-8"),
                      message.content.encode("utf-8"), str(message.created_ms).encode()]
        except UnicodeEncodeError:
            return fail(ValueError("the message cannot be encoded as UTF-8"))
        appended: Deferred[Any] = self._appends.add(fields)
        return appended.addCallback(lambda message_id: message.with_id(_text(message_id)))

    def _send_appends(self, batch: list[list[bytes]]) -> Deferred[Sequence[Any]]:
        """Everything appended this turn, in order: one script, the ids back."""
        args: list[Any] = [field for fields in batch for field in fields]
        return self._public("append", lambda: self._append_batch(args))

    async def _append_batch(self, fields: list[Any]) -> Sequence[Any]:
        marker = self._outcome_prefix + str(next(self._tokens))
        lifetime = math.ceil(self._outcome_ttl)
        sent_at = self._reactor.seconds()
        connection = self._connection()
        try:
            ids = await self._script(APPEND_SCRIPT, [self._stream, marker], [lifetime, *fields])
        except (BufferUnavailable, txredisapi.ResponseError, txredisapi.InvalidData):
            raise  # never sent, or Redis refused it: certainly not stored
        except Exception as e:
            self.log.warn("Redis append answer lost ({error}); finding out whether it was stored",
                          error=type(e).__name__)
            ids, connection = await self._outcome(marker, sent_at)
            self.log.info("lost Redis append answer: {outcome}", outcome="stored" if ids else "not stored")
        if not ids:
            raise BufferUnavailable("Redis append not stored")
        if self._wait_replicas:
            await self._replicated(connection)
        return list(ids)

    def _connection(self) -> Any:
        """The connection a command made now goes over (a pool of one)."""
        pool = self._commands.pool if self._commands is not None else []
        return pool[0] if pool else None

    async def _replicated(self, connection: Any) -> None:
        """``WAIT`` on ``connection``, which carried this batch's write;
        AppendOutcomeUnknown unless enough replicas acknowledge it in time."""
        if connection is None or not connection.connected or connection is not self._connection():
            # a WAIT on a new connection would count none of our writes
            raise AppendOutcomeUnknown("stored on the Redis master; its connection was lost before WAIT")
        try:
            waited: Deferred[Any] = connection.execute_command(
                "WAIT", self._wait_replicas, self._wait_timeout_ms, apply_timeout=False)
            acked = int(await waited.addTimeout(self._wait_timeout_ms / 1000 + self._timeout, self._reactor))
        except Exception as e:
            self.log.warn("Redis WAIT failed ({error}); the batch is on the master only", error=type(e).__name__)
            raise AppendOutcomeUnknown("stored on the Redis master; no answer from WAIT") from None
        if acked < self._wait_replicas:
            self.log.warn("Redis WAIT: {acked} of {wanted} replicas hold the batch after {ms} ms",
                          acked=acked, wanted=self._wait_replicas, ms=self._wait_timeout_ms)
            raise AppendOutcomeUnknown(f"stored on the Redis master; {acked} of {self._wait_replicas} replicas")

    async def _outcome(self, marker: str, sent_at: float) -> tuple[list[str] | None, Any]:
        """The ids a lost append stored, or None when it certainly stored
        nothing (and now never will), with the connection that found out;
        AppendOutcomeUnknown when Redis did not answer within
        ``outcome_ttl`` of the append being sent."""
        trusted_until = sent_at + self._outcome_ttl
        delay = 0.05
        while self._running and self._reactor.seconds() < trusted_until:
            connection = self._connection()
            try:
                reply = _text(await self._script(OUTCOME_SCRIPT, [marker], [math.ceil(self._outcome_ttl)]))
            except Exception:
                await deferLater(self._reactor, delay, lambda: None)
                delay = min(delay * 2, OUTCOME_BACKOFF_MAX)
                continue
            if reply != "-":
                return reply.split(" "), connection
            if self._reactor.seconds() < trusted_until:
                return None, connection
            break
        self.log.warn("outcome of a Redis append unknown after {seconds}s", seconds=self._outcome_ttl)
        raise AppendOutcomeUnknown("the append may or may not be stored")

    def recent(self, limit: int) -> Deferred[list[ChatMessage]]:
        return self.read_before(None, limit)

    def read_before(self, before_id: str | None, limit: int) -> Deferred[list[ChatMessage]]:
        async def work() -> list[ChatMessage]:
            if limit <= 0:
                return []
            end = "+"
            if before_id is not None:
                if id_key(before_id) == (0, 0):
                    return []
                end = "(" + before_id
            entries = await self._read("XREVRANGE", self._stream, end, "-", "COUNT", limit)
            return self._messages(list(reversed(entries)))

        return self._public("read_before", work)

    def read_after(self, after_id: str, limit: int) -> Deferred[list[ChatMessage] | None]:
        async def work() -> list[ChatMessage] | None:
            after = id_key(after_id)
            # range first, marker second (same connection, in order): a trim
            # in between makes the answer None rather than a silent gap
            entries = self._read("XRANGE", self._stream, "(" + after_id, "+", "COUNT", max(limit, 1))
            marker = self._read("GET", self._marker)
            entries_reply, marker_reply = await entries, await marker
            if marker_reply is not None and after < id_key(_text(marker_reply)):
                return None
            return self._messages(entries_reply)[: max(limit, 0)]

        return self._public("read_after", work)

    def trim_point(self) -> Deferred[str | None]:
        async def work() -> str | None:
            marker = await self._command("GET", self._marker)
            return None if marker is None else _text(marker)

        return self._public("trim_point", work)

    # -- archiving ------------------------------------------------------------

    def claim_batch(self, limit: int) -> Deferred[list[ChatMessage]]:
        return self._public("claim_batch", lambda: self._claim(limit))

    async def _claim(self, limit: int) -> list[ChatMessage]:
        if limit <= 0:
            return []
        # take over what dead consumers left idle, then (re-)read all our own
        # pending entries, oldest first, then new ones
        await self._group_command(
            "XAUTOCLAIM", self._stream, GROUP, self._consumer, self._claim_idle_ms, "0-0", "COUNT", limit, "JUSTID"
        )
        own = await self._group_command(
            "XREADGROUP", "GROUP", GROUP, self._consumer, "COUNT", limit, "STREAMS", self._stream, "0"
        )
        entries = list(own[0][1]) if own else []
        deleted = [_text(e[0]) for e in entries if not e[1]]
        if deleted:
            # pending but no longer in the stream: nothing left to archive
            await self._command("XACK", self._stream, GROUP, *deleted)
        batch = await self._archivable(entries)
        if len(entries) < limit:
            new = await self._group_command(
                "XREADGROUP", "GROUP", GROUP, self._consumer, "COUNT", limit - len(entries),
                "STREAMS", self._stream, ">",
            )
            batch.extend(await self._archivable(new[0][1] if new else []))
        return batch

    async def _archivable(self, entries: Sequence[Any]) -> list[ChatMessage]:
        """The claimed entries as messages; those this node cannot decode
        are dead-lettered and acknowledged, so they never block trimming."""
        messages: list[ChatMessage] = []
        undecodable: list[str] = []
        for entry in entries:
            if not entry[1]:
                continue
            try:
                messages.append(decode_entry(entry))
            except Undecodable as e:
                undecodable += [_text(entry[0]), str(e)]
        if undecodable:
            await self._script(DEAD_LETTER_SCRIPT, [self._stream, self._dead_letters],
                               [GROUP, self._dead_letter_max, *undecodable])
            self.dead_lettered += len(undecodable) // 2
            for entry_id, reason in zip(undecodable[::2], undecodable[1::2]):
                self.log.warn("stream entry {entry_id} dead-lettered to {stream}: {reason}",
                              entry_id=entry_id, stream=self._dead_letters, reason=reason)
        return messages

    def acknowledge(self, message_ids: Sequence[str]) -> Deferred[None]:
        async def work() -> None:
            ids = list(message_ids)
            acks = []
            for start in range(0, len(ids), 1000):
                acks.append(self._command("XACK", self._stream, GROUP, *ids[start : start + 1000]))
            trim = self._trim() if self._trim_due() else None
            for ack in acks:
                try:
                    await ack
                except txredisapi.ResponseError as e:
                    if "NOGROUP" not in str(e):
                        raise
            if trim is not None:
                await trim

        return self._public("acknowledge", work)

    def _trim_due(self) -> bool:
        """Whether to trim now; if not, make sure a trim runs once the
        interval since the last one is up."""
        now = self._reactor.seconds()
        if self._last_trim is None or now - self._last_trim >= self._trim_interval:
            return True
        if self._trim_call is None or not self._trim_call.active():
            self._trim_call = self._reactor.callLater(self._last_trim + self._trim_interval - now, self._trim_later)
        return False

    def _trim_later(self) -> None:
        self._trim_call = None
        if self._running:
            # a failure is logged by _public; the next acknowledge trims again
            self._public("trim", self._trim).addErrback(lambda _: None)

    def _trim(self) -> Deferred[Any]:
        self._last_trim = self._reactor.seconds()
        d = self._script(TRIM_SCRIPT, [self._stream, self._marker], [GROUP, self._retain])

        def trimmed(count: Any) -> None:
            if count:
                self.log.debug("trimmed {count} archived entries", count=count)

        return d.addCallback(trimmed)

    def backlog(self) -> Deferred[int]:
        async def work() -> int:
            try:
                groups = await self._command("XINFO", "GROUPS", self._stream)
            except txredisapi.ResponseError as e:
                if "no such key" in str(e).lower():
                    return 0
                raise
            for group in groups:
                info = _pairs(group)
                if _text(info.get("name")) != GROUP:
                    continue
                if info.get("lag") is not None:
                    return int(info["pending"]) + int(info["lag"])
                undelivered = await self._command(
                    "XRANGE", self._stream, "(" + _text(info["last-delivered-id"]), "+"
                )
                return int(info["pending"]) + len(undelivered)
            # no group (Redis lost it): it will be created at 0, all is backlog
            return int(await self._command("XLEN", self._stream))

        return self._public("backlog", work)

    def ping(self) -> Deferred[bool]:
        async def work() -> bool:
            try:
                return _text(await self._command("PING")) == "PONG"
            except Exception:
                return False

        return Deferred.fromCoroutine(work())
