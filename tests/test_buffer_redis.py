"""The Redis Streams buffer against a real Redis: the contract, and what only
Redis has (two nodes, reclaiming a dead node's batch, restarts, timeouts).

The contract runs on the shared server (``tests/services.py``: its own db,
flushed in setUp); the failure tests start a private ``redis-server`` on a
free port, without persistence, and kill it in cleanup.
"""

from __future__ import annotations

from typing import Any, Callable

import txredisapi
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial import unittest

from anonchat.chat.message import ChatMessage, id_key
from anonchat.chat.ports import BufferUnavailable
from anonchat.store.redis_buffer import RedisAddress, RedisStreamBuffer, parse_redis_url
from tests.buffer_contract import Recorder, SharedBufferContractMixin, _TestCase, chat
from tests.faultproxy import FaultProxy
from tests.privateredis import PrivateRedis
from tests.serverprocess import free_port
from tests.services import require_redis

reactor: Any = _reactor


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def poll(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            return False
        await sleep(0.01)
    return True


async def raw_connection(address: RedisAddress) -> Any:
    return await txredisapi.Connection(
        address.host, address.port, dbid=address.db, password=address.password,
        reconnect=False, convertNumbers=False, connectTimeout=2,
    )


class RedisTestMixin(_TestCase):
    def new_buffer(self, url: str, **kwargs: Any) -> RedisStreamBuffer:
        buffer = RedisStreamBuffer(reactor, url, **kwargs)
        self.addCleanup(buffer.stop)
        return buffer

    async def eventually(self, check: Callable[[], bool]) -> None:
        if not await poll(check):
            self.fail("condition not reached in time")


class RedisStreamBufferContractTests(RedisTestMixin, SharedBufferContractMixin, unittest.TestCase):

    async def setUp(self) -> None:  # type: ignore[override]
        self.url = require_redis()
        redis = await raw_connection(parse_redis_url(self.url))
        await redis.flushdb()
        await redis.disconnect()

    async def make_buffer(self, retain: int = 1000) -> RedisStreamBuffer:  # type: ignore[override]
        # trimming at every acknowledge, as the contract reads; the
        # throttled default is pinned in RedisStreamBufferTests
        buffer = self.new_buffer(self.url, retain=retain, block_ms=200, trim_interval=0)
        await buffer.start()
        return buffer


class RedisUrlTests(unittest.TestCase):
    def test_plain(self) -> None:
        self.assertEqual(
            parse_redis_url("redis://127.0.0.1:6380/13"),
            RedisAddress(host="127.0.0.1", port=6380, db=13, password=None, tls=False),
        )

    def test_defaults(self) -> None:
        self.assertEqual(
            parse_redis_url("redis://cache"),
            RedisAddress(host="cache", port=6379, db=0, password=None, tls=False),
        )

    def test_password_and_tls(self) -> None:
        self.assertEqual(
            parse_redis_url("rediss://:s3cr%40t@redis.example.com:6390/2"),
            RedisAddress(host="redis.example.com", port=6390, db=2, password="s3cr@t", tls=True),
        )

    def test_user_and_password(self) -> None:
        address = parse_redis_url("redis://app:pw@h/1")
        self.assertEqual((address.username, address.password), ("app", "pw"))

    def test_rejects_other_schemes_and_bad_db(self) -> None:
        self.assertRaises(ValueError, parse_redis_url, "http://h:6379/0")
        self.assertRaises(ValueError, parse_redis_url, "redis://h:6379/x")

    def test_repr_hides_the_password(self) -> None:
        self.assertNotIn("s3cret", repr(parse_redis_url("redis://:s3cret@h/0")))


class RedisStreamBufferTests(RedisTestMixin, unittest.TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.url = require_redis()
        self.address = parse_redis_url(self.url)
        redis = await raw_connection(self.address)
        await redis.flushdb()
        await redis.disconnect()

    async def started(self, **kwargs: Any) -> RedisStreamBuffer:
        kwargs.setdefault("block_ms", 200)
        kwargs.setdefault("trim_interval", 0)
        buffer = self.new_buffer(self.url, **kwargs)
        await buffer.start()
        return buffer

    async def redis(self) -> Any:
        redis = await raw_connection(self.address)
        self.addCleanup(redis.disconnect)
        return redis

    async def test_key_layout_is_one_stream_with_an_archiver_group(self) -> None:
        buffer = await self.started()
        stored = await buffer.append(chat("안녕"))
        redis = await self.redis()
        self.assertEqual(await redis.execute_command("TYPE", "anonchat:messages"), "stream")
        groups = await redis.execute_command("XINFO", "GROUPS", "anonchat:messages")
        self.assertEqual(dict(zip(groups[0][::2], groups[0][1::2]))["name"], "archiver")
        [[entry_id, fields]] = await redis.execute_command("XRANGE", "anonchat:messages", "-", "+")
        self.assertEqual(entry_id, stored.id)
        self.assertEqual(
            fields, ["type", "CHAT", "sender", stored.sender, "content", "안녕", "ts", str(stored.created_ms)]
        )

    async def test_key_prefix_is_configurable(self) -> None:
        buffer = await self.started(key_prefix="other:")
        await buffer.append(chat())
        redis = await self.redis()
        self.assertEqual(await redis.execute_command("XLEN", "other:messages"), 1)
        self.assertEqual(await redis.execute_command("EXISTS", "anonchat:messages"), 0)

    async def test_feed_starts_after_what_is_already_in_the_stream(self) -> None:
        first = await self.started()
        old = await first.append(chat("before the second node started"))
        second = await self.started()
        recorder = Recorder()
        second.add_listener(recorder)
        new = await first.append(chat("after"))
        await self.eventually(lambda: len(recorder.messages) >= 1)
        await sleep(0.05)
        self.assertEqual(recorder.messages, [new])
        self.assertNotIn(old, recorder.messages)

    async def test_a_new_group_archives_entries_already_in_the_stream(self) -> None:
        redis = await self.redis()
        entry_id = await redis.execute_command(
            "XADD", "anonchat:messages", "*", "type", "CHAT", "sender", "익명-1", "content", "🙂", "ts", "5"
        )
        buffer = await self.started()
        [claimed] = await buffer.claim_batch(10)
        self.assertEqual(claimed.id, entry_id)
        self.assertEqual((claimed.content, claimed.created_ms), ("🙂", 5))

    async def test_dead_nodes_batch_is_reclaimed_after_claim_idle(self) -> None:
        dead = await self.started(node_id="node-a", claim_idle=0.3)
        alive = await self.started(node_id="node-b", claim_idle=0.3)
        stored = await self.append_many(alive, 5)
        self.assertEqual(await dead.claim_batch(3), stored[:3])
        await dead.stop()
        # not idle long enough: only what nobody claimed yet
        self.assertEqual(await alive.claim_batch(10), stored[3:])
        await sleep(0.4)
        self.assertEqual(await alive.claim_batch(10), stored)
        await alive.acknowledge([m.id for m in stored])
        self.assertEqual(await alive.backlog(), 0)
        self.assertEqual(await alive.claim_batch(10), [])

    async def test_a_restarted_node_with_the_same_id_gets_its_batch_back_at_once(self) -> None:
        before = await self.started(node_id="node-a", claim_idle=60)
        stored = await self.append_many(before, 3)
        self.assertEqual(await before.claim_batch(10), stored)
        await before.stop()
        after = await self.started(node_id="node-a", claim_idle=60)
        self.assertEqual(await after.claim_batch(10), stored)

    async def test_trimming_keeps_what_another_node_has_not_acknowledged(self) -> None:
        a = await self.started(node_id="node-a", retain=1)
        b = await self.started(node_id="node-b", retain=1)
        stored = await self.append_many(a, 6)
        self.assertEqual(await a.claim_batch(2), stored[:2])
        self.assertEqual(await b.claim_batch(2), stored[2:4])
        await b.acknowledge([m.id for m in stored[2:4]])
        self.assertEqual(await a.read_before(None, 100), stored)
        await a.acknowledge([m.id for m in stored[:2]])
        self.assertEqual(await a.read_before(None, 100), stored[3:])
        self.assertIsNone(await a.read_after(stored[1].id, 10))
        self.assertEqual(await a.read_after(stored[2].id, 10), stored[3:])

    async def test_trim_runs_at_once_then_at_most_once_per_interval(self) -> None:
        buffer = await self.started(retain=2, trim_interval=0.5)
        redis = await self.redis()
        stored = await self.append_many(buffer, 10)
        ids = [m.id for m in stored]
        await buffer.claim_batch(100)
        await buffer.acknowledge(ids[:4])
        # the first trim runs with the acknowledge: ids[4:] are not archived
        self.assertEqual(await redis.execute_command("XLEN", "anonchat:messages"), 6)
        acknowledged_at = reactor.seconds()
        await buffer.acknowledge(ids[4:8])
        # the next waits for the interval: Redis reads retain + 1 entries per trim
        self.assertEqual(await redis.execute_command("XLEN", "anonchat:messages"), 6)
        while await redis.execute_command("XLEN", "anonchat:messages") != 2:
            self.assertLess(reactor.seconds() - acknowledged_at, 1.5, "no trim within the interval")
            await sleep(0.02)
        self.assertGreater(reactor.seconds() - acknowledged_at, 0.4)
        self.assertEqual(await buffer.read_before(None, 100), stored[8:])
        self.assertEqual(await buffer.trim_point(), ids[7])

    async def test_an_entry_this_node_cannot_decode_is_dead_lettered_and_acknowledged(self) -> None:
        redis = await self.redis()

        async def raw(*fields: str) -> str:
            return str(await redis.execute_command("XADD", "anonchat:messages", "*", *fields))

        buffer = await self.started(node_id="node-new", retain=1, claim_idle=0)
        fed = Recorder()
        buffer.add_listener(fed)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        good = await buffer.append(chat("before"))
        newer_type = await raw("type", "REACTION", "sender", "익명-1", "content", "secret 🙂", "ts", "5")
        no_ts = await raw("type", "CHAT", "sender", "익명-1", "content", "secret 🙂")
        # the first one was claimed by an older node that left it pending
        await redis.execute_command("XREADGROUP", "GROUP", "archiver", "node-old", "COUNT", 2,
                                    "STREAMS", "anonchat:messages", ">")
        later = await buffer.append(chat("after"))
        await self.eventually(lambda: later in fed.messages)
        self.assertEqual(fed.messages, [good, later])

        self.assertEqual(await buffer.claim_batch(10), [good, later])
        await buffer.acknowledge([good.id, later.id])
        self.assertEqual(await buffer.backlog(), 0)
        self.assertEqual(await buffer.claim_batch(10), [])
        self.assertEqual(buffer.dead_lettered, 2)
        dead = await redis.execute_command("XRANGE", "anonchat:deadletter", "-", "+")
        kept = [dict(zip(fields[::2], fields[1::2])) for _, fields in dead]
        self.assertEqual([k["_id"] for k in kept], [newer_type, no_ts])
        self.assertEqual((kept[0]["type"], kept[0]["content"], kept[1].get("ts")), ("REACTION", "secret 🙂", None))
        # trimming goes on past them
        self.assertEqual(await redis.execute_command("XLEN", "anonchat:messages"), 1)
        lines = [formatEvent(e) for e in events]
        self.assertEqual(sum(1 for line in lines if "dead-letter" in line), 2, lines)
        self.assertFalse([line for line in lines if "secret" in line])

    async def test_stop_ends_a_blocked_feed_promptly(self) -> None:
        buffer = await self.started(block_ms=10_000)
        await sleep(0.05)
        began = reactor.seconds()
        await buffer.stop()
        self.assertLess(reactor.seconds() - began, 1.0)

    async def append_many(self, buffer: RedisStreamBuffer, count: int) -> list[ChatMessage]:
        results = await DeferredList(
            [buffer.append(chat(f"m{i}")) for i in range(count)], fireOnOneErrback=True, consumeErrors=True
        )
        return [m for _ok, m in results]


class RedisFailureTests(RedisTestMixin, unittest.TestCase):
    async def private(self, *extra: str) -> PrivateRedis:
        server = PrivateRedis(self, *extra)
        await server.start()
        return server

    async def test_restart_fails_in_flight_appends_then_recovers_without_gap_or_duplicate(self) -> None:
        server = await self.private()
        buffer = self.new_buffer(f"redis://127.0.0.1:{server.port}/1", command_timeout=1.0, block_ms=100)
        await buffer.start()
        recorder = Recorder()
        buffer.add_listener(recorder)
        before = [await buffer.append(chat(f"before {i}")) for i in range(5)]
        await self.eventually(lambda: len(recorder.messages) >= 5)

        # appends keep coming, a few per reactor turn, while the server is
        # killed and started again: each one either succeeds or fails with
        # BufferUnavailable, none hangs
        in_flight: list[Deferred[ChatMessage]] = []

        async def keep_appending() -> None:
            for i in range(60):
                for j in range(3):
                    in_flight.append(buffer.append(chat(f"in flight {i}.{j}")))
                await sleep(0.005)

        appending = Deferred.fromCoroutine(keep_appending())
        await sleep(0.05)
        # these are written but not answered when the server dies: it is
        # paused first, so they cannot be answered before the kill
        server.pause()
        in_flight.extend(buffer.append(chat(f"lost {i}")) for i in range(20))
        await sleep(0.05)
        server.crash()
        await sleep(0.05)
        await server.start()
        await appending
        outcomes = await DeferredList(in_flight, consumeErrors=True)
        for ok, value in outcomes:
            if not ok:
                value.trap(BufferUnavailable)  # type: ignore[union-attr,attr-defined]
        succeeded = sum(ok for ok, _ in outcomes)
        self.assertTrue(0 < succeeded < len(outcomes), (succeeded, len(outcomes)))

        began = reactor.seconds()
        while True:
            try:
                first_after = await buffer.append(chat("first after restart"))
                break
            except BufferUnavailable:
                self.assertLess(reactor.seconds() - began, 10, "no reconnection")
                await sleep(0.1)
        after = [first_after] + [await buffer.append(chat(f"after {i}")) for i in range(5)]
        await self.eventually(lambda: all(m in recorder.messages for m in after))

        seen = recorder.ids
        self.assertEqual(len(seen), len(set(seen)))
        self.assertStrictlyIncreasing(seen)
        self.assertEqual(recorder.messages[:5], before)
        self.assertEqual(recorder.messages[-len(after):], after)
        # whatever the restarted server holds (it lost the rest: no persistence)
        # was acknowledged to its sender, is in the feed, and is all backlog
        # for the flusher, although the consumer group went with the data
        succeeded_ids = {m.id for ok, m in outcomes if ok} | {m.id for m in before + after}
        held = await buffer.recent(1000)
        self.assertTrue({m.id for m in after} <= {m.id for m in held})
        for message in held:
            self.assertIn(message.id, succeeded_ids)
            self.assertIn(message, recorder.messages)
        self.assertEqual(await buffer.claim_batch(1000), held)
        self.assertTrue(await buffer.ping())

    async def test_a_server_that_does_not_answer_fails_new_calls_and_holds_an_append_in_doubt(self) -> None:
        server = await self.private()
        buffer = self.new_buffer(f"redis://127.0.0.1:{server.port}/1", command_timeout=0.5, block_ms=100)
        await buffer.start()
        await buffer.append(chat("before"))
        server.pause()
        self.addCleanup(server.resume)
        # written to the paused server: whether it is stored is unknown until
        # Redis answers again, so it is not answered either way meanwhile
        in_doubt = buffer.append(chat("into the void"))
        await sleep(1.0)
        self.assertFalse(in_doubt.called)
        began = reactor.seconds()
        self.assertFalse(await buffer.ping())
        await self.assertFailure(buffer.recent(10), BufferUnavailable)
        await self.assertFailure(buffer.append(chat("not even sent")), BufferUnavailable)
        self.assertLess(reactor.seconds() - began, 1.0)
        # long enough for reconnection attempts to time out against the paused server too
        await sleep(1.5)
        self.assertFalse(await buffer.ping())
        server.resume()
        began = reactor.seconds()
        while not await buffer.ping():
            self.assertLess(reactor.seconds() - began, 10, "no reconnection after SIGCONT")
            await sleep(0.1)
        stored = await buffer.append(chat("back"))
        self.assertEqual((await buffer.recent(1))[0], stored)
        # the one in doubt: its answer matches what the stream holds
        try:
            landed: ChatMessage | None = await in_doubt
        except BufferUnavailable:
            landed = None
        held = [m.id for m in await buffer.recent(10) if m.content == "into the void"]
        self.assertEqual(held, [landed.id] if landed is not None else [])
        self.assertEqual([m.content for m in await buffer.recent(10) if m.content == "not even sent"], [])

    async def proxied(self) -> tuple[RedisStreamBuffer, FaultProxy, Any]:
        """A buffer talking to a private Redis through a fault proxy, one
        message appended, and a direct connection to look at what Redis holds."""
        server = await self.private()
        proxy = FaultProxy(reactor, "127.0.0.1", server.port)
        port = await proxy.start()
        self.addCleanup(proxy.stop)
        buffer = self.new_buffer(f"redis://127.0.0.1:{port}/0", command_timeout=0.5, block_ms=100)
        await buffer.start()
        redis = await raw_connection(parse_redis_url(server.url))
        self.addCleanup(redis.disconnect)
        await buffer.append(chat("before"))
        return buffer, proxy, redis

    async def test_an_append_whose_reply_was_lost_is_found_stored_and_succeeds(self) -> None:
        buffer, proxy, redis = await self.proxied()
        proxy.hold_replies()
        appended = buffer.append(chat("landed"))
        await sleep(1.5)  # past the timeout: the connection was dropped, the outcome unknown
        [_, (entry_id, _)] = await redis.execute_command("XRANGE", "anonchat:messages", "-", "+")
        self.assertFalse(appended.called, "the append was answered before its outcome was known")
        proxy.restore()
        stored = await appended
        self.assertEqual((stored.id, stored.content), (entry_id, "landed"))
        self.assertEqual(await redis.execute_command("XLEN", "anonchat:messages"), 2)

    async def test_an_append_that_failed_is_never_stored_afterwards(self) -> None:
        buffer, proxy, redis = await self.proxied()
        # the request waits in the network; it reaches Redis only when the
        # link comes back, racing the buffer's own question about it
        proxy.blackhole()
        appended = buffer.append(chat("late"))
        await sleep(1.5)
        proxy.restore()
        try:
            stored: ChatMessage | None = await appended
        except BufferUnavailable:
            stored = None
        await sleep(0.5)  # whatever was still on its way has arrived
        entries = await redis.execute_command("XRANGE", "anonchat:messages", "-", "+")
        late = [entry_id for entry_id, fields in entries if "late" in fields]
        self.assertEqual(late, [stored.id] if stored is not None else [])

    async def test_scripts_are_sent_by_sha_and_loaded_again_after_script_flush(self) -> None:
        server = await self.private()
        buffer = self.new_buffer(server.url, command_timeout=1.0, block_ms=100, trim_interval=0, retain=1)
        await buffer.start()
        redis = await raw_connection(parse_redis_url(server.url))
        self.addCleanup(redis.disconnect)
        first = [await buffer.append(chat(f"m{i}")) for i in range(5)]
        await redis.execute_command("SCRIPT", "FLUSH")
        second = [await buffer.append(chat(f"n{i}")) for i in range(5)]
        claimed = await buffer.claim_batch(100)
        self.assertEqual(claimed, first + second)
        await redis.execute_command("SCRIPT", "FLUSH")
        await buffer.acknowledge([m.id for m in claimed])
        self.assertEqual(await buffer.recent(100), second[-1:])
        stats = await redis.execute_command("INFO", "commandstats")
        calls = {line.split(":")[0]: line for line in str(stats).splitlines() if line.startswith("cmdstat_eval")}
        self.assertNotIn("cmdstat_eval", calls, "a script was sent as text")
        self.assertIn("cmdstat_evalsha", calls)

    async def test_start_fails_with_buffer_unavailable_when_nothing_listens(self) -> None:
        buffer = self.new_buffer(f"redis://127.0.0.1:{free_port()}/0", command_timeout=0.3)
        await self.assertFailure(buffer.start(), BufferUnavailable)

    async def test_password_from_the_url(self) -> None:
        server = await self.private("--requirepass", "pa:ss@word")
        buffer = self.new_buffer(f"redis://:pa%3Ass%40word@127.0.0.1:{server.port}/2", command_timeout=1.0)
        await buffer.start()
        stored = await buffer.append(chat())
        self.assertEqual(await buffer.recent(1), [stored])

    def assertStrictlyIncreasing(self, ids: list[str]) -> None:
        keys = [id_key(i) for i in ids]
        self.assertEqual(keys, sorted(set(keys)))

