"""Moderation from outside (issue 12): two real ``twistd -n anonchat`` nodes on
one Redis and one MariaDB, the real ``@stomp/stompjs`` (and
``sockjs-client``) in Node, and the admin API over plain HTTP.

A moderator acts on node A; the user it aims at is on node B. Each test
prints one line per action (``report()``): what the user on the other node
saw, and how many milliseconds after the admin request it arrived there.

Every test client is on 127.0.0.1, so banning by address would ban them
all: the nodes trust ``X-Forwarded-For`` from 127.0.0.1
(``--trusted-proxies``) and every client presents its own address. The
clients are one ``stomp_client.js`` run per test in its ``stdin`` mode: the
test hands it one step at a time and reads what each client saw.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, cast

import jwt
from twisted.internet import reactor as _reactor
from twisted.trial.unittest import TestCase

from anonchat.chat.message import id_key
from tests.hostile import http
from tests.serverprocess import ServerProcess
from tests.services import E2E_DIR, require_node
from tests.test_archive_mysql import query_mysql
from tests.test_cluster_faults import fresh_mysql, fresh_shared_redis, node_args, report, sleep, start_all, until
from tests.test_e2e_stompjs import CHAT, ERRORS, NICKNAME, SEND, Events, NodeDriver, body

reactor: Any = _reactor

DRIVER = os.path.join(E2E_DIR, "stomp_client.js")
ADMIN_TOKEN = "modsuite-admin-token-0123456789abcdef"
ACCESS_SECRET = "modsuite-access-secret-0123456789abcdef"
AUDIENCE = "anonchat-tests"
REPORT = "/app/chat.report"
XFF = "X-Forwarded-For"


def address(n: int) -> str:
    """A client address of its own (presented through X-Forwarded-For)."""
    return f"10.12.0.{n}"


def ms_since(start: float, at: float) -> int:
    return round((at - start) * 1000)


class StampedEvents(Events):
    """The driver's events, each with the reactor time it arrived at."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, event: dict[str, Any]) -> None:
        self.times.append(reactor.seconds())
        super().append(event)

    def at(self, event: dict[str, Any]) -> float:
        return next(t for e, t in zip(self, self.times) if e is event)


