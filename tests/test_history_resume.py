"""History pages, x-since-id resume and the cluster's online list, from
outside: real STOMP-over-WebSocket clients and plain HTTP, against the
embedded backend in-process and against ``twistd -n anonchat`` children on a
private Redis and MySQL.

The reference for "every message, once, in order, no gap" is always a
watcher: a client subscribed to ``/topic/chat`` before any traffic that never
disconnects. The stream is then its own JOIN (appended before it subscribed)
followed by everything it received.

Helpers (the chatter, the private ``redis-server``, the MySQL lock) come from
``tests/test_cluster_faults.py`` and ``tests/test_archive_mysql.py``.
"""

from __future__ import annotations

import json
import types
from itertools import cycle
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from anonchat.chat.message import id_key
from tests.inprocess import start_service, ws_url
from tests.serverprocess import ServerProcess
from tests.stompfakes import frame
from tests.test_cluster_faults import (
    CHAT,
    ERRORS,
    STREAM,
    Chatter,
    cluster_redis,
    every,
    fresh_mysql,
    redis_connection,
    report,
    sleep,
    start_all,
    strictly_increasing,
    until,
    users_of,
)
from tests.test_archive_mysql import query_mysql

reactor: Any = _reactor

MARKER = "anonchat:trimmed"  # the newest id Redis trimmed away (redis_buffer.py)
#: RedisPresence defaults (anonchat/store/redis_presence.py), not options
NODE_TTL, BEAT = 3.0, 1.0  # --node-ttl 3 (the beat is a third of it)
#: resumers started from the newest id under traffic, one every 20 ms
TIP_RESUMERS = 25


# -- clients --------------------------------------------------------------------


class Http:
    """GETs on one server, keep-alive; (status, headers, body)."""

    def __init__(self, test: unittest.TestCase, base: str) -> None:
        self.base = base
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.agent = Agent(reactor, pool=self.pool)
        self.requests = 0
        #: Pages asked again after a 503 with Retry-After.
        self.retried = 0
        test.addCleanup(self.pool.closeCachedConnections)

    async def get(self, path: str, origin: str | None = None) -> tuple[int, Headers, bytes]:
        headers = Headers({b"Origin": [origin.encode()]}) if origin is not None else None
        response = await self.agent.request(b"GET", (self.base + path).encode(), headers)
        self.requests += 1
        return response.code, response.headers, await readBody(response)

    async def json(self, path: str) -> Any:
        """The page, as a client would get it: a 503 with Retry-After (the
        node is busy serving history) is asked again after it, ten times at
        most."""
        for _ in range(10):
            status, headers, body = await self.get(path)
            retry = headers.getRawHeaders(b"retry-after")
            if status != 503 or not retry:
                break
            self.retried += 1
            await sleep(min(float(retry[0]), 1.0))
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body!r}")
        return json.loads(body)


class Resumer(Chatter):
    """A Chatter whose chat subscription may carry ``x-since-id``."""

    async def join(self, since: str | None = None) -> Resumer:  # type: ignore[override]
        await self.ws.opened
        self.ws.send(frame("CONNECT", accept_version="1.2", heart_beat="0,0", host="anonchat"))
        connected = await self.ws.wait_for_command("CONNECTED", timeout=10)
        self.name = connected[0].get("user-name")
        self.ws.send(frame("SUBSCRIBE", id="err-0", destination=ERRORS))
        extra = {"x_since_id": since} if since is not None else {}
        self.ws.send(frame("SUBSCRIBE", id="sub-0", destination=CHAT, receipt=f"{self.label}-subscribed", **extra))
        await self.ws.wait_for(lambda fs: any(f.get("receipt-id") == f"{self.label}-subscribed" for f in fs), 10)
        return self


def in_process(svc: Any) -> Any:
    """What Chatter needs of a server: its WebSocket URL."""
    return types.SimpleNamespace(ws_url=ws_url(svc))


def chatters(test: unittest.TestCase) -> list[Chatter]:
    """A list whose chatters are closed at cleanup, before their server stops."""
    made: list[Chatter] = []

    async def close_all() -> None:
        for c in made:
            if c.connected:
                await c.close()

    test.addCleanup(close_all)
    return made


