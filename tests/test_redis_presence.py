"""Presence and the typing relay across nodes, on real Redis."""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from anonchat.store.redis_presence import RedisPresence
from anonchat.store.redis_relay import RedisRelay
from tests.services import require_redis


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class RedisPresenceTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.url = require_redis()
        # A key prefix of our own: no FLUSHDB, so other suites on the db are safe.
        self.prefix = f"anonchat-test-{uuid.uuid4().hex[:8]}:"

    async def node(self, **kwargs: Any) -> RedisPresence:
        presence = RedisPresence(reactor, self.url, key_prefix=self.prefix, **kwargs)
        await presence.start()
        self.addCleanup(presence.stop)
        self.addCleanup(self.forget_users, presence)
        return presence

    async def forget_users(self, presence: RedisPresence) -> None:
        for name, _ in await presence.online():
            await presence.release(name)

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
        live = await self.node(node_ttl=5, beat=0.1)
        live.set_reaped_listener(lambda names: reaped.append(list(names)))
        other = await self.node(node_ttl=5, beat=0.1)
        other.set_reaped_listener(lambda names: reaped.append(list(names)))
        await live.claim("익명-44444", 2)
        await sleep(0.8)
        self.assertEqual(reaped, [["익명-33333"]])
        self.assertEqual([n for n, _ in await live.online()], ["익명-44444"])


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