class LiveClients(NodeDriver):
    """``stomp_client.js`` in its ``stdin`` mode: steps go one at a time, the
    test looks at what came back in between. A failed step (a refused
    CONNECT) is an event like any other, not the end of the run."""

    def __init__(self) -> None:
        super().__init__()
        self._stamped = self.events = StampedEvents()
        self._line = 0

    def at(self, event: dict[str, Any]) -> float:
        """When this event arrived (reactor time)."""
        return self._stamped.at(event)

    async def do(self, step: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Run one step; its ``step`` or ``fail`` event."""
        self._line += 1
        line = self._line
        self.process.write(json.dumps(step, ensure_ascii=False).encode("utf-8") + b"\n")
        return await self.event(lambda e: e["ev"] in ("step", "fail") and e.get("line") == line, timeout,
                                f"step {line} ({step['op']})")

    async def ok(self, step: dict[str, Any], timeout: float = 10.0) -> None:
        done = await self.do(step, timeout)
        assert done["ev"] == "step", f"{step} failed: {done}\n{self.describe()}"

    async def event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0,
                    what: str = "an event") -> dict[str, Any]:
        """The first event (already here or to come) matching ``predicate``."""
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found[:] = [e for e in self.events if predicate(e)][:1]
            return bool(found) or self.ended.called

        try:
            await until(look, timeout, what, step=0.01)
        except AssertionError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.describe()}") from None
        if not found:
            raise AssertionError(f"the driver exited before {what}\n{self.describe()}")
        return found[0]

    # -- a client's steps ---------------------------------------------------------

    async def connect(self, c: str, node: ServerProcess, client_address: str, **more: Any) -> str:
        """A stompjs client on ``node`` as ``client_address``; its nickname."""
        await self.ok({"op": "connect", "c": c, "url": node.ws_url, "wsHeaders": {XFF: client_address},
                       "heartbeat": [0, 0], **more})
        return cast(str, self.events.connected(c)["user-name"])

    async def subscribe(self, c: str, destination: str = CHAT, headers: dict[str, str] | None = None) -> None:
        await self.ok({"op": "subscribe", "c": c, "destination": destination,
                       "id": f"{c}-{destination.rsplit('/', 1)[-1]}", "headers": headers or {}})

    async def send(self, c: str, content: str, receipt: str, destination: str = SEND,
                   payload: dict[str, Any] | None = None) -> None:
        """A SEND asking for a receipt, not waiting for it (a refusal answers
        on the error queue instead)."""
        text = json.dumps(payload, ensure_ascii=False) if payload is not None else body(content)
        await self.ok({"op": "send", "c": c, "destination": destination, "body": text,
                       "headers": {"receipt": receipt}})

    async def answer(self, c: str, receipt: str, timeout: float = 5.0) -> dict[str, Any]:
        """The RECEIPT, or the error that names the receipt instead."""
        return await self.event(
            lambda e: e.get("c") == c and (
                (e["ev"] == "receipt" and e["headers"].get("receipt-id") == receipt)
                or (e["ev"] == "message" and e["headers"]["destination"] == ERRORS
                    and e["headers"].get("receipt-id") == receipt)), timeout, f"an answer to {receipt} on {c}")

    async def chat_message(self, c: str, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0,
                           what: str = "a chat message") -> tuple[dict[str, Any], float]:
        """The first /topic/chat message on ``c`` matching; (body, arrival time)."""
        event = await self.event(
            lambda e: e["ev"] == "message" and e.get("c") == c and e["headers"]["destination"] == CHAT
            and match(json.loads(e["body"])), timeout, f"{what} on {c}")
        return json.loads(event["body"]), self.at(event)

    async def probe(self, c: str, prefix: str, until_answer: Callable[[dict[str, Any] | None], bool],
                    timeout: float = 3.0) -> tuple[dict[str, Any], dict[str, dict[str, Any] | None]]:
        """SEND numbered messages from ``c``, one every 100 ms, until one's
        answer (None for a RECEIPT, else the error) satisfies
        ``until_answer``: that answer's event, and every probe's content
        with its answer."""
        answers: dict[str, dict[str, Any] | None] = {}
        deadline = reactor.seconds() + timeout
        n = 0
        while reactor.seconds() < deadline:
            n += 1
            content, receipt = f"{prefix} {n}", f"{c}-{prefix}-{n}".replace(" ", "-")
            await self.send(c, content, receipt)
            answer = await self.answer(c, receipt)
            answers[content] = refused(answer)
            if until_answer(answers[content]):
                return answer, answers
            await sleep(0.1)
        raise AssertionError(f"no such answer to {prefix!r} within {timeout}s: {answers}")

    async def said(self, c: str, content: str, *watchers: str) -> dict[str, Any]:
        """``c`` says ``content``; once every watcher has it, the message."""
        await self.send(c, content, f"{c}-said-{len(self.events)}")
        seen = [(await self.chat_message(w, lambda m: m["content"] == content, what=repr(content)))[0]
                for w in watchers]
        return seen[0]

    def chat(self, c: str) -> list[dict[str, Any]]:
        return self.events.bodies(c)


def refused(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The error body when an answer is a refusal; None for a RECEIPT."""
    return json.loads(answer["body"]) if answer["ev"] == "message" else None


def as_instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class ModerationTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.node = require_node("@stomp/stompjs", "ws")

    async def two_nodes(self, *extra: str) -> tuple[ServerProcess, ServerProcess]:
        """Nodes A and B on this test's Redis db and MySQL database, sharing
        the admin token, believing X-Forwarded-For from 127.0.0.1; no REST
        rate limit (the test polls)."""
        redis_url = await fresh_shared_redis(self)
        self.mysql = await fresh_mysql(self)
        args = node_args(redis_url, self.mysql, "--admin-token", ADMIN_TOKEN, "--trusted-proxies", "127.0.0.1",
                         "--api-rate", "0", *extra)
        a = ServerProcess(self, *args, name="node-a")
        b = ServerProcess(self, *args, name="node-b")
        await start_all(a, b)
        return a, b

    def clients(self) -> LiveClients:
        driver = LiveClients()
        scenario = json.dumps({"url": "", "steps": [{"op": "stdin"}]})
        process = reactor.spawnProcess(driver, self.node, [self.node, DRIVER, scenario], env=dict(os.environ),
                                       path=E2E_DIR)
        driver.process = process

        def end() -> Any:
            if not driver.ended.called:
                process.signalProcess("KILL")
            return driver.ended

        self.addCleanup(end)
        return driver

    async def admin(self, node: ServerProcess, method: str, path: str, payload: Any = None,
                    token: str | None = ADMIN_TOKEN, client_address: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if client_address is not None:
            headers[XFF] = client_address
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        status, _, raw = await http(node, method, "/api/admin/" + path, headers, data)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    async def rest(self, node: ServerProcess, path: str, client_address: str, **headers: str) -> tuple[int, Any]:
        status, _, raw = await http(node, "GET", path, {XFF: client_address, **headers})
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    async def audit_log_matches_archive(self, node: ServerProcess, newest_first: list[tuple[str, str, str]]) -> None:
        """GET log lists these actions newest first, and moderation_log holds the same rows."""
        status, data = await self.admin(node, "GET", "log")
        self.assertEqual(status, 200, data)
        entries = data["log"]
        self.assertEqual([(e["action"], e["target"], e["reason"]) for e in entries], newest_first)
        stamps = [as_instant(e["at"]) for e in entries]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        rows = await query_mysql(self.mysql, "SELECT id, action, target, reason, created_at FROM moderation_log "
                                             "ORDER BY created_at DESC, id DESC")
        self.assertEqual([(str(r[0]), r[1], r[2], r[3], as_instant(r[4])) for r in rows],
                         [(e["id"], e["action"], e["target"], e["reason"], as_instant(e["at"])) for e in entries])


class BanTests(ModerationTestCase):
    async def test_a_ban_on_one_node_closes_the_user_on_the_other_then_lifts_and_expires(self) -> None:
        a, b = await self.two_nodes()
        victim_at, watcher_at, bystander_at = address(1), address(2), address(3)
        clients = self.clients()
        victim = await clients.connect("v", b, victim_at)
        await clients.subscribe("v")
        await clients.subscribe("v", ERRORS)
        await clients.connect("w", a, watcher_at)
        await clients.subscribe("w")
        await clients.said("v", "before the ban", "w")

        started = reactor.seconds()
        status, ban = await self.admin(a, "POST", "bans", {"name": victim, "minutes": 0, "reason": "spam"})
        self.assertEqual(status, 201, ban)
        self.assertEqual((ban["name"], ban["reason"], ban["expires"]), (victim, "spam", None))
        self.assertTrue(ban["id"] and ban["client"])
        error = await clients.event(lambda e: e["ev"] == "stomp_error" and e["c"] == "v", 3, "v's ERROR")
        self.assertEqual(error["headers"]["message"], "banned")
        closed = await clients.event(lambda e: e["ev"] == "ws_close" and e["c"] == "v", 3, "v's close")
        leave, left_at = await clients.chat_message(
            "w", lambda m: (m["type"], m["sender"]) == ("LEAVE", victim), 3, "v's LEAVE")
        close_ms = ms_since(started, clients.at(closed))
        report("moderation:ban", other_node_user="ERROR banned + close", watcher="LEAVE",
               error_ms=ms_since(started, clients.at(error)), close_ms=close_ms,
               leave_ms=ms_since(started, left_at))
        self.assertLess(close_ms, 2000, "the banned connection must be closed within 2 s")

        # refused at every door of the other node, from that address only
        await clients.do({"op": "raw", "c": "v-again", "url": b.ws_url, "wsHeaders": {XFF: victim_at},
                          "timeout": 3000})
        self.assertEqual(clients.events.of("ws_open", "v-again"), [])
        self.assertIn("403", " ".join(e["message"] for e in clients.events.of("ws_error", "v-again")))
        for method, path in (("GET", "/ws-chat/info"), ("POST", "/ws-chat/123/abcdefgh/xhr")):
            status, _, _ = await http(b, method, path, {XFF: victim_at})
            self.assertEqual(status, 403, f"SockJS {path}")
        self.assertEqual((await http(b, "GET", "/ws-chat/info", {XFF: bystander_at}))[0], 200)
        self.assertEqual((await self.rest(b, "/api/messages/recent", victim_at))[0], 403)
        self.assertEqual((await self.rest(b, "/api/messages/recent", bystander_at))[0], 200)
        status, bans = await self.admin(b, "GET", "bans")
        self.assertEqual((status, [x["id"] for x in bans["bans"]]), (200, [ban["id"]]))

        # lifted on node A: node B lets it in again
        started = reactor.seconds()
        self.assertEqual((await self.admin(a, "DELETE", f"bans/{ban['id']}"))[0], 204)
        await until(lambda: self._rest_status_is(b, victim_at, 200), 3, "node B to lift the ban")
        lifted_ms = ms_since(started, reactor.seconds())
        self.assertRegex(await clients.connect("v2", b, victim_at), NICKNAME)
        await clients.subscribe("v2", ERRORS)
        report("moderation:unban", other_node_user="REST 200 and CONNECTED again", lifted_ms=lifted_ms)
        self.assertEqual((await self.admin(a, "GET", "bans"))[1]["bans"], [])

        # a ban by client, for 0.05 minutes: the new session goes, then the ban ends by itself
        started = reactor.seconds()
        status, short = await self.admin(a, "POST", "bans",
                                         {"client": ban["client"], "minutes": 0.05, "reason": "cool off"})
        self.assertEqual(status, 201, short)
        self.assertEqual(as_instant(short["expires"]) - as_instant(short["created"]), timedelta(seconds=3))
        error = await clients.event(lambda e: e["ev"] == "stomp_error" and e["c"] == "v2", 3, "v2's ERROR")
        await clients.event(lambda e: e["ev"] == "ws_close" and e["c"] == "v2", 3, "v2's close")
        self.assertEqual(error["headers"]["message"], "banned")
        self.assertEqual((await self.rest(b, "/api/users", victim_at))[0], 403)
        await until(lambda: self._rest_status_is(b, victim_at, 200), 6, "the short ban to expire")
        expired_ms = ms_since(started, reactor.seconds())
        await clients.connect("v3", b, victim_at)
        report("moderation:ban-0.05min", other_node_user="ERROR banned + close, then let in",
               error_ms=ms_since(started, clients.at(error)), expired_ms=expired_ms)
        self.assertGreaterEqual(expired_ms, 2900)
        self.assertLess(expired_ms, 5000)
        self.assertEqual(clients.events.of("ws_close", "w"), [], "the watcher was never touched")

        await self.audit_log_matches_archive(b, [("ban", ban["client"], "cool off"), ("unban", victim, ""),
                                                 ("ban", victim, "spam")])

    async def _rest_status_is(self, node: ServerProcess, client_address: str, status: int) -> bool:
        return (await self.rest(node, "/api/messages/recent", client_address))[0] == status


class MuteAndSlowModeTests(ModerationTestCase):
    async def test_mute_and_slow_mode_set_on_one_node_hold_on_the_other(self) -> None:
        a, b = await self.two_nodes()
        clients = self.clients()
        muted = await clients.connect("m", b, address(1))
        await clients.subscribe("m", ERRORS)
        await clients.connect("o", b, address(2))
        await clients.subscribe("o", ERRORS)
        await clients.connect("w", a, address(3))
        await clients.subscribe("w")
        await clients.said("m", "before the mute", "w")

        # muted on node A: node B refuses its SENDs with MUTED, until ...
        started = reactor.seconds()
        status, mute = await self.admin(a, "POST", "mutes", {"name": muted, "minutes": 5, "reason": "flood"})
        self.assertEqual(status, 201, mute)
        self.assertIsNotNone(mute["expires"])
        first, probes = await clients.probe("m", "muted probe", lambda error: error is not None)
        error = refused(first)
        assert error is not None
        self.assertEqual((error["code"], error["until"]), ("MUTED", mute["expires"]))
        muted_ms = ms_since(started, clients.at(first))
        await clients.send("m", "still muted", "m-still")
        self.assertEqual((refused(await clients.answer("m", "m-still")) or {}).get("code"), "MUTED")
        await clients.send("o", "others talk on", "o-1")
        self.assertIsNone(refused(await clients.answer("o", "o-1")))
        await clients.chat_message("w", lambda m: m["content"] == "others talk on", what="o's message")
        self.assertEqual(clients.events.of("ws_close"), [], "a mute keeps the connection")
        seen = {m["content"] for m in clients.chat("w")}
        self.assertNotIn("still muted", seen)
        self.assertEqual({c for c, e in probes.items() if e is None}, {c for c in probes if c in seen},
                         "exactly the receipted probes were broadcast")
        report("moderation:mute", other_node_user="MUTED with until, connection kept", muted_ms=muted_ms,
               probes_passed_before=sum(1 for e in probes.values() if e is None))

        started = reactor.seconds()
        self.assertEqual((await self.admin(a, "DELETE", f"mutes/{mute['id']}"))[0], 204)
        first, _ = await clients.probe("m", "unmuted probe", lambda error: error is None)
        unmuted_ms = ms_since(started, clients.at(first))
        content = json.loads(next(e for e in clients.events.of("message", "w")
                                  if json.loads(e["body"])["content"].startswith("unmuted probe"))["body"])
        self.assertEqual(content["sender"], muted)
        report("moderation:unmute", other_node_user="RECEIPT, message broadcast", unmuted_ms=unmuted_ms)

        # slow mode set on node A: both nodes show it, node B holds each user to it
        started = reactor.seconds()
        self.assertEqual(await self.admin(a, "PUT", "slow-mode", {"seconds": 5}), (200, {"seconds": 5}))
        self.assertEqual((await self.rest(a, "/api/settings", address(9)))[1]["slow_mode"], 5)
        await until(lambda: self._slow_mode_is(b, 5), 3, "node B's /api/settings to show slow mode")
        shown_ms = ms_since(started, reactor.seconds())
        await clients.send("m", "slow 1", "m-slow-1")
        self.assertIsNone(refused(await clients.answer("m", "m-slow-1")))
        await clients.send("m", "slow 2", "m-slow-2")
        slowed = await clients.answer("m", "m-slow-2")
        error = refused(slowed)
        assert error is not None
        self.assertEqual(error["code"], "SLOW_MODE")
        self.assertIn(error["retry_after"], range(1, 6))
        await clients.send("o", "another user's turn", "o-slow-1")
        self.assertIsNone(refused(await clients.answer("o", "o-slow-1")), "slow mode is per user")
        report("moderation:slow-mode", other_node_user="SLOW_MODE with retry_after", settings_shown_ms=shown_ms,
               slow_mode_ms=ms_since(started, clients.at(slowed)), retry_after=error["retry_after"])

        started = reactor.seconds()
        self.assertEqual(await self.admin(a, "PUT", "slow-mode", {"seconds": 0}), (200, {"seconds": 0}))
        await until(lambda: self._slow_mode_is(b, 0), 3, "node B's /api/settings to show slow mode off")
        off_ms = ms_since(started, reactor.seconds())
        await clients.send("m", "fast again", "m-fast")
        self.assertIsNone(refused(await clients.answer("m", "m-fast")))
        report("moderation:slow-mode-off", other_node_user="RECEIPT", settings_shown_ms=off_ms)

        await self.audit_log_matches_archive(a, [("slow-mode", "0", ""), ("slow-mode", "5", ""),
                                                 ("unmute", muted, ""), ("mute", muted, "flood")])

    async def _slow_mode_is(self, node: ServerProcess, seconds: int) -> bool:
        status, data = await self.rest(node, "/api/settings", address(9))
        return status == 200 and data["slow_mode"] == seconds


class DeleteTests(ModerationTestCase):
    async def test_a_deleted_message_is_gone_everywhere_before_and_after_its_flush(self) -> None:
        # no timed flush during the test: the flusher runs when 20 messages
        # have come through the feed (a full batch), when the test says so
        a, b = await self.two_nodes("--flush-interval", "30", "--batch-size", "20")
        clients = self.clients()
        sender = await clients.connect("s", b, address(1))
        for c, node, n in (("wa", a, 2), ("wb", b, 3)):
            await clients.connect(c, node, address(n))
            await clients.subscribe(c)
        kept = await clients.said("s", "kept", "wa", "wb")

        # before its flush: not in MySQL yet, deleted from node A
        unflushed = await clients.said("s", "unflushed 🙈", "wb")
        self.assertEqual(await self._archived(unflushed["id"]), None, "flushed too early for this test")
        await self._delete_everywhere(a, b, clients, unflushed, kept, "before-flush")
        self.assertEqual(await self._archived(unflushed["id"]), None)

        # the flush (a full batch): the deleted message is archived with no content
        for n in range(20):
            await clients.send("s", f"filler {n}", f"s-filler-{n}")
        await until(lambda: self._archived_is(unflushed["id"], ""), 10, "the batch holding it to be archived")
        flushed = next(m for m in clients.chat("wb") if m["content"] == "filler 0")
        self.assertEqual(await self._archived(flushed["id"]), "filler 0")

        # after its flush: its content goes from MySQL at once
        await self._delete_everywhere(a, b, clients, flushed, kept, "after-flush", archived=True)
        self.assertEqual(await self._archived(kept["id"]), "kept")

        # both nodes' subscribers saw the same stream, each DELETE after its target
        streams = []
        for c in ("wa", "wb"):
            seen = clients.chat(c)
            seen = seen[[m["id"] for m in seen].index(kept["id"]):]
            streams.append([(m["id"], m["type"], m.get("target")) for m in seen])
        self.assertEqual(streams[0], streams[1])
        ids = [entry[0] for entry in streams[0]]
        self.assertEqual(ids, sorted(ids, key=id_key))
        for target in (unflushed["id"], flushed["id"]):
            deletes = [i for i, entry in enumerate(streams[0]) if entry[1:] == ("DELETE", target)]
            self.assertEqual(len(deletes), 1, target)
            self.assertLess(ids.index(target), deletes[0])
        self.assertEqual((await self.admin(a, "DELETE", "messages/1-0"))[0], 404)
        await clients.send("s", "after all that", "s-after")
        self.assertIsNone(refused(await clients.answer("s", "s-after")))
        self.assertEqual(sender, clients.events.connected("s")["user-name"])

    async def _delete_everywhere(self, a: ServerProcess, b: ServerProcess, clients: LiveClients,
                                 target: dict[str, Any], kept: dict[str, Any], what: str,
                                 archived: bool = False) -> None:
        """DELETE messages/ID on node A; both nodes' subscribers get the
        DELETE, and recent, history and a replay on either node omit it;
        an ``archived`` message's content leaves MySQL at once."""
        started = reactor.seconds()
        status, _ = await self.admin(a, "DELETE", f"messages/{target['id']}")
        self.assertEqual(status, 204)
        erased = {}
        if archived:
            await until(lambda: self._archived_is(target["id"], ""), 1, "the archived content to be erased")
            erased["mysql_erased_ms"] = ms_since(started, reactor.seconds())
        arrivals = {}
        for c in ("wa", "wb"):
            deletion, at = await clients.chat_message(
                c, lambda m: m["type"] == "DELETE" and m.get("target") == target["id"], 3, "the DELETE")
            self.assertEqual((deletion["content"], set(deletion)),
                             ("", {"id", "type", "sender", "content", "timestamp", "target"}))
            self.assertGreater(id_key(deletion["id"]), id_key(target["id"]))
            arrivals[c] = ms_since(started, at)
        for node in (a, b):
            status, recent = await self.rest(node, "/api/messages/recent?limit=500", address(9))
            self.assertEqual(status, 200)
            self.assertNotIn(target["id"], [m["id"] for m in recent])
            self.assertIn(kept["id"], [m["id"] for m in recent])
            status, page = await self.rest(node, "/api/messages?limit=500", address(9))
            self.assertEqual(status, 200)
            self.assertNotIn(target["id"], [m["id"] for m in page["messages"]])
            self.assertIn(kept["id"], [m["id"] for m in page["messages"]])
            # a client resuming from the message before it: the DELETE, never the message
            c = f"resume-{what}-{node.port}"
            await clients.connect(c, node, address(10))
            await clients.subscribe(c, headers={"x-since-id": kept["id"]})
            await clients.chat_message(c, lambda m: m.get("target") == target["id"], 3, "the replayed DELETE")
            self.assertNotIn(target["id"], [m["id"] for m in clients.chat(c)])
            await clients.ok({"op": "disconnect", "c": c})
        report(f"moderation:delete-{what}", other_node_user="DELETE with target, in order",
               node_b_ms=arrivals["wb"], node_a_ms=arrivals["wa"], **erased)

    async def _archived(self, message_id: str) -> str | None:
        """The content chat_messages holds for this id (None: no row)."""
        try:
            rows = await query_mysql(self.mysql, "SELECT content FROM chat_messages WHERE id = %s", message_id)
        except Exception as e:
            if "doesn't exist" in str(e):
                return None
            raise
        return str(rows[0][0]) if rows else None

    async def _archived_is(self, message_id: str, content: str) -> bool:
        return await self._archived(message_id) == content


class ReportTests(ModerationTestCase):
    async def test_reports_count_each_user_once_show_the_message_and_are_dismissed(self) -> None:
        a, b = await self.two_nodes()
        clients = self.clients()
        await clients.connect("s", b, address(1))
        await clients.subscribe("s")
        await clients.connect("p", a, address(2))
        await clients.subscribe("p", ERRORS)
        await clients.connect("q", b, address(3))
        reported = await clients.said("s", "report me 🚩", "s")

        # p (node A) reports it twice, q (node B) once: two reports, counted on either node
        for n in (1, 2):
            await clients.send("p", "", f"p-report-{n}", REPORT, {"id": reported["id"], "reason": "rude"})
            self.assertIsNone(refused(await clients.answer("p", f"p-report-{n}")))
        await clients.send("q", "", "q-report", REPORT, {"id": reported["id"], "reason": "spam"})
        self.assertIsNone(refused(await clients.answer("q", "q-report")))
        for node in (a, b):
            status, data = await self.admin(node, "GET", "reports")
            self.assertEqual((status, data["count"]), (200, 1), data)
            [entry] = data["reports"]
            self.assertEqual((entry["id"], entry["count"], sorted(entry["reasons"])),
                             (reported["id"], 2, ["rude", "spam"]))
            self.assertEqual(entry["message"], reported)

        # an id nobody sent: NOT_FOUND, naming the receipt
        await clients.send("p", "", "p-unknown", REPORT, {"id": "1-0", "reason": "?"})
        error = refused(await clients.answer("p", "p-unknown"))
        self.assertEqual((error or {}).get("code"), "NOT_FOUND")
        self.assertEqual((error or {}).get("receipt"), "p-unknown")

        # dismissed on node B: gone from node A's list too
        started = reactor.seconds()
        self.assertEqual((await self.admin(b, "DELETE", f"reports/{reported['id']}"))[0], 204)
        self.assertEqual(await self.admin(a, "GET", "reports"), (200, {"reports": [], "count": 0}))
        report("moderation:dismiss-report", other_node_admin="GET reports empty",
               dismissed_ms=ms_since(started, reactor.seconds()))
        self.assertEqual((await self.admin(b, "DELETE", f"reports/{reported['id']}"))[0], 404)
        self.assertEqual(clients.events.of("ws_close"), [])


class BlockedWordsTests(ModerationTestCase):
    async def test_blocked_words_are_refused_and_reloaded_on_sighup(self) -> None:
        words = os.path.join(os.path.abspath(self.mktemp()))
        with open(words, "w", encoding="utf-8") as f:
            f.write("# words nobody may say\nbadword\nforbidden phrase\n")
        node = ServerProcess(self, "--blocked-words", words, "--rate-limit", "0", "--api-rate", "0", name="node")
        await node.start()
        clients = self.clients()
        await clients.connect("s", node, address(1))
        await clients.subscribe("s", ERRORS)
        sent = {"a BadWord here": "BLOCKED_CONTENT", "ｂａｄｗｏｒｄ in full width": "BLOCKED_CONTENT",
                "a FORBIDDEN Phrase": "BLOCKED_CONTENT", "forbidden, phrase apart": None, "newword": None}
        for n, (content, code) in enumerate(sent.items()):
            await clients.send("s", content, f"s-{n}")
            self.assertEqual((refused(await clients.answer("s", f"s-{n}")) or {}).get("code"), code, content)

        with open(words, "w", encoding="utf-8") as f:
            f.write("newword\n")
        started = reactor.seconds()
        node.signal(signal.SIGHUP)
        first, _ = await clients.probe("s", "a newword", lambda error: error is not None)
        self.assertEqual((refused(first) or {}).get("code"), "BLOCKED_CONTENT")
        await clients.send("s", "badword is fine now", "s-after")
        self.assertIsNone(refused(await clients.answer("s", "s-after")))
        report("moderation:blocked-words-sighup", user="BLOCKED_CONTENT for the new word, the old one passes",
               reload_ms=ms_since(started, clients.at(first)))
        self.assertTrue(node.running)
        status, recent = await self.rest(node, "/api/messages/recent", address(9))
        stored = {m["content"] for m in recent if m["type"] == "CHAT"}
        self.assertEqual(stored, {"forbidden, phrase apart", "newword", "badword is fine now"})


def access_token(secret: str = ACCESS_SECRET, **claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 600)
    claims.setdefault("aud", AUDIENCE)
    return jwt.encode(claims, secret, algorithm="HS256")


class AccessTokenTests(ModerationTestCase):
    async def test_only_valid_tokens_chat_over_websocket_and_sockjs_and_a_ban_follows_the_subject(self) -> None:
        node = ServerProcess(self, "--access-jwt-secret", ACCESS_SECRET, "--access-jwt-audience", AUDIENCE,
                             "--admin-token", ADMIN_TOKEN, "--trusted-proxies", "127.0.0.1", "--api-rate", "0",
                             name="node")
        await node.start()
        clients = self.clients()
        bad = {
            "expired": access_token(sub="u1", exp=int(time.time()) - 30),
            "wrong-signature": access_token("another-secret-0123456789abcdef-0123", sub="u1"),
            "wrong-audience": access_token(sub="u1", aud="somewhere-else"),
            "none": None,
        }
        for carrier in ("websocket", "sockjs"):
            more = {"sockjs": "xhr-streaming", "timeout": 10000} if carrier == "sockjs" else {}
            c = f"ok-{carrier}"
            name = await clients.connect(c, node, address(1), headers={"passcode": access_token(sub="u1")}, **more)
            self.assertRegex(name, NICKNAME, "the token's identity is never shown")
            await clients.send(c, f"hello over {carrier}", f"{c}-1")
            self.assertIsNone(refused(await clients.answer(c, f"{c}-1")))
            for why, token in bad.items():
                c = f"{why}-{carrier}"
                headers = {"passcode": token} if token is not None else {}
                done = await clients.do({"op": "connect", "c": c, "url": node.ws_url, "headers": headers,
                                         "heartbeat": [0, 0], **more}, timeout=15)
                self.assertEqual(done["ev"], "fail", c)
                errors = clients.events.of("stomp_error", c)
                self.assertEqual([e["headers"]["message"] for e in errors], ["access denied"], c)
                await clients.event(lambda e: e["ev"] == "ws_close" and e["c"] == c, 3, f"{c} to be closed")
                self.assertEqual(clients.events.of("connected", c), [])

        self.assertEqual(clients.events.of("ws_open", "ok-sockjs")[0]["transport"], "xhr-streaming")

        # REST: a bearer token, but for the settings and the health check
        valid = access_token(sub="u2")
        self.assertEqual((await self.rest(node, "/api/messages/recent", address(2),
                                          Authorization=f"Bearer {valid}"))[0], 200)
        for headers in ({}, {"Authorization": f"Bearer {bad['expired']}"}, {"Authorization": valid}):
            status, _, _ = await http(node, "GET", "/api/users", headers)
            self.assertEqual(status, 401, headers)
        status, settings = await self.rest(node, "/api/settings", address(2))
        self.assertEqual((status, settings["access"]), (200, "token"))
        self.assertEqual((await self.rest(node, "/healthz", address(2)))[0], 200)

        # a ban follows the token's subject to another address
        banned = clients.events.connected("ok-websocket")["user-name"]
        status, ban = await self.admin(node, "POST", "bans", {"name": banned, "minutes": 0, "reason": "x"})
        self.assertEqual(status, 201, ban)
        await clients.event(lambda e: e["ev"] == "ws_close" and e["c"] == "ok-websocket", 3, "the ban to close it")
        done = await clients.do({"op": "connect", "c": "moved", "url": node.ws_url, "wsHeaders": {XFF: address(5)},
                                 "headers": {"passcode": access_token(sub="u1")}, "heartbeat": [0, 0]})
        self.assertEqual(done["ev"], "fail")
        self.assertEqual([e["headers"]["message"] for e in clients.events.of("stomp_error", "moved")], ["banned"])
        self.assertEqual((await self.rest(node, "/api/users", address(5),
                                          Authorization=f"Bearer {access_token(sub='u1')}"))[0], 403)
        await clients.connect("other-subject", node, address(1), headers={"passcode": access_token(sub="u3")})


class AdminApiTests(ModerationTestCase):
    async def test_the_admin_api_wants_its_token_and_exists_only_with_one(self) -> None:
        node = ServerProcess(self, "--admin-token", ADMIN_TOKEN, "--trusted-proxies", "127.0.0.1",
                             "--api-rate", "0", name="node")
        closed = ServerProcess(self, name="no-admin")
        await start_all(node, closed)
        clients = self.clients()
        name = await clients.connect("u", node, address(1))

        status, _, raw = await http(node, "GET", "/api/admin/users")
        self.assertEqual(status, 401, raw)
        self.assertEqual((await self.admin(node, "GET", "users", token="wrong-token-0123456789"))[0], 403)
        status, users = await self.admin(node, "GET", "users")
        self.assertEqual((status, [u["name"] for u in users["users"]], users["count"]), (200, [name], 1))
        self.assertRegex(users["users"][0]["client"], "^[0-9a-f]{8,}$")
        self.assertNotIn(address(1), json.dumps(users))

        # one address guessing tokens is stopped; another address is not
        guesses = [(await self.admin(node, "GET", "users", token=f"guess-{n}", client_address=address(7)))[0]
                   for n in range(12)]
        self.assertEqual(guesses[:10], [403] * 10)
        self.assertEqual(guesses[-1], 429)
        status, headers, _ = await http(node, "GET", "/api/admin/users",
                                        {"Authorization": "Bearer guess-13", XFF: address(7)})
        self.assertEqual((status, headers.get("retry-after")), (429, "60"))
        self.assertEqual((await self.admin(node, "GET", "users", client_address=address(8)))[0], 200)

        # no --admin-token: no admin API at all (a JSON 404, like the rest of /api)
        for token in (None, ADMIN_TOKEN):
            self.assertEqual(await self.admin(closed, "GET", "users", token=token), (404, {"error": "not found"}))