async def first_chatter(test: unittest.TestCase, server: ServerProcess,
                        label: str) -> tuple[Http, list[Chatter], Chatter, dict[str, Any]]:
    """An Http client on ``server``, the chatters list, and a first Chatter
    in it, joined, with its JOIN (the first message)."""
    http = Http(test, server.url)
    made = chatters(test)
    chatter = Chatter(server, label)
    made.append(chatter)
    await chatter.join()
    join = (await http.json("/api/messages/recent?limit=1"))[0]
    test.assertEqual((join["type"], join["sender"]), ("JOIN", chatter.name))
    return http, made, chatter, join


def burst(sender: Chatter, n: int) -> None:
    if sender.connected:
        for _ in range(n):
            sender.send()


def key(message: dict[str, Any]) -> tuple[int, int]:
    return id_key(message["id"])


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["id"] for m in messages]


async def caught_up(sender: Chatter, *receivers: Chatter, timeout: float = 20) -> None:
    """Every send receipted, and every receiver has every receipted CHAT."""
    await until(lambda: len(sender.receipted) == sender.sent, timeout, f"{sender.label}: a RECEIPT for every SEND")
    if sender.not_stored or sender.other_reports:
        raise AssertionError(f"{sender.label} got application errors: {sender.not_stored} NOT_STORED,"
                             f" others {sender.other_reports[:5]}")
    wanted = set(sender.receipted)
    for r in receivers:
        await until(lambda: wanted <= r.seen(), timeout, f"{r.label} to receive every receipted CHAT")


# -- history pages ----------------------------------------------------------------


async def walk(http: Http, limit: int | None, max_pages: int = 2000) -> list[dict[str, Any]]:
    """GET /api/messages, then ?before=next_before, until next_before is null."""
    pages = []
    before: str | None = None
    while True:
        query = [] if limit is None else [f"limit={limit}"]
        if before is not None:
            query.append(f"before={before}")
        page = await http.json("/api/messages" + ("?" + "&".join(query) if query else ""))
        pages.append(page)
        before = page["next_before"]
        if before is None:
            return pages
        if len(pages) >= max_pages:
            raise AssertionError(f"no end after {max_pages} pages of {limit}")


