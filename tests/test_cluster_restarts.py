"""Black-box restart tests: Redis killed and started again under traffic, and
an anonchat node killed with SIGKILL in the middle of a flush. Real
``twistd -n anonchat`` processes, real Redis and MariaDB.

Each test prints (and logs) one line: messages sent, receipted, reported back
as NOT_STORED, stored in MySQL, and stored more than once.
"""

from __future__ import annotations

from typing import Any

import json
from collections import Counter

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.serverprocess import ServerProcess
from tests.test_cluster_faults import (
    Chatter,
    PrivateRedis,
    archive_holds,
    archived,
    cluster_redis,
    every,
    fresh_mysql,
    health,
    healthy,
    nothing_pending,
    pending,
    reactor,
    redis_connection,
    report,
    sleep,
    row_count,
    start_all,
    until,
    users_of,
)

#: seconds Redis stays dead: more than the node's Redis command timeout (5 s)
OUTAGE = 6.5


class RedisRestartTests(unittest.TestCase):
    timeout = 60

    async def test_redis_killed_and_restarted_under_traffic(self) -> None:
        # The deployment we promise for: Redis with an fsync'ed append-only
        # file, so what Redis acknowledged (and we receipted) survives its
        # own crash. Without persistence (--save "" --appendonly no) a
        # restarted Redis is empty, and the receipted-but-not-yet-flushed
        # messages of the moment it died are gone with it: no server can keep
        # that promise on top of a store that forgets.
        redis = PrivateRedis(self, "--appendonly", "yes", "--appendfsync", "always")
        await redis.start()
        mysql_url = await fresh_mysql(self)
        node = ServerProcess(self, "--redis", redis.url, "--database", mysql_url, "--flush-interval", "0.2",
                             "--rate-limit", "0", "--frame-rate", "0", "--rejoin-grace", "0", name="node")
        await node.start()
        sender, watcher = await Chatter(node, "s").join(), await Chatter(node, "w").join()

        sending = every(0.02, sender.send)
        self.addCleanup(lambda: sending.running and sending.stop())
        await until(lambda: len(sender.receipted) >= 30, 10, "chat before the restart")

        redis.kill()
        killed_at = reactor.seconds()
        sent_at_kill = sender.sent
        # down for longer than the node's Redis command timeout (5 s), so the
        # sends of the first second or so fail and must be reported; the
        # later ones wait for the reconnection and go through

        async def probe_health() -> tuple[int, dict[str, Any], float]:
            await sleep(1.5)  # past the second /healthz may serve a cached probe
            status, body = await health(node)  # answered when the node gives up on Redis
            return status, body, reactor.seconds() - killed_at

        probe = Deferred.fromCoroutine(probe_health())
        await sleep(OUTAGE)
        sent_while_down = sender.sent
        await redis.start()
        restarted_at = reactor.seconds()
        down_for = restarted_at - killed_at
        receipts_at_restart = len(sender.receipted)
        await until(lambda: len(sender.receipted) >= receipts_at_restart + 30, 15,
                    "receipts again after Redis came back")
        reconnected_in = reactor.seconds() - restarted_at
        await sleep(1.0)
        sending.stop()
        await until(lambda: sender.answered == sender.sent, 15, "an answer (RECEIPT or report) to every SEND")
        receipted = sender.receipted
        await until(lambda: archive_holds(mysql_url, receipted), 20, "every receipted message in MySQL", step=0.05)
        await until(lambda: watcher.seen() >= set(receipted), 10, "the watcher to get every receipted message")
        probe_status, probe_body, probe_took = await probe

        stored = await archived(mysql_url)
        count, doubled, missing = stored.tally(receipted)
        numbered = list(sender.contents.values())  # numbered[n - 1] is send #n
        got_receipt = set(receipted)
        # a NOT_STORED that was stored all the same (a client resending it
        # would double it): the buffer resolves a lost answer before it
        # reports, so there must be none
        reported_but_stored = [n for n, c in enumerate(numbered, 1) if c not in got_receipt and stored.tally([c])[0]]
        first_receipted_after_kill = next(
            (n for n, c in enumerate(numbered, 1) if n > sent_at_kill and c in got_receipt), None)
        report("redis-restart", sent=sender.sent, receipted=len(receipted), reported=sender.not_stored,
               stored=count, doubled=stored.doubled, reported_but_stored=len(reported_but_stored),
               down_for=f"{down_for:.1f}s", receipts_again_in=f"{reconnected_in:.1f}s",
               healthz_while_down=(probe_status, probe_body.get("redis")), healthz_answered_in=f"{probe_took:.1f}s",
               sent_at_kill=sent_at_kill, sent_by_restart=sent_while_down,
               first_receipted_after_kill=first_receipted_after_kill, reported_but_stored_sends=reported_but_stored)

        # the clients never noticed a thing but the reports
        self.assertEqual((sender.connected, watcher.connected), (True, True))
        self.assertEqual((sender.errors, watcher.errors, sender.other_reports), ([], [], []))
        # none silently dropped: every SEND got a RECEIPT or a NOT_STORED
        self.assertEqual(len(receipted) + sender.not_stored, sender.sent)
        # and NOT_STORED means not stored
        self.assertEqual(reported_but_stored, [])
        # every receipted message archived exactly once
        self.assertEqual((missing, doubled, stored.doubled), ([], 0, 0))
        self.assertEqual((probe_status, probe_body.get("redis")), (503, "down"))
        self.assertGreater(sender.not_stored, 0, "nothing failed in an outage longer than the command timeout")
        await until(lambda: healthy(node), 10, "/healthz to say ok again")
        self.assertEqual(await node.stop(), 0, node.read_log()[-3000:])
        final = await archived(mysql_url)
        self.assertEqual(final.doubled, 0)
        self.assertEqual(final.tally(receipted)[1:], (0, []))


