"""The Redis moderation store: the contract on the shared server (its own db,
flushed in setUp), state shared between nodes, what keeps its keys bounded,
and how it fails while Redis is away (a private ``redis-server``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from anonchat.chat.moderation import BAN, MUTE, Report, Sanction
from anonchat.chat.ports import IModerationStore
from anonchat.store.redis_connection import parse_redis_url
from anonchat.chat.ports import ModerationUnavailable
from anonchat.store.redis_moderation import RedisModerationStore
from tests.faultproxy import FaultProxy
from tests.moderation_contract import NOW, ModerationStoreContractMixin
from tests.privateredis import PrivateRedis
from tests.serverprocess import free_port
from tests.services import require_redis
from tests.test_buffer_redis import raw_connection, reactor, sleep

DAY = 24 * 3600.0


class RedisStoreMixin(unittest.TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.url = require_redis()
        redis = await raw_connection(parse_redis_url(self.url))
        await redis.flushdb()
        await redis.disconnect()

    async def started(self, url: str | None = None, **kwargs: Any) -> RedisModerationStore:
        store = RedisModerationStore(reactor, url or self.url, **kwargs)
        self.addCleanup(store.stop)
        await store.start()
        return store

    async def redis(self) -> Any:
        """A plain connection to the test db, to look at the keys themselves."""
        connection = await raw_connection(parse_redis_url(self.url))
        self.addCleanup(connection.disconnect)
        return connection


class RedisModerationStoreContractTests(RedisStoreMixin, ModerationStoreContractMixin):
    def make_store(self) -> Deferred[IModerationStore]:
        return Deferred.fromCoroutine(self.started())


class RedisModerationStoreTests(RedisStoreMixin):
    async def test_two_stores_on_one_redis_share_every_kind_of_state(self) -> None:
        a, b = await self.started(), await self.started()
        self.assertEqual(await a.client_key(), await b.client_key())
        ban = await a.add_sanction(Sanction(BAN, "c1", NOW, None, "spam", "익명-10000"))
        mute = await b.add_sanction(Sanction(MUTE, "c2", NOW, NOW + 60_000))
        self.assertEqual(await b.sanctions(BAN, NOW), [ban])
        self.assertEqual(await a.sanctions(MUTE, NOW), [mute])
        self.assertNotEqual(ban.id, mute.id)
        await a.set_slow_mode(15)
        self.assertEqual(await b.slow_mode(), 15)
        self.assertTrue(await a.add_report(Report("9-0", "c1", "rude", NOW)))
        self.assertFalse(await b.add_report(Report("9-0", "c1", "again", NOW + 1)))
        self.assertEqual([(s.message_id, s.count) for s in await b.reports()], [("9-0", 1)])
        self.assertTrue(await b.mark_deleted("9-0"))
        self.assertFalse(await a.mark_deleted("9-0"))
        self.assertEqual(await a.deleted_among(["9-0"]), {"9-0"})
        await a.set_name_client("익명-10000", "c1")
        self.assertEqual(await b.name_clients(["익명-10000"]), {"익명-10000": "c1"})
        self.assertEqual(await b.lift_sanction(BAN, ban.id), ban)
        self.assertEqual(await a.sanctions(BAN, NOW), [])

    async def test_every_key_is_under_the_moderation_prefix(self) -> None:
        store = await self.started()
        await store.client_key()
        await store.add_sanction(Sanction(BAN, "c1", NOW, NOW + 1000))
        await store.add_sanction(Sanction(MUTE, "c1", NOW, None))
        await store.set_slow_mode(5)
        await store.add_report(Report("1-0", "c1", "x", NOW))
        await store.mark_deleted("1-0")
        await store.set_name_client("익명-1", "c1")
        keys = await (await self.redis()).keys("*")
        self.assertTrue(keys)
        for key in keys:
            self.assertTrue(key.startswith("anonchat:mod:"), key)

    async def test_expired_sanctions_are_removed_from_redis_not_only_hidden(self) -> None:
        store = await self.started()
        for i in range(5):
            await store.add_sanction(Sanction(MUTE, f"c{i}", NOW, NOW + 1000))
        forever = await store.add_sanction(Sanction(MUTE, "cf", NOW, None))
        # a sanction added after they expired clears them, even if nobody lists
        later = await store.add_sanction(Sanction(MUTE, "c9", NOW + 5000, NOW + 6000))
        redis = await self.redis()
        self.assertEqual(sorted(await redis.hkeys("anonchat:mod:sanctions:mute")), sorted([forever.id, later.id]))
        self.assertEqual(await store.sanctions(MUTE, NOW + 6000), [forever])
        self.assertEqual(await redis.hkeys("anonchat:mod:sanctions:mute"), [forever.id])
        self.assertEqual(await redis.zcard("anonchat:mod:sanctions:mute:expiry"), 0)

    async def test_deleted_ids_are_kept_for_the_retention_then_dropped(self) -> None:
        clock = Clock()
        clock.advance(1_764_000_000)
        store = await self.started(clock=clock, deleted_retention=7 * DAY)
        self.assertTrue(await store.mark_deleted("1-0"))
        clock.advance(7 * DAY - 1)
        self.assertTrue(await store.mark_deleted("2-0"))
        self.assertEqual(await store.deleted_among(["1-0", "2-0"]), {"1-0", "2-0"})
        clock.advance(2)
        self.assertTrue(await store.mark_deleted("3-0"))
        self.assertEqual(await store.deleted_among(["1-0", "2-0", "3-0"]), {"2-0", "3-0"})
        self.assertEqual(await (await self.redis()).zcard("anonchat:mod:deleted"), 2)

    async def test_reported_messages_are_bounded_newest_kept(self) -> None:
        store = await self.started(max_reported=3)
        for i in range(5):
            await store.add_report(Report(f"{i}-0", "c1", "r", NOW + i))
        self.assertEqual([s.message_id for s in await store.reports()], ["4-0", "3-0", "2-0"])
        keys = await (await self.redis()).keys("anonchat:mod:report:*")
        self.assertEqual(len(keys), 3)

    async def test_a_name_mapping_expires_after_its_ttl(self) -> None:
        store = await self.started(name_ttl=0.3)
        await store.set_name_client("익명-1", "c1")
        self.assertEqual(await store.name_clients(["익명-1"]), {"익명-1": "c1"})
        await sleep(0.5)
        self.assertEqual(await store.name_clients(["익명-1"]), {})

    async def test_an_unknown_kind_is_refused(self) -> None:
        store = await self.started()
        await self.assertFailure(store.add_sanction(Sanction("kick", "c1", NOW, None)), ValueError)
        await self.assertFailure(store.sanctions("x:y", NOW), ValueError)

    async def test_the_client_key_survives_a_new_store_and_is_random(self) -> None:
        first = await (await self.started()).client_key()
        self.assertEqual(await (await self.started()).client_key(), first)
        redis = await self.redis()
        await redis.delete("anonchat:mod:client_key")
        self.assertNotEqual(await (await self.started()).client_key(), first)


class RedisModerationFailureTests(unittest.TestCase):
    def store(self, url: str, **kwargs: Any) -> RedisModerationStore:
        store = RedisModerationStore(reactor, url, **kwargs)
        self.addCleanup(store.stop)
        return store

    async def test_start_fails_clearly_when_nothing_listens(self) -> None:
        store = self.store(f"redis://127.0.0.1:{free_port()}/0", command_timeout=0.3)
        began = reactor.seconds()
        await self.assertFailure(store.start(), ModerationUnavailable)
        self.assertLess(reactor.seconds() - began, 2.0)

    async def test_calls_fail_while_redis_is_down_and_work_again_after_it_returns(self) -> None:
        server = PrivateRedis(self)
        await server.start()
        store = self.store(server.url, command_timeout=0.5)
        await store.start()
        await store.set_slow_mode(10)
        server.kill()
        await sleep(0.1)
        began = reactor.seconds()
        calls: list[Deferred[Any]] = [store.slow_mode(), store.sanctions(BAN, NOW), store.mark_deleted("1-0"),
                                      store.add_sanction(Sanction(BAN, "c1", NOW, None)), store.client_key()]
        for call in calls:
            await self.assertFailure(call, ModerationUnavailable)
        self.assertLess(reactor.seconds() - began, 2.0)
        await server.start()
        began = reactor.seconds()
        while True:
            try:
                await store.set_slow_mode(20)
                break
            except ModerationUnavailable:
                self.assertLess(reactor.seconds() - began, 10, "no reconnection")
                await sleep(0.1)
        self.assertEqual(await store.slow_mode(), 20)

    async def test_a_redis_that_stops_answering_times_calls_out(self) -> None:
        server = PrivateRedis(self)
        await server.start()
        proxy = FaultProxy(reactor, "127.0.0.1", server.port)
        port = await proxy.start()
        self.addCleanup(proxy.stop)
        store = self.store(f"redis://127.0.0.1:{port}/0", command_timeout=0.5)
        await store.start()
        self.assertEqual(await store.slow_mode(), 0)
        proxy.blackhole()
        began = reactor.seconds()
        await self.assertFailure(store.reports(), ModerationUnavailable)
        self.assertLess(reactor.seconds() - began, 2.0)
        proxy.restore()

    async def test_calls_after_stop_fail_clearly(self) -> None:
        store = self.store(require_redis())
        await store.start()
        await store.stop()
        await self.assertFailure(store.slow_mode(), ModerationUnavailable)
