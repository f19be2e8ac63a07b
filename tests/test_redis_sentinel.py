"""Redis Sentinel and replicas, below the black box: the ``sentinel://`` URL,
the options, and ``--redis-wait`` (one ``WAIT`` per batch of appends, and
what a ``WAIT`` that falls short answers) against a private master with
one replica. The failover itself is in ``tests/test_sentinel_failover.py``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import DeferredList
from twisted.trial import unittest

from anonchat.chat.ports import AppendOutcomeUnknown
from anonchat.settings import SettingsError, resolve
from anonchat.store.redis_buffer import RedisStreamBuffer
from anonchat.store.redis_connection import RedisAddress, parse_redis_url
from tests.buffer_contract import chat
from tests.faultproxy import FaultProxy
from tests.privatesentinel import SERVICE, PrivateReplicatedRedis, _command
from tests.test_buffer_redis import raw_connection, sleep

reactor: Any = _reactor


class SentinelUrlTests(unittest.SynchronousTestCase):
    def test_several_sentinels_a_service_and_a_db(self) -> None:
        address = parse_redis_url("sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-c/chat/3")
        self.assertEqual(address.sentinels, (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379)))
        self.assertEqual((address.service, address.db, address.tls), ("chat", 3, False))

    def test_the_db_defaults_to_zero_and_the_password_is_the_masters(self) -> None:
        address = parse_redis_url("sentinel://:s3cr%40t@h1:5000/mymaster")
        self.assertEqual((address.sentinels, address.service, address.db), ((("h1", 5000),), "mymaster", 0))
        self.assertEqual(address.password, "s3cr@t")
        self.assertNotIn("s3cr", repr(address))

    def test_a_plain_url_has_no_sentinels(self) -> None:
        self.assertEqual(parse_redis_url("redis://h:1/2"), RedisAddress(host="h", port=1, db=2))
        self.assertEqual(parse_redis_url("redis://h:1/2").sentinels, ())

    def test_malformed_sentinel_urls_are_refused(self) -> None:
        for url in (
            "sentinel://h1:26379",  # no service
            "sentinel://h1:26379/",  # empty service
            "sentinel:///chat/0",  # no sentinel
            "sentinel://h1:26379,,h2/chat/0",  # an empty address
            "sentinel://h1:port/chat/0",  # a port that is not a number
            "sentinel://h1:70000/chat/0",  # out of range
            "sentinel://h1/chat/x",  # the db is not a number
            "sentinel://h1/chat/0/more",  # too many parts
            "sentinel://h1/chat/0?ssl_ca_certs=/ca.pem",  # no TLS through Sentinel
        ):
            with self.assertRaises(ValueError, msg=url):
                parse_redis_url(url)


class SentinelOptionsTests(unittest.SynchronousTestCase):
    def test_a_sentinel_url_is_accepted_and_a_malformed_one_names_the_option(self) -> None:
        self.assertEqual(resolve({"redis": "sentinel://h1,h2:26380/chat/1"}, {}).redis, "sentinel://h1,h2:26380/chat/1")
        with self.assertRaisesRegex(SettingsError, "--redis"):
            resolve({"redis": "sentinel://h1:26379"}, {})

    def test_redis_wait_defaults_and_limits(self) -> None:
        s = resolve({}, {})
        self.assertEqual((s.redis_wait, s.redis_wait_timeout), (0, 500))
        s = resolve({"redis-wait": "2", "redis-wait-timeout": "250"}, {})
        self.assertEqual((s.redis_wait, s.redis_wait_timeout), (2, 250))
        with self.assertRaisesRegex(SettingsError, "--redis-wait"):
            resolve({"redis-wait": "-1"}, {})
        # WAIT with 0 ms would block for ever
        with self.assertRaisesRegex(SettingsError, "--redis-wait-timeout"):
            resolve({"redis-wait-timeout": "0"}, {})


class RedisWaitTests(unittest.TestCase):
    """``--redis-wait`` against a private master and replica."""

    timeout = 30

    async def setUp(self) -> None:  # type: ignore[override]
        self.servers = PrivateReplicatedRedis(self)
        await self.servers.start()
        self.master = await raw_connection(parse_redis_url(self.servers.master.url))
        self.addCleanup(self.master.disconnect)

    def buffer(self, url: str | None = None, **kwargs: Any) -> RedisStreamBuffer:
        kwargs.setdefault("block_ms", 200)
        buffer = RedisStreamBuffer(reactor, url or self.servers.master.url, **kwargs)
        self.addCleanup(buffer.stop)
        return buffer

    async def wait_calls(self) -> int:
        info = await self.master.execute_command("INFO", "commandstats")
        for line in str(info).splitlines():
            if line.startswith("cmdstat_wait:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    async def test_one_wait_per_batch_of_appends_and_every_append_receipted(self) -> None:
        buffer = self.buffer(wait_replicas=1, wait_timeout_ms=2000)
        await buffer.start()
        calls = await self.wait_calls()
        results = await DeferredList([buffer.append(chat(f"m{i}")) for i in range(120)], consumeErrors=True)
        self.assertTrue(all(ok for ok, _ in results), [r for ok, r in results if not ok][:1])
        self.assertEqual(await self.wait_calls() - calls, 1, "one WAIT for the turn's one append script")
        await buffer.append(chat("later"))
        self.assertEqual(await self.wait_calls() - calls, 2)
        # and what WAIT confirmed is on the replica
        replica = await raw_connection(parse_redis_url(self.servers.replica.url))
        self.addCleanup(replica.disconnect)
        self.assertEqual(await replica.execute_command("XLEN", "anonchat:messages"), 121)

    async def test_without_redis_wait_no_wait_is_sent(self) -> None:
        buffer = self.buffer()
        await buffer.start()
        calls = await self.wait_calls()
        await buffer.append(chat("m"))
        self.assertEqual(await self.wait_calls(), calls)

    async def test_a_wait_that_times_out_is_unconfirmed_never_not_stored(self) -> None:
        buffer = self.buffer(wait_replicas=1, wait_timeout_ms=200)
        await buffer.start()
        self.servers.replica.pause()  # connected, but acknowledges nothing
        self.addCleanup(self.servers.replica.resume)
        started = reactor.seconds()
        with self.assertRaises(AppendOutcomeUnknown):
            await buffer.append(chat("on the master only"))
        self.assertLess(reactor.seconds() - started, 2.0, "WAIT did not end at its own timeout")
        # it is stored on the master: NOT_STORED would make the sender double it
        entries = await self.master.execute_command("XRANGE", "anonchat:messages", "-", "+")
        self.assertEqual([fields[fields.index("content") + 1] for _, fields in entries], ["on the master only"])
        self.servers.replica.resume()
        # the replica catches up, and receipts come back
        for attempt in range(25):
            try:
                await buffer.append(chat(f"replicated again {attempt}"))
                break
            except AppendOutcomeUnknown:
                await sleep(0.2)
        else:
            self.fail("no append confirmed by the replica after it resumed")

    async def test_more_replicas_than_there_are_is_unconfirmed(self) -> None:
        buffer = self.buffer(wait_replicas=2, wait_timeout_ms=100)
        await buffer.start()
        with self.assertRaises(AppendOutcomeUnknown):
            await buffer.append(chat("one replica short"))

    async def proxied(self, wait_timeout_ms: int) -> tuple[RedisStreamBuffer, FaultProxy]:
        """A waiting buffer talking to the master through a fault proxy, with
        one append made (the script is loaded: a held one runs)."""
        proxy = FaultProxy(reactor, "127.0.0.1", self.servers.master.port)
        port = await proxy.start()
        self.addCleanup(proxy.stop)
        buffer = self.buffer(f"redis://127.0.0.1:{port}/0", wait_replicas=1, wait_timeout_ms=wait_timeout_ms,
                             command_timeout=0.5)
        await buffer.start()
        await buffer.append(chat("before"))
        return buffer, proxy

    async def test_a_lost_answer_found_stored_is_waited_for_on_the_connection_that_found_it(self) -> None:
        buffer, proxy = await self.proxied(2000)
        calls = await self.wait_calls()
        proxy.hold_replies()
        appended = buffer.append(chat("landed"))
        await sleep(1.2)  # past the timeout: the connection was dropped, the outcome unknown
        self.assertFalse(appended.called)
        proxy.restore()
        stored = await appended
        self.assertEqual(stored.content, "landed")
        self.assertGreaterEqual(await self.wait_calls() - calls, 1)

    async def test_a_lost_answer_found_stored_while_the_replica_lags_is_unconfirmed(self) -> None:
        # the connection that finds the append stored wrote nothing else: its
        # WAIT must still cover the append, not be satisfied by default
        buffer, proxy = await self.proxied(1000)
        self.servers.replica.pause()
        self.addCleanup(self.servers.replica.resume)
        proxy.hold_replies()
        appended = buffer.append(chat("landed, not replicated"))
        await sleep(1.2)
        proxy.restore()
        with self.assertRaises(AppendOutcomeUnknown):
            await appended


class SentinelBufferTests(unittest.TestCase):
    """The buffer on ``sentinel://`` through a failover that kills nothing
    (``SENTINEL FAILOVER``): the old master lives on, demoted."""

    timeout = 45

    async def test_appends_and_the_feed_follow_a_manual_failover(self) -> None:
        servers = PrivateReplicatedRedis(self)
        await servers.start(sentinels=3)
        buffer = RedisStreamBuffer(reactor, servers.url, block_ms=200, command_timeout=1.0)
        self.addCleanup(buffer.stop)
        fed: list[str] = []
        buffer.add_listener(lambda batch: fed.extend(m.content for m in batch))
        await buffer.start()
        await buffer.append(chat("before"))

        reply = _command(servers.sentinels[0].port, b"SENTINEL", b"FAILOVER", SERVICE.encode())
        self.assertEqual(reply, b"+OK\r\n")
        waited = 0.0
        while not (servers.is_master(servers.replica.port) and not servers.is_master(servers.master.port)):
            self.assertLess(waited, 20, "Sentinel did not fail over")
            await sleep(0.1)
            waited += 0.1
        promoted_at = reactor.seconds()
        stored = None
        while stored is None and reactor.seconds() - promoted_at < 10:
            try:
                stored = await buffer.append(chat("after"))
            except Exception:
                await sleep(0.1)
        self.assertIsNotNone(stored, "no append reached the new master within 10 s of its promotion")
        new_master = await raw_connection(parse_redis_url(servers.replica.url))
        self.addCleanup(new_master.disconnect)
        entries = await new_master.execute_command("XRANGE", "anonchat:messages", "-", "+")
        self.assertIn("after", [fields[fields.index("content") + 1] for _, fields in entries])
        while "after" not in fed and reactor.seconds() - promoted_at < 15:
            await sleep(0.05)
        self.assertIn("after", fed, "the feed stayed on the demoted master")