class PresenceOutageTests(unittest.TestCase):
    timeout = 60

    async def test_users_outlive_a_redis_outage_longer_than_the_node_ttl(self) -> None:
        # Redis down longer than --node-ttl: every node's key expires, though
        # the nodes and their users are all still there
        node_ttl = 1.5
        redis = PrivateRedis(self, "--appendonly", "yes", "--appendfsync", "always")
        await redis.start()
        mysql_url = await fresh_mysql(self)
        args = ["--redis", redis.url, "--database", mysql_url, "--flush-interval", "0.2", "--node-ttl", str(node_ttl),
                "--rejoin-grace", "0"]
        a, b = ServerProcess(self, *args, name="node-a"), ServerProcess(self, *args, name="node-b")
        await start_all(a, b)
        before = [await Chatter(node, f"{node_name}{i}").join() for node, node_name in ((a, "a"), (b, "b"))
                  for i in range(3)]
        names = {c.name for c in before}
        self.assertEqual(len(names), 6)
        for node in (a, b):
            await until(lambda: self._lists(node, names), 5, "both nodes to list every user")

        redis.kill()
        await sleep(2 * node_ttl)
        await redis.start()
        # the grace (a node-ttl and 2 s of reconnection), then some beats in
        # which a reaper would strike
        await sleep(node_ttl + 2 + 2 * node_ttl)
        listed = {"a": await users_of(a), "b": await users_of(b)}
        after = [await Chatter(node, f"{node_name}-new").join() for node, node_name in ((a, "a"), (b, "b"))]
        everyone = before + after
        all_names = [c.name for c in everyone]
        for node in (a, b):
            await self._settle(lambda: self._lists(node, set(all_names)))
        listed_with_newcomers = {"a": await users_of(a), "b": await users_of(b)}
        for chatter in everyone:
            await chatter.close()
        for node in (a, b):
            await self._settle(lambda: self._lists(node, set()))
        await sleep(3 * node_ttl)  # a late reaper's LEAVE would be written by now
        listed_at_end = {"a": await users_of(a), "b": await users_of(b)}
        status, body = await a.get("/api/messages/recent?limit=500")
        recorded = json.loads(body)
        joins = Counter(m["sender"] for m in recorded if m["type"] == "JOIN")
        leaves = Counter(m["sender"] for m in recorded if m["type"] == "LEAVE")
        report("presence-outage", users=len(names), listed_after_outage_a=len(listed["a"] & names),
               listed_after_outage_b=len(listed["b"] & names), newcomers=len(after),
               distinct_names=len(set(all_names)), joins_per_user=sorted(set(joins.values())),
               leaves_per_user=sorted(set(leaves.values())))

        self.assertEqual((listed["a"], listed["b"]), (names, names))
        self.assertEqual(len(set(all_names)), len(all_names), "a nickname was handed out twice")
        self.assertEqual(listed_with_newcomers, {"a": set(all_names), "b": set(all_names)})
        self.assertEqual(listed_at_end, {"a": set(), "b": set()})
        self.assertEqual(status, 200)
        self.assertEqual(joins, {name: 1 for name in all_names})
        self.assertEqual(leaves, {name: 1 for name in all_names})
        for chatter in everyone:
            self.assertEqual((chatter.errors, chatter.reported), ([], []))
        for node in (a, b):
            self.assertEqual(await node.stop(), 0, node.read_log()[-3000:])
        stored = await archived(mysql_url)
        self.assertEqual((stored.events("JOIN"), stored.events("LEAVE")), (joins, leaves))

    async def _lists(self, node: ServerProcess, names: set[Any]) -> bool:
        return await users_of(node) == names

    async def _settle(self, check: Any, timeout: float = 5.0) -> None:
        """Wait for ``check`` a while, without failing: what it waited for is
        asserted after the figures are reported."""
        try:
            await until(check, timeout, "")
        except AssertionError:
            pass


