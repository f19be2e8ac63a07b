"""Presence and the typing relay across nodes, on real Redis."""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from anonchat.store.redis_connection import parse_redis_url
from anonchat.store.redis_presence import RedisPresence
from anonchat.store.redis_relay import RedisRelay
from tests.privateredis import PrivateRedis
from tests.services import require_redis
from tests.test_buffer_redis import raw_connection


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class PresenceTestCase(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.url = require_redis()
        # A key prefix of our own: no FLUSHDB, so other suites on the db are safe.
        self.prefix = f"anonchat-test-{uuid.uuid4().hex[:8]}:"

    async def node(self, url: str | None = None, **kwargs: Any) -> RedisPresence:
        presence = RedisPresence(reactor, url or self.url, key_prefix=self.prefix, **kwargs)
        await presence.start()
        self.addCleanup(presence.stop)
        self.addCleanup(self.forget_users, presence)
        return presence

    async def forget_users(self, presence: RedisPresence) -> None:
        for name, _ in await presence.online():
            await presence.release(name)



class RedisPresenceTests(PresenceTestCase):
    async def test_a_nickname_is_unique_across_nodes(self) -> None:
        a, b = await self.node(), await self.node()
        self.assertTrue(await a.claim("익명-11111", 1000))
        self.assertFalse(await b.claim("익명-11111", 2000))
        self.assertTrue(await b.claim("익명-22222", 2000))
        self.assertEqual(await a.online(), [("익명-11111", 1000), ("익명-22222", 2000)])
        self.assertEqual(await b.online(), await a.online())

    async def test_a_node_releases_only_its_own_users(self) -> None:
        a, b = await self.node(), await self.node()
        await a.claim("익명-11111", 1)
        await b.release("익명-11111")
        self.assertEqual([n for n, _ in await a.online()], ["익명-11111"])
        await a.release("익명-11111")
        self.assertEqual(await b.online(), [])

    async def test_users_of_a_dead_node_are_reaped_once_by_a_live_one(self) -> None:
        reaped: list[list[str]] = []
        dead = RedisPresence(reactor, self.url, key_prefix=self.prefix, node_ttl=0.3, beat=10)
        await dead.start()
        await dead.claim("익명-33333", 1)
        # The node dies without cleaning up: stop its beat and its connection only.
        dead._beat.stop()
        await dead._connection.disconnect()
        live = await self.node(node_ttl=0.5, beat=0.1)
        live.set_reaped_listener(lambda names: reaped.append(list(names)))
        other = await self.node(node_ttl=0.5, beat=0.1)
        other.set_reaped_listener(lambda names: reaped.append(list(names)))
        await live.claim("익명-44444", 2)
        # a node that just started waits a node-ttl (and the longest
        # reconnection delay, 2 s) before it reaps anyone
        await sleep(3.0)
        self.assertEqual(reaped, [["익명-33333"]])
        self.assertEqual([n for n, _ in await live.online()], ["익명-44444"])

    async def test_each_node_keeps_a_set_of_its_users(self) -> None:
        a = await self.node()
        redis = await raw_connection(parse_redis_url(self.url))
        self.addCleanup(redis.disconnect)
        own = f"{self.prefix}node:{a.node_id}:users"
        await a.claim("익명-66666", 1)
        await a.claim("익명-77777", 2)
        self.assertEqual(sorted(await redis.execute_command("SMEMBERS", own)), ["익명-66666", "익명-77777"])
        self.assertIn(a.node_id, await redis.execute_command("SMEMBERS", f"{self.prefix}nodes"))
        await a.release("익명-66666")
        self.assertEqual(await redis.execute_command("SMEMBERS", own), ["익명-77777"])
        await a.release("익명-77777")

    async def outage_nodes(self, redis: PrivateRedis) -> tuple[RedisPresence, RedisPresence, list[list[str]]]:
        reaped: list[list[str]] = []
        a = await self.node(redis.url, node_ttl=0.6, beat=0.2, command_timeout=0.5)
        b = await self.node(redis.url, node_ttl=0.6, beat=0.2, command_timeout=0.5)
        for node in (a, b):
            node.set_reaped_listener(lambda names: reaped.append(list(names)))
        self.assertTrue(await a.claim("익명-10001", 1))
        self.assertTrue(await a.claim("익명-10002", 2))
        self.assertTrue(await b.claim("익명-20001", 3))
        return a, b, reaped

    async def test_after_an_outage_longer_than_the_node_ttl_nobody_alive_is_reaped(self) -> None:
        redis = PrivateRedis(self, "--appendonly", "yes", "--appendfsync", "always")
        await redis.start()
        a, b, reaped = await self.outage_nodes(redis)
        redis.kill()
        await sleep(1.5)  # every node key expires meanwhile
        await redis.start()
        await sleep(4.0)  # the grace (node-ttl + 2 s of reconnection), and a few beats after it
        self.assertEqual(reaped, [])
        everyone = [("익명-10001", 1), ("익명-10002", 2), ("익명-20001", 3)]
        self.assertEqual((await a.online(), await b.online()), (everyone, everyone))
        self.assertFalse(await b.claim("익명-10001", 4))
        # they leave when they leave, and only then
        await a.release("익명-10001")
        await sleep(0.5)
        self.assertEqual((reaped, await b.online()), ([], everyone[1:]))

    async def test_users_are_registered_again_when_redis_lost_them(self) -> None:
        redis = PrivateRedis(self)  # no persistence: a restart forgets everything
        await redis.start()
        a, b, reaped = await self.outage_nodes(redis)
        redis.kill()
        await sleep(0.3)
        await redis.start()
        everyone = [("익명-10001", 1), ("익명-10002", 2), ("익명-20001", 3)]

        async def listed() -> bool:
            return await a.online() == everyone

        await self.until(listed)
        self.assertEqual(reaped, [])
        self.assertFalse(await b.claim("익명-10002", 4))

    async def test_a_name_taken_while_redis_forgot_it_stays_with_whoever_holds_it(self) -> None:
        redis = PrivateRedis(self)
        await redis.start()
        a, b, reaped = await self.outage_nodes(redis)
        a._beat.stop()  # a re-registers only when told to below
        redis.kill()
        await redis.start()
        await self.until(lambda: b.claim("익명-10001", 9))  # b's new user takes a's name first
        await self.until(lambda: a.claim("익명-30001", 10))  # a is connected again
        await a._heartbeat()
        names = {"익명-10001": 9, "익명-10002": 2, "익명-20001": 3, "익명-30001": 10}

        async def listed() -> bool:
            return dict(await b.online()) == names

        await self.until(listed)  # once b has beaten again too
        self.assertEqual(a.lost_names, 1)
        # a's own release of the name it lost cannot free b's user's name
        await a.release("익명-10001")
        self.assertEqual(dict(await b.online()), names)
        self.assertEqual(reaped, [])

    async def until(self, check: Any, timeout: float = 5.0) -> None:
        deadline = reactor.seconds() + timeout
        while True:
            try:
                if await check():
                    return
            except Exception:
                pass
            self.assertLess(reactor.seconds(), deadline, "condition not reached")
            await sleep(0.05)


    async def test_a_release_redis_missed_is_retried_at_the_next_beat(self) -> None:
        a = await self.node(beat=0.1)
        await a.claim("익명-55555", 1)
        connection = a._connection
        a._connection = None  # as if Redis were unreachable for this call
        await a.release("익명-55555")  # never fails
        a._connection = connection
        self.assertEqual([n for n, _ in await a.online()], ["익명-55555"])
        await sleep(0.4)
        self.assertEqual(await a.online(), [])


class RedisRelayTests(TestCase):
    timeout = 20

    prefix = f"anonchat-test-{uuid.uuid4().hex[:8]}:"

    async def relay(self, url: str) -> tuple[RedisRelay, list[bytes]]:
        received: list[bytes] = []
        relay = RedisRelay(reactor, url, key_prefix=self.prefix)
        relay.set_listener(received.append)
        await relay.start()
        self.addCleanup(relay.stop)
        return relay, received

    async def test_an_event_reaches_every_node_including_the_sender(self) -> None:
        url = require_redis()
        a, got_a = await self.relay(url)
        b, got_b = await self.relay(url)
        a.publish('{"typing":true,"sender":"익명-1"}'.encode())
        await sleep(0.3)
        self.assertEqual(got_a, ['{"typing":true,"sender":"익명-1"}'.encode()])
        self.assertEqual(got_b, got_a)

    async def test_other_redis_dbs_do_not_hear_each_other(self) -> None:
        url = require_redis()
        other_url = url.rsplit("/", 1)[0] + "/12"
        a, got_a = await self.relay(url)
        b, got_b = await self.relay(other_url)
        a.publish(b"{}")
        await sleep(0.3)
        self.assertEqual((len(got_a), len(got_b)), (1, 0))


class RedisRejoinTests(PresenceTestCase):
    """A dropped user's name waits for a rejoin, on any node."""

    async def test_a_rejoin_on_another_node_moves_the_name_there(self) -> None:
        a, b = await self.node(), await self.node()
        await a.claim("익명-11111", 1000)
        await a.linger("익명-11111", "n1", 30)
        self.assertFalse(await b.resume("익명-11111", "wrong"))
        self.assertTrue(await b.resume("익명-11111", "n1"))
        self.assertFalse(await b.resume("익명-11111", "n1"))  # one rejoin per token
        self.assertFalse(await a.expire_linger("익명-11111", "n1"))  # the first node writes no LEAVE
        await a.release("익명-11111")  # not the first node's any more
        self.assertEqual(await b.online(), [("익명-11111", 1000)])
        await b.release("익명-11111")
        self.assertEqual(await a.online(), [])

    async def test_no_rejoin_in_time_is_one_expiry_and_then_no_rejoin(self) -> None:
        a, b = await self.node(), await self.node()
        await a.claim("익명-22222", 5)
        await a.linger("익명-22222", "n2", 30)
        self.assertTrue(await a.expire_linger("익명-22222", "n2"))
        self.assertFalse(await a.expire_linger("익명-22222", "n2"))
        self.assertFalse(await b.resume("익명-22222", "n2"))

    async def test_a_name_no_longer_online_cannot_be_resumed(self) -> None:
        a, b = await self.node(), await self.node()
        await a.claim("익명-33333", 5)
        await a.linger("익명-33333", "n3", 30)
        await a.release("익명-33333")  # e.g. reaped with a dead node
        self.assertFalse(await b.resume("익명-33333", "n3"))
        self.assertEqual(await b.online(), [])