def flatten(test: unittest.TestCase, pages: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Check the page shapes; return every message, oldest first."""
    for n, page in enumerate(pages):
        messages = page["messages"]
        where = f"page {n} of {len(pages)} (limit {limit})"
        test.assertTrue(strictly_increasing(ids(messages)), f"{where} is not oldest first")
        if page["next_before"] is None:
            test.assertEqual(n, len(pages) - 1, f"{where}: next_before null before the end")
            test.assertLessEqual(len(messages), limit, where)
        else:
            test.assertEqual(len(messages), limit, f"{where} has a next_before but is not full")
            test.assertEqual(page["next_before"], messages[0]["id"], f"{where}: next_before is not its oldest id")
        if n and messages and pages[n - 1]["messages"]:
            test.assertLess(key(messages[-1]), key(pages[n - 1]["messages"][0]),
                            f"{where} overlaps or is newer than the page before it")
    flat = [m for page in reversed(pages) for m in page["messages"]]
    test.assertTrue(strictly_increasing(ids(flat)), f"limit {limit}: a message twice or out of order across pages")
    return flat


def stream_of(watcher: Chatter, join: dict[str, Any]) -> list[dict[str, Any]]:
    """Every message so far: the watcher's own JOIN, then what it received."""
    return [join, *watcher.messages(None)]


# -- 1. REST on the embedded backend ------------------------------------------------


class EmbeddedHistoryTests(unittest.TestCase):
    timeout = 30

    async def populated(self, chats: int, **settings: Any) -> tuple[Any, Http, Chatter, list[dict[str, Any]]]:
        """A service holding one client's JOIN and ``chats`` CHATs from it;
        the buffer keeps 100, so history spans buffer and SQLite."""
        svc = await start_service(self, flush_interval=0.05, batch_size=50, redis_retain=100, rate_limit=0.0, frame_rate=0.0,
                                  api_rate=0.0, **settings)  # walks page faster than --api-rate
        http = Http(self, f"http://127.0.0.1:{svc.listening_port}")
        made = chatters(self)
        sender = Chatter(in_process(svc), "s")
        made.append(sender)
        await sender.join()
        join = (await http.json("/api/messages/recent?limit=1"))[0]
        self.assertEqual((join["type"], join["sender"]), ("JOIN", sender.name))
        for n in range(chats):
            sender.send()
            if n % 100 == 99:
                await sleep(0.01)
        await caught_up(sender, sender)
        await until(lambda: svc.flusher.flushed_total == chats + 1, 10, "the flusher to archive everything")
        return svc, http, sender, stream_of(sender, join)

    async def test_pages_back_until_next_before_is_null_every_message_once(self) -> None:
        chats = 519
        _, http, _, stream = await self.populated(chats)
        self.assertEqual(len(stream), chats + 1)
        walked = {}
        for limit in (50, 52, 7, 500, None):
            pages = await walk(http, limit)
            size = 50 if limit is None else limit
            flat = flatten(self, pages, size)
            self.assertEqual(flat, stream, f"limit {limit}: the walk is not the whole stream")
            full, rest = divmod(len(stream), size)
            # a full last page still names next_before; the page after it is empty
            self.assertEqual(len(pages), full + 1, f"limit {limit}: pages")
            self.assertEqual(len(pages[-1]["messages"]), rest)
            walked[limit] = len(pages)
        # newest page first: the first page ends with the newest message
        first = await http.json("/api/messages?limit=1")
        self.assertEqual(first["messages"], stream[-1:])
        self.assertEqual(first["next_before"], stream[-1]["id"])
        cursor, seen = None, []
        for _ in range(5):
            page = await http.json("/api/messages?limit=1" + (f"&before={cursor}" if cursor else ""))
            seen[:0] = page["messages"]
            cursor = page["next_before"]
        self.assertEqual(seen, stream[-5:])
        # before = the oldest id: nothing older
        self.assertEqual(await http.json(f"/api/messages?before={stream[0]['id']}"),
                         {"messages": [], "next_before": None})
        # before = an id between two messages (no such message): the older ones
        ms, seq = id_key(stream[300]["id"])
        between = f"{ms}-{seq + 1}"
        if id_key(between) == key(stream[301]):
            between = f"{ms + 1}-0" if key(stream[301]) > (ms + 1, 0) else stream[301]["id"]
        page = await http.json(f"/api/messages?limit=3&before={between}")
        self.assertEqual(page["messages"], stream[298:301])
        report("embedded-history", messages=len(stream), walks=len(walked), pages=sum(walked.values()) + 6)

    async def test_limit_bounds_the_page_and_defaults_to_50(self) -> None:
        _, http, _, stream = await self.populated(600)
        for limit, size in ((None, 50), ("", 50), (1, 1), ("05", 5), (499, 499), (500, 500)):
            query = "" if limit is None else f"?limit={limit}"
            page = await http.json("/api/messages" + query)
            self.assertEqual(page["messages"], stream[-size:], f"limit={limit!r}")
            self.assertEqual(page["next_before"], stream[-size]["id"])
            # recent reads the buffer only, which keeps the newest 100 archived
            recent = await http.json("/api/messages/recent" + query)
            self.assertEqual(recent, stream[-min(size, 100):], f"recent limit={limit!r}")

    async def test_bad_parameters_are_400_with_a_json_error(self) -> None:
        svc = await start_service(self)
        http = Http(self, f"http://127.0.0.1:{svc.listening_port}")
        bad = ["limit=0", "limit=501", "limit=abc", "limit=-1", "limit=1.5", "limit=%20", "limit=%C2%B2",
               "before=xyz", "before=1-", "before=-1", "before=1-x", "before=1--1", "before=%FF",
               "before=99999999999999999999999-0"]
        problems = []
        for path in ("/api/messages", "/api/messages/recent"):
            for query in bad:
                if path.endswith("recent") and query.startswith("before"):
                    continue
                status, headers, body = await http.get(f"{path}?{query}")
                try:
                    error = json.loads(body)["error"]
                    typed = headers.getRawHeaders(b"content-type", [b""])[0].startswith(b"application/json")
                except (ValueError, KeyError, TypeError):
                    error, typed = None, False
                if status != 400 or not isinstance(error, str) or not error or not typed:
                    problems.append(f"{path}?{query} -> {status} {body[:80]!r}")
        self.assertEqual(problems, [])

    async def test_recent_is_the_newest_n_oldest_first(self) -> None:
        _, http, _, stream = await self.populated(150)
        for n in (1, 5, 50, 100):
            self.assertEqual(await http.json(f"/api/messages/recent?limit={n}"), stream[-n:], f"limit={n}")
        self.assertEqual(await http.json("/api/messages/recent"), stream[-50:])
        # past what the buffer keeps (100 flushed): a newest suffix, oldest first
        more = await http.json("/api/messages/recent?limit=500")
        self.assertGreaterEqual(len(more), 100)
        self.assertEqual(more, stream[-len(more):])

    async def test_cors_echoes_the_origin_with_credentials(self) -> None:
        svc = await start_service(self)
        http = Http(self, f"http://127.0.0.1:{svc.listening_port}")
        origin = "https://somewhere.example"
        for path in ("/api/messages", "/api/messages/recent", "/api/users"):
            status, headers, _ = await http.get(path, origin=origin)
            self.assertEqual(status, 200, path)
            self.assertEqual(headers.getRawHeaders(b"access-control-allow-origin"), [origin.encode()], path)
            self.assertEqual(headers.getRawHeaders(b"access-control-allow-credentials"), [b"true"], path)

    async def test_allowed_origins_refuse_other_origins_with_403(self) -> None:
        good, evil = "https://chat.example", "https://evil.example"
        svc = await start_service(self, allowed_origins=frozenset({good}))
        http = Http(self, f"http://127.0.0.1:{svc.listening_port}")
        for path in ("/api/messages", "/api/messages/recent", "/api/users", "/api/messages?before=1-0&limit=5"):
            status, headers, body = await http.get(path, origin=evil)
            self.assertEqual(status, 403, path)
            self.assertTrue(json.loads(body)["error"], path)
            self.assertIsNone(headers.getRawHeaders(b"access-control-allow-origin"), path)
            status, headers, _ = await http.get(path, origin=good)
            self.assertEqual(status, 200, path)
            self.assertEqual(headers.getRawHeaders(b"access-control-allow-origin"), [good.encode()], path)
            self.assertEqual(headers.getRawHeaders(b"access-control-allow-credentials"), [b"true"], path)
            status, _, _ = await http.get(path)  # no Origin: not a cross-origin request
            self.assertEqual(status, 200, path)


# -- 2. history under traffic on Redis + MySQL -----------------------------------------

#: Larger than anything these tests send: a replay is never cut short.
NO_REPLAY_BOUND = 1_000_000


def redis_mysql_args(redis_url: str, mysql_url: str) -> list[str]:
    return ["--redis", redis_url, "--database", mysql_url, "--flush-interval", "0.05", "--batch-size", "50",
            "--redis-retain", "20", "--rate-limit", "0", "--frame-rate", "0",
            # these resumers miss thousands: no --max-replay bound, so the
            # whole path through the archive is checked for gaps
            "--max-replay", str(NO_REPLAY_BOUND),
            # a dropped session leaves at once (its LEAVE is replayed below)
            "--rejoin-grace", "0"]


async def oldest_in_redis(redis: Any) -> str | None:
    entries = await redis.execute_command("XRANGE", STREAM, "-", "+", "COUNT", 1)
    if not entries:
        return None
    first = entries[0][0]
    return first.decode() if isinstance(first, bytes) else str(first)


class HistoryUnderTrafficTests(unittest.TestCase):
    timeout = 60

    async def test_every_walk_holds_every_receipted_message_once_in_order(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        server = ServerProcess(self, *redis_mysql_args(redis_url, mysql_url), "--api-rate", "0", name="history")
        await server.start()
        redis = await redis_connection(redis_url)
        self.addCleanup(redis.disconnect)
        http, made, watcher, join = await first_chatter(self, server, "w")
        sender = Chatter(server, "s")
        made.append(sender)
        await sender.join()

        traffic = every(0.1, lambda: burst(sender, 80))  # bursts: each flush archives, then trims, dozens at once
        walks: list[tuple[int, list[str], list[dict[str, Any]], str | None, str | None]] = []
        limits = cycle([50, 200, 500, 33, 120])
        started = reactor.seconds()
        try:
            await sleep(0.3)
            while reactor.seconds() - started < 6:
                limit = next(limits)
                receipted = list(sender.receipted)
                oldest_before = await oldest_in_redis(redis)
                pages = await walk(http, limit)
                walks.append((limit, receipted, pages, oldest_before, await oldest_in_redis(redis)))
        finally:
            traffic.stop()
        await caught_up(sender, watcher)
        stream = stream_of(watcher, join)
        self.assertTrue(strictly_increasing(ids(stream)), "the watcher saw ids out of order")

        moved = 0
        for n, (limit, receipted, pages, oldest_before, oldest_after) in enumerate(walks):
            flat = flatten(self, pages, limit)
            top = key(flat[-1])
            expected = [m for m in stream if key(m) <= top]
            if ids(flat) != ids(expected):
                have, want = set(ids(flat)), set(ids(expected))
                self.fail(f"walk {n} (limit {limit}, {len(pages)} pages): missing {sorted(want - have)[:10]}"
                          f" ({len(want - have)}), unexpected {sorted(have - want)[:10]}")
            self.assertEqual(flat, expected, f"walk {n}: a message differs from what the watcher received")
            contents = {m["content"] for m in flat}
            lost = [c for c in receipted if c not in contents]
            self.assertEqual(lost, [], f"walk {n}: receipted before the walk yet not in it")
            if oldest_before is not None and oldest_after is not None and id_key(oldest_after) > id_key(oldest_before):
                moved += 1
        self.assertGreaterEqual(len(walks), 5)
        self.assertGreater(moved, 0, "Redis was never trimmed during a walk; the test proves nothing")
        archived = (await query_mysql(mysql_url, "SELECT COUNT(*) FROM chat_messages"))[0][0]
        report("history-under-traffic", sent=sender.sent, messages=len(stream), walks=len(walks),
               pages=sum(len(w[2]) for w in walks), walks_during_trim=moved,
               largest_walk=max(sum(len(p["messages"]) for p in w[2]) for w in walks), archived=archived)


# -- 3. resume with x-since-id -----------------------------------------------------------


class ResumeTests(unittest.TestCase):
    timeout = 60

    def check_resumed(self, label: str, stream: list[dict[str, Any]], since: str, got: list[dict[str, Any]]) -> None:
        expected = [m for m in stream if key(m) > id_key(since)]
        if ids(got) == ids(expected):
            self.assertEqual(got, expected, f"{label}: a replayed message differs from the live one")
            return
        counts: dict[str, int] = {}
        for i in ids(got):
            counts[i] = counts.get(i, 0) + 1
        doubled = sorted((i for i, c in counts.items() if c > 1), key=id_key)
        missing = sorted(set(ids(expected)) - set(counts), key=id_key)
        out_of_order = not strictly_increasing(list(dict.fromkeys(ids(got))))
        self.fail(f"{label}: got {len(got)}, expected {len(expected)} after {since}; doubled {len(doubled)}"
                  f" {doubled[:5]}, missing {len(missing)} {missing[:5]}, out of order {out_of_order}")

    async def resume(self, target: Any, trimmed_past: Any, label: str) -> None:
        """A watcher, two senders and a resumer; the resumer drops, the
        buffer trims past its last id, it comes back with x-since-id while
        the senders go on. Then, still under traffic, a resumer every 20 ms
        from the newest id the watcher has, to race the replay's last read
        against the live feed. Each must get exactly the watcher's stream
        after its id."""
        made = chatters(self)
        watcher = Chatter(target, "w")
        made.append(watcher)
        await watcher.join()
        senders = [Chatter(target, "s1"), Chatter(target, "s2")]
        first = Resumer(target, "r1")
        made.extend([*senders, first])
        for c in [*senders, first]:
            await c.join()

        traffic = [every(0.01, lambda s=s: burst(s, 8)) for s in senders]  # up to 1,600 a second
        tips: list[tuple[Resumer, str]] = []
        try:
            await until(lambda: len(first.messages()) >= 40, 10, "the resumer to see some messages")
            seen = first.messages(None)
            last = seen[-1]["id"]
            first.ws.drop()
            at_drop = sum(s.sent for s in senders)
            await until(lambda: trimmed_past(last), 15, f"the buffer to trim past {last}")
            await until(lambda: sum(s.sent for s in senders) >= at_drop + 1000, 15, "traffic while it is away")
            again = Resumer(target, "r2")
            made.append(again)
            await again.join(since=last)
            for n in range(TIP_RESUMERS):
                since = watcher.messages(None)[-1]["id"]
                tip = Resumer(target, f"t{n}")
                made.append(tip)
                tips.append((tip, since))
                await tip.join(since=since)
                await sleep(0.02)
        finally:
            for loop in traffic:
                loop.stop()
        for s in senders:
            await caught_up(s, watcher)
        newest = watcher.messages(None)[-1]["id"]
        for c in [again, *(t for t, _ in tips)]:
            await until(lambda: newest in ids(c.messages(None)), 10, f"{c.label} to reach the newest message")
        await sleep(0.2)  # for anything delivered twice late

        stream = watcher.messages(None)
        self.assertTrue(strictly_increasing(ids(stream)))
        before = [m for m in stream if key(m) <= id_key(last)]
        self.assertEqual(ids(seen), ids(before[-len(seen):]), "the first session saw another stream")
        got = again.messages(None)
        self.check_resumed(f"{label} r2 (trimmed past)", stream, last, got)
        self.assertIn(("LEAVE", first.name), [(m["type"], m["sender"]) for m in got], "its own LEAVE replayed")
        self.assertIn(("JOIN", again.name), [(m["type"], m["sender"]) for m in got], "its own JOIN replayed")
        failed = []
        for tip, since in tips:
            try:
                self.check_resumed(f"{label} {tip.label}", stream, since, tip.messages(None))
            except self.failureException as e:
                failed.append(str(e))
        report(f"resume-{label}", sent=sum(s.sent for s in senders), before_drop=len(seen), resumed=len(got),
               tip_resumers=len(tips), tip_resumers_wrong=len(failed))
        self.assertEqual(failed, [], f"{len(failed)} of {len(tips)} resumers at the tip")

    async def test_resume_on_the_embedded_backend(self) -> None:
        svc = await start_service(self, flush_interval=0.05, batch_size=50, redis_retain=20, rate_limit=0.0,
                                  frame_rate=0.0, max_replay=NO_REPLAY_BOUND, rejoin_grace=0.0)

        async def trimmed_past(last: str) -> bool:
            return await svc.buffer.read_after(last, 1) is None

        await self.resume(in_process(svc), trimmed_past, "embedded")

    async def test_resume_on_redis_and_mysql(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        server = ServerProcess(self, *redis_mysql_args(redis_url, mysql_url), name="resume")
        await server.start()
        redis = await redis_connection(redis_url)
        self.addCleanup(redis.disconnect)

        async def trimmed_past(last: str) -> bool:
            marker = await redis.execute_command("GET", MARKER)
            if marker is None:
                return False
            return id_key(marker.decode() if isinstance(marker, bytes) else str(marker)) > id_key(last)

        await self.resume(server, trimmed_past, "redis-mysql")


# -- 4. the online list across two nodes ------------------------------------------------------


class ClusterUsersTests(unittest.TestCase):
    timeout = 60

    async def test_users_of_a_killed_node_leave_once_within_ttl_and_beat(self) -> None:
        redis_url = await cluster_redis(self)
        a = ServerProcess(self, "--redis", redis_url, "--node-ttl", str(NODE_TTL), name="node-a")
        b = ServerProcess(self, "--redis", redis_url, "--node-ttl", str(NODE_TTL), name="node-b")
        await start_all(a, b)
        made = chatters(self)
        on_a = [Chatter(a, "a1"), Chatter(a, "a2")]
        on_b = [Chatter(b, "b1"), Chatter(b, "b2")]
        made.extend(on_a + on_b)
        for c in on_a + on_b:
            await c.join()
        a_names, b_names = {c.name for c in on_a}, {c.name for c in on_b}
        self.assertEqual(len(a_names | b_names), 4)
        for node in (a, b):
            await until(lambda: self._users_are(node, a_names | b_names), 5, "both nodes' users on every node")

        self.assertEqual(await a.kill(), -9)
        killed = reactor.seconds()
        for c in on_a:
            await until(lambda: not c.connected, 5, f"{c.label}'s socket to close")
        bound = NODE_TTL + BEAT + 3  # the last keep-alive up to a beat before the kill, reaped up to a beat after expiry
        await until(lambda: self._users_are(b, b_names), bound, "node a's users to leave node b's list")
        gone_after = reactor.seconds() - killed
        await sleep(BEAT + 0.5)  # another beat: the reaping must not repeat
        self.assertEqual(await users_of(b), b_names)
        for watcher in on_b:
            leaves = [m["sender"] for m in watcher.messages("LEAVE")]
            self.assertEqual(sorted(leaves), sorted(a_names), f"{watcher.label}: one LEAVE for each of node a's users")
        report("killed-node-users", killed_users=len(a_names), gone_after_s=round(gone_after, 2),
               bound_s=bound, leaves_per_watcher=[len(w.messages("LEAVE")) for w in on_b])

    async def _users_are(self, node: ServerProcess, names: set[Any]) -> bool:
        return await users_of(node) == names