class KilledMidFlushTests(unittest.TestCase):
    timeout = 90

    async def test_node_killed_mid_flush_its_batch_is_reclaimed_by_the_next(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        redis = await redis_connection(redis_url)
        self.addCleanup(redis.disconnect)
        flushing = ["--redis", redis_url, "--database", mysql_url, "--rate-limit", "0", "--frame-rate", "0", "--rejoin-grace", "0",
                    "--flush-interval", "0.5", "--batch-size", "500"]
        first = ServerProcess(self, *flushing, name="first")
        await first.start()
        sender = await Chatter(first, "s").join()

        # 3,000 messages of ~2 KB in about 3 s: the flusher moves them in
        # 500-row transactions of ~1 MB, one after the other
        total, per_tick = 3000, 20
        padding = " " + "가" * 600

        def send_some() -> None:
            if not sender.connected:
                return
            for _ in range(min(per_tick, total - sender.sent)):
                sender.send(padding)
            if sender.sent >= total:
                sending.stop()

        sending = every(0.02, send_some)
        self.addCleanup(lambda: sending.running and sending.stop())

        # kill it a third of the way in, while rows are arriving and a batch
        # is claimed but not acknowledged
        polls = 0
        while True:
            polls += 1
            rows = await row_count(mysql_url)
            claimed = await pending(redis)
            if rows > total // 3 and any(claimed.values()):
                break
            if polls > 2000:
                self.fail("never saw a flush in progress")
            await sleep(0.005)
        if sending.running:
            sending.stop()
        self.assertEqual(await first.kill(), -9)
        rows_at_kill = await row_count(mysql_url)
        left_pending = await pending(redis)
        await until(lambda: not sender.connected, 5, "the client to see the node die")
        receipted = sender.receipted

        second = ServerProcess(self, "--claim-idle", "1", *flushing, name="second")
        await second.start()
        restarted_at = reactor.seconds()
        await until(lambda: archive_holds(mysql_url, receipted), 20, "every receipted message in MySQL", step=0.05)
        await until(lambda: nothing_pending(redis), 10, "the dead node's batch to be acknowledged")
        recovered_in = reactor.seconds() - restarted_at

        stored = await archived(mysql_url)
        count, doubled, missing = stored.tally(receipted)
        unreceipted = [c for c in sender.contents.values() if c not in set(receipted)]
        report("sigkill-mid-flush", sent=sender.sent, receipted=len(receipted), reported=sender.not_stored,
               stored=count, doubled=stored.doubled, stored_unreceipted=stored.tally(unreceipted)[0],
               rows_at_kill=rows_at_kill, pending_at_kill=sum(left_pending.values()),
               recovered_in=f"{recovered_in:.1f}s")
        self.assertGreater(sum(left_pending.values()), 0, "no batch was left pending by the killed node")
        self.assertGreater(stored.total, rows_at_kill, "nothing was left to archive after the kill")
        self.assertEqual((missing, doubled, stored.doubled), ([], 0, 0))
        self.assertEqual((sender.errors, sender.other_reports, sender.not_stored), ([], [], 0))
        self.assertEqual(await second.stop(), 0, second.read_log()[-3000:])
        final = await archived(mysql_url)
        self.assertEqual((final.doubled, final.tally(receipted)[1:]), (0, (0, [])))
