"""Black-box fault tests: real ``twistd -n anonchat`` processes, real Redis and
MariaDB, raw WebSocket STOMP clients; the tests reach the servers only over
the network (and with signals).

This module holds two nodes forming one chat and a MySQL outage under
traffic; ``tests/test_cluster_restarts.py`` holds Redis killed and restarted
and a node killed mid-flush, with the helpers from here: a STOMP chatter
that keeps count of what it sent and what came back, a private
``redis-server`` that can be killed and started again on the same port, and
the MySQL tally of what reached the archive, and how often.

For every fault the test prints (and logs) one line: messages sent,
receipted, reported back as NOT_STORED, stored in MySQL, and stored more than
once. Doubles are counted by content, never by id: every message sent has a
unique content, and ``id`` is a UNIQUE key, so a count by id cannot fail.
"""

from __future__ import annotations

import inspect
import json
import os
from collections import Counter
from typing import Any, Callable
from urllib.parse import urlsplit

import attrs
import txredisapi
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.trial import unittest

from anonchat.chat.message import id_key
from anonchat.store.redis_connection import parse_redis_url
from tests.faultproxy import FaultProxy
from tests.privateredis import PrivateRedis
from tests.serverprocess import ServerProcess
from tests.services import require_redis
from tests.stompfakes import frame
from tests.test_archive_mysql import prepare_mysql, query_mysql
from tests.wsclient import WsClient

reactor: Any = _reactor
log = Logger(namespace="anonchat.tests.faults")

SHARED_REDIS_VAR = "ANONCHAT_TEST_FAULTS_SHARED_REDIS"
STREAM = "anonchat:messages"
GROUP = "archiver"
CHAT, ERRORS = "/topic/chat", "/user/queue/errors"
SEND = "/app/chat.sendMessage"


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def until(check: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> None:
    """Poll ``check`` (plain or async) until it is true; fail naming ``what``."""
    deadline = reactor.seconds() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await sleep(step)


def report(fault: str, **numbers: Any) -> str:
    """One line per fault, in the trial log and on stdout."""
    line = f"[{fault}] " + " ".join(f"{k}={v}" for k, v in numbers.items())
    log.info("{line}", line=line)
    print(line)
    return line


# -- the chat client ------------------------------------------------------------


class Chatter:
    """One STOMP 1.2 session on a raw WebSocket, subscribed to the chat topic
    (``sub-0``) and to its own error queue (``err-0``). ``send`` numbers every
    message (unique content) and asks for a receipt; what came back is read
    from the frames as they arrive."""

    def __init__(self, server: ServerProcess, label: str) -> None:
        self.label = label
        self.server = server
        self.ws = WsClient(server.ws_url)
        self.name: str | None = None
        self.contents: dict[str, str] = {}  # receipt id -> content, in send order
        self.receipts: set[str] = set()
        self.chat: list[dict[str, Any]] = []  # every MESSAGE on /topic/chat, in order
        self.reported: list[dict[str, Any]] = []  # every MESSAGE on /user/queue/errors
        self.errors: list[Any] = []  # ERROR frames (there must be none)
        self._scanned = 0
        self._n = 0

    async def join(self) -> Chatter:
        await self.ws.opened
        self.ws.send(frame("CONNECT", accept_version="1.2", heart_beat="0,0", host="anonchat"))
        connected = await self.ws.wait_for_command("CONNECTED", timeout=10)
        self.name = connected[0].get("user-name")
        self.ws.send(frame("SUBSCRIBE", id="err-0", destination=ERRORS))
        self.ws.send(frame("SUBSCRIBE", id="sub-0", destination=CHAT, receipt=f"{self.label}-subscribed"))
        await self.ws.wait_for(lambda fs: any(f.get("receipt-id") == f"{self.label}-subscribed" for f in fs), 10)
        return self

    def _scan(self) -> None:
        frames = self.ws.frames
        while self._scanned < len(frames):
            f = frames[self._scanned]
            self._scanned += 1
            if f.command == "RECEIPT":
                self.receipts.add(f.get("receipt-id") or "")
            elif f.command == "MESSAGE":
                body = json.loads(f.body.decode("utf-8"))
                if f.get("subscription") == "sub-0":
                    self.chat.append(body)
                elif f.get("subscription") == "err-0":
                    self.reported.append(body)
            elif f.command == "ERROR":
                self.errors.append(f)

    def send(self, padding: str = "") -> str:
        self._n += 1
        receipt = f"{self.label}-r{self._n}"
        content = f"{self.label}#{self._n} 안녕하세요 👋{padding}"
        self.contents[receipt] = content
        body = json.dumps({"content": content}, ensure_ascii=False).encode("utf-8")
        self.ws.send(frame("SEND", body, destination=SEND, receipt=receipt,
                           content_type="application/json;charset=UTF-8"))
        return content

    # what came back, read fresh on every access

    @property
    def sent(self) -> int:
        return len(self.contents)

    @property
    def receipted(self) -> list[str]:
        """The contents of the sends that got a RECEIPT."""
        self._scan()
        return [c for r, c in self.contents.items() if r in self.receipts]

    @property
    def not_stored(self) -> int:
        self._scan()
        return sum(1 for e in self.reported if e.get("code") == "NOT_STORED")

    @property
    def other_reports(self) -> list[dict[str, Any]]:
        self._scan()
        return [e for e in self.reported if e.get("code") != "NOT_STORED"]

    @property
    def answered(self) -> int:
        """Sends that got either a RECEIPT or a report."""
        return len(self.receipted) + len(self.reported)

    def messages(self, type_: str | None = "CHAT") -> list[dict[str, Any]]:
        self._scan()
        return [m for m in self.chat if type_ is None or m["type"] == type_]

    def seen(self) -> set[str]:
        """Contents of the CHAT messages this client received."""
        return {m["content"] for m in self.messages()}

    @property
    def connected(self) -> bool:
        return not self.ws.closed.called

    async def close(self) -> None:
        await self.ws.close()


def strictly_increasing(ids: list[str]) -> bool:
    keys = [id_key(i) for i in ids]
    return all(a < b for a, b in zip(keys, keys[1:]))


# -- the archive ----------------------------------------------------------------


@attrs.frozen
class Archived:
    """What ``chat_messages`` holds: ``rows`` as (id, type, sender, content)."""

    rows: list[tuple[str, str, str, str]]

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def doubled(self) -> int:
        """Extra rows of any CHAT content (every content sent is unique)."""
        return sum(n - 1 for n in self.content_counts().values())

    def content_counts(self) -> Counter[str]:
        return Counter(r[3] for r in self.rows if r[1] == "CHAT")

    def events(self, type_: str) -> Counter[str]:
        return Counter(r[2] for r in self.rows if r[1] == type_)

    def tally(self, contents: list[str]) -> tuple[int, int, list[str]]:
        """(stored, doubled, missing) for the given CHAT contents: stored
        counts those present, doubled the extra rows of any of them."""
        counts = self.content_counts()
        stored = sum(1 for c in contents if counts[c] >= 1)
        doubled = sum(counts[c] - 1 for c in contents if counts[c] > 1)
        missing = [c for c in contents if counts[c] == 0]
        return stored, doubled, missing


async def archived(url: str) -> Archived:
    rows = await query_mysql(url, "SELECT id, type, sender, content FROM chat_messages ORDER BY id_ms, id_seq")
    return Archived([(str(a), str(b), str(c), str(d)) for a, b, c, d in rows])


async def row_count(url: str) -> int:
    """COUNT(*) of chat_messages; 0 before it exists."""
    try:
        rows = await query_mysql(url, "SELECT COUNT(*) FROM chat_messages")
    except Exception as e:
        if "doesn't exist" in str(e):
            return 0
        raise
    return int(rows[0][0])


async def fresh_mysql(test: unittest.TestCase) -> str:
    """The test database, our tables dropped, held for this test alone."""
    if len(inspect.signature(prepare_mysql).parameters):
        return await prepare_mysql(test)
    return await prepare_mysql()  # type: ignore[call-arg]  # the older signature


# -- Redis ----------------------------------------------------------------------


async def redis_connection(url: str) -> Any:
    address = parse_redis_url(url)
    return await txredisapi.Connection(
        address.host, address.port, dbid=address.db, password=address.password,
        reconnect=False, convertNumbers=False, connectTimeout=2,
    )


async def fresh_shared_redis(test: unittest.TestCase) -> str:
    """The shared test Redis db (``ANONCHAT_TEST_REDIS_URL``), flushed."""
    url = require_redis()
    redis = await redis_connection(url)
    try:
        await redis.execute_command("FLUSHDB")
    finally:
        await redis.disconnect()
    return url


async def cluster_redis(test: unittest.TestCase) -> str:
    """A Redis of this test's own: a private ``redis-server`` when there is
    the binary, else the shared test db, flushed. The shared db is flushed
    by other suites' setUp too (``test_buffer_redis``, ``tox`` runs), which
    wiped the stream under a running node here; a private one cannot be.
    ``ANONCHAT_TEST_FAULTS_SHARED_REDIS=1`` asks for the shared db anyway."""
    if os.environ.get(SHARED_REDIS_VAR, "") != "1":
        server = PrivateRedis(test)
        await server.start()
        return server.url
    return await fresh_shared_redis(test)


async def pending(redis: Any) -> dict[str, int]:
    """The archiver group's pending entries per consumer (claimed, not acked)."""
    try:
        reply = await redis.execute_command("XPENDING", STREAM, GROUP)
    except txredisapi.ResponseError:
        return {}
    consumers = reply[3] or []
    return {_text(name): int(count) for name, count in consumers}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def users_of(server: ServerProcess) -> set[str]:
    status, body = await server.get("/api/users")
    if status != 200:
        return set()
    return {u["name"] for u in json.loads(body)["users"]}


async def health(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    status, body = await server.get("/healthz")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def every(seconds: float, work: Callable[[], Any]) -> Any:
    """A LoopingCall on the real reactor; returns it started."""
    loop = LoopingCall(work)
    loop.clock = reactor
    loop.start(seconds, now=True)
    return loop


async def archive_holds(url: str, contents: list[str]) -> bool:
    """Whether every one of these CHAT contents is in MySQL (by the numbered
    first word each content starts with, to keep the polling query small)."""
    try:
        rows = await query_mysql(url, "SELECT SUBSTRING_INDEX(content, ' ', 1) FROM chat_messages WHERE type = 'CHAT'")
    except Exception as e:
        if "doesn't exist" in str(e):
            return False
        raise
    present = {str(r[0]) for r in rows}
    return all(c.split(" ", 1)[0] in present for c in contents)


async def rows_at_least(url: str, n: int) -> bool:
    return await row_count(url) >= n


async def healthy(server: ServerProcess) -> bool:
    return (await health(server))[0] == 200


async def nothing_pending(redis: Any) -> bool:
    return not sum((await pending(redis)).values())


# -- the tests ------------------------------------------------------------------


async def start_all(*servers: ServerProcess) -> None:
    """Start the servers side by side."""
    starting = [Deferred.fromCoroutine(s.start()) for s in servers]
    results: list[Any] = await DeferredList(starting, consumeErrors=True)
    for ok, result in results:
        if not ok:
            result.raiseException()  # a Failure


def node_args(redis_url: str, database: str, *extra: str) -> list[str]:
    # floods are the point here (no rate limits), and a closed client is gone
    # at once (its LEAVE counted below), not after a rejoin grace
    return ["--redis", redis_url, "--database", database, "--flush-interval", "0.2", "--rate-limit", "0",
            "--frame-rate", "0", "--rejoin-grace", "0", *extra]


class TwoNodesTests(unittest.TestCase):
    timeout = 60

    async def test_two_nodes_are_one_chat_in_one_order_archived_once(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        a = ServerProcess(self, *node_args(redis_url, mysql_url), name="node-a")
        b = ServerProcess(self, *node_args(redis_url, mysql_url), name="node-b")
        await start_all(a, b)

        a_send, a_watch = Chatter(a, "a"), Chatter(a, "aw")
        b_send, b_watch = Chatter(b, "b"), Chatter(b, "bw")
        everyone = [a_send, a_watch, b_send, b_watch]
        for chatter in everyone:
            await chatter.join()
        names = {c.name for c in everyone}
        self.assertEqual(len(names), 4, "nicknames are unique across the nodes")

        # the online list is the cluster's, whichever node is asked
        for node in (a, b):
            await until(lambda: self._users_are(node, names), 5, "/api/users to list both nodes' users")

        per_node = 100
        for i in range(per_node):
            a_send.send()
            b_send.send()
            if i % 10 == 9:
                await sleep(0.01)
        sent = [*a_send.contents.values(), *b_send.contents.values()]
        await until(lambda: len(a_send.receipted) + len(b_send.receipted) == 2 * per_node, 15, "every RECEIPT")
        for chatter in everyone:
            await until(lambda: len(chatter.messages()) >= 2 * per_node, 15,
                        f"{chatter.label} to receive every CHAT")

        # one chat, one order: every client on every node, the same id sequence
        sequences = {c.label: [m["id"] for m in c.messages()] for c in everyone}
        reference = sequences["aw"]
        self.assertEqual(len(reference), 2 * per_node)
        for label, ids in sequences.items():
            self.assertEqual(ids, reference, f"{label} saw another order than aw")
        self.assertTrue(strictly_increasing(reference), "ids are not strictly increasing")
        self.assertEqual({m["content"] for m in a_watch.messages()}, set(sent))
        # and not just the CHATs: from the first CHAT on, both watchers saw the same stream
        first = reference[0]
        tails = [[m["id"] for m in c.messages(None)] for c in (a_watch, b_watch)]
        tails = [t[t.index(first):] for t in tails]
        self.assertEqual(tails[0], tails[1])
        self.assertTrue(strictly_increasing(tails[0]), "JOIN/LEAVE/CHAT ids are not strictly increasing")
        by_id = {m["id"]: m for m in a_watch.messages()}
        senders = {m["content"]: m["sender"] for m in by_id.values()}
        self.assertTrue(all(senders[c] == a_send.name for c in a_send.contents.values()))
        self.assertTrue(all(senders[c] == b_send.name for c in b_send.contents.values()))

        # node a stops: node b's watcher sees its two users leave, and its list shrinks
        self.assertEqual(await a.stop(), 0, a.read_log()[-3000:])
        await until(lambda: {m["sender"] for m in b_watch.messages("LEAVE")} >= {a_send.name, a_watch.name}, 10,
                    "node b to see node a's users leave")
        await until(lambda: self._users_are(b, {b_send.name, b_watch.name}), 5, "node b's list without node a")
        self.assertEqual(await b.stop(), 0, b.read_log()[-3000:])
        for chatter in everyone:
            await until(lambda: not chatter.connected, 5, "the server to close every session")

        stored = await archived(mysql_url)
        receipted = a_send.receipted + b_send.receipted
        count, doubled, missing = stored.tally(receipted)
        order = [senders[by_id[i]["content"]] for i in reference]
        switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
        report("two-nodes", sent=len(sent), receipted=len(receipted), reported=a_send.not_stored + b_send.not_stored,
               stored=count, doubled=stored.doubled, rows=stored.total, node_switches_in_order=switches)
        self.assertGreater(switches, 1, "the two nodes' messages were not interleaved at all")
        self.assertEqual((missing, doubled, stored.doubled), ([], 0, 0))
        chat_ids = [r[0] for r in stored.rows if r[1] == "CHAT"]
        self.assertEqual(chat_ids, reference, "the archive holds other CHATs, or in another order")
        self.assertEqual(stored.events("JOIN"), {name: 1 for name in names})
        self.assertEqual(stored.events("LEAVE"), {name: 1 for name in names})
        self.assertEqual(stored.total, len(sent) + 2 * len(names))
        for chatter in everyone:
            self.assertEqual((chatter.errors, chatter.other_reports), ([], []))

    async def _users_are(self, node: ServerProcess, names: set[Any]) -> bool:
        return await users_of(node) == names


class DatabaseOutageTests(unittest.TestCase):
    timeout = 60

    async def test_chat_goes_on_while_mysql_is_cut_then_the_backlog_drains(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        target = urlsplit(mysql_url)
        proxy = FaultProxy(reactor, target.hostname or "127.0.0.1", target.port or 3306)
        port = await proxy.start()
        self.addCleanup(proxy.stop)
        # short driver timeouts so a dead link is noticed in a second or two
        proxied = f"mysql://{target.netloc.rpartition('@')[0]}@127.0.0.1:{port}{target.path}" \
                  "?connect_timeout=1&read_timeout=2&write_timeout=2"
        node = ServerProcess(self, *node_args(redis_url, proxied, "--batch-size", "50"), name="node")
        await node.start()
        sender, watcher = await Chatter(node, "s").join(), await Chatter(node, "w").join()

        sending = every(0.02, sender.send)  # 50 a second, each with a receipt
        self.addCleanup(lambda: sending.running and sending.stop())
        await until(lambda: len(sender.receipted) >= 30, 10, "chat before the cut")
        await until(lambda: rows_at_least(mysql_url, 10), 10, "rows reaching MySQL before the cut")

        proxy.cut()
        cut_at = (len(sender.receipted), len(watcher.messages()))
        await sleep(0.5)  # a flush already committing may still land
        rows_in_cut = await row_count(mysql_url)
        healths = []
        for _ in range(5):
            healths.append(await health(node))
            await sleep(0.5)
        rows_after_cut = await row_count(mysql_url)
        during = (len(sender.receipted) - cut_at[0], len(watcher.messages()) - cut_at[1])
        proxy.restore()
        restored_at = reactor.seconds()

        await sleep(1.0)
        sending.stop()
        await until(lambda: sender.answered == sender.sent, 10, "an answer to every SEND")
        receipted = sender.receipted
        await until(lambda: archive_holds(mysql_url, receipted), 20, "the backlog to drain", step=0.05)
        drained_in = reactor.seconds() - restored_at
        await until(lambda: healthy(node), 10, "/healthz to say ok again")
        await until(lambda: len(watcher.messages()) >= len(receipted), 10, "the watcher to get every message")

        stored = await archived(mysql_url)
        count, doubled, missing = stored.tally(receipted)
        report("mysql-cut", sent=sender.sent, receipted=len(receipted), reported=sender.not_stored, stored=count,
               doubled=stored.doubled, receipts_during_cut=during[0], delivered_during_cut=during[1],
               rows_during_cut=rows_after_cut - rows_in_cut, drained_in=f"{drained_in:.1f}s",
               healthz_during_cut=sorted({(s, b.get('database')) for s, b in healths}))

        # chat went on through the cut, and the node said the database was down
        self.assertGreater(during[0], 50, "receipts stopped during the database outage")
        self.assertGreater(during[1], 50, "deliveries stopped during the database outage")
        self.assertEqual(rows_after_cut, rows_in_cut, "rows were stored while the database was cut off")
        for status, body in healths:  # chat goes on: degraded, not down, so a load balancer keeps the node
            self.assertEqual((status, body.get("status"), body.get("database"), body.get("redis")),
                             (200, "degraded", "down", "ok"))
        # nothing lost, nothing doubled, every send accounted for
        self.assertEqual((missing, doubled, stored.doubled), ([], 0, 0))
        self.assertEqual(sender.not_stored, 0)
        self.assertEqual(len(receipted), sender.sent)
        self.assertEqual(watcher.seen(), set(receipted))
        self.assertEqual((sender.errors, watcher.errors, sender.connected, watcher.connected), ([], [], True, True))
        self.assertEqual(await node.stop(), 0, node.read_log()[-3000:])
        final = await archived(mysql_url)
        self.assertEqual(final.doubled, 0)
        self.assertEqual(final.tally(receipted)[1:], (0, []))
        self.assertEqual(final.events("LEAVE"), {sender.name: 1, watcher.name: 1})
