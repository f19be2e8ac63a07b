"""The real ``@stomp/stompjs`` client in Node against a real ``twistd -n anonchat``.

Each test starts a server (``ServerProcess``) and runs
``tests/e2e/stomp_client.js`` with a scenario; the driver prints one JSON
line per thing the client saw, and the test pins those against
``CONTRACT.md``: CONNECTED and MESSAGE headers, chat message shapes,
receipts, ordering, JOIN/LEAVE, heart-beats, application errors, protocol
errors, Unicode, the recent API, and the archive after SIGTERM.

Without ``node`` or ``tests/e2e/node_modules`` (``npm ci`` in ``tests/e2e``)
the tests are skipped, unless ``ANONCHAT_TEST_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, cast

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.serverprocess import ServerProcess
from tests.services import E2E_DIR, require_node

DRIVER = os.path.join(E2E_DIR, "stomp_client.js")
CHAT = "/topic/chat"
ERRORS = "/user/queue/errors"
SEND = "/app/chat.sendMessage"
JSON_TYPE = "application/json;charset=UTF-8"
NICKNAME = re.compile(r"^익명-\d{5}$")
SERVER = re.compile(r"^anonchat/\d+\.\d+")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MESSAGE_KEYS = {"id", "type", "sender", "content", "timestamp"}


def node_executable() -> str:
    """``node``, or skip (fail under ``ANONCHAT_TEST_REQUIRE_SERVICES=1``)."""
    return require_node("@stomp/stompjs", "ws")


def body(text: str) -> str:
    return json.dumps({"content": text}, ensure_ascii=False)


def id_key(message_id: str) -> tuple[int, ...]:
    """Order of the server's ids (``<ms>-<seq>``, compared part by part)."""
    return tuple(int(part) for part in message_id.split("-"))


class Events(list):  # type: ignore[type-arg]
    """The driver's JSON lines, with a few views used by the assertions."""

    def of(self, ev: str, c: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self if e["ev"] == ev and (c is None or e.get("c") == c)]

    def connected(self, c: str) -> dict[str, str]:
        frames = self.of("connected", c)
        assert len(frames) == 1, frames
        return frames[0]["headers"]  # type: ignore[no-any-return]

    def messages(self, c: str, destination: str = CHAT, type: str | None = None) -> list[dict[str, Any]]:
        found = [e for e in self.of("message", c) if e["headers"]["destination"] == destination]
        if type is not None:
            found = [e for e in found if json.loads(e["body"])["type"] == type]
        return found

    def bodies(self, c: str, destination: str = CHAT, type: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(e["body"]) for e in self.messages(c, destination, type)]


class NodeDriver(ProcessProtocol):
    """One run of ``stomp_client.js``; events as they arrive, exit code at the end."""

    def __init__(self) -> None:
        self.events = Events()
        self.stderr = b""
        self._partial = b""
        self._waiting: list[tuple[Callable[[dict[str, Any]], bool], Deferred[dict[str, Any]]]] = []
        self.ended: Deferred[int] = Deferred()
        self.process: Any = None

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line.decode("utf-8"))
            self.events.append(event)
            for entry in list(self._waiting):
                if entry[0](event):
                    self._waiting.remove(entry)
                    entry[1].callback(event)

    def go(self) -> None:
        """Release an ``input`` step."""
        self.process.write(b"go\n")

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> Deferred[dict[str, Any]]:
        for event in self.events:
            if predicate(event):
                return succeed(event)
        d: Deferred[dict[str, Any]] = Deferred()
        self._waiting.append((predicate, d))
        return d

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code = 0 if isinstance(value, ProcessDone) else (value.exitCode if isinstance(value, ProcessTerminated) else -1)
        for _, d in self._waiting:
            d.errback(AssertionError(f"node exited ({code}) before the awaited event; {self.describe()}"))
        self._waiting = []
        self.ended.callback(code if code is not None else -1)

    def describe(self) -> str:
        lines = "\n".join(json.dumps(e, ensure_ascii=False) for e in self.events[-40:])
        return f"events:\n{lines}\nstderr:\n{self.stderr.decode('utf-8', 'replace')[-3000:]}"


class StompJsTestCase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.node = node_executable()

    async def start_server(self, *args: str) -> ServerProcess:
        # a client that vanishes (the driver exits, a socket is destroyed)
        # is gone after a short rejoin grace, not the default 30 s
        server = ServerProcess(self, "--rejoin-grace", "1", *args)
        await server.start()
        return server

    def spawn(self, server: ServerProcess, steps: list[dict[str, Any]]) -> NodeDriver:
        driver = NodeDriver()
        scenario = json.dumps({"url": server.ws_url, "steps": steps}, ensure_ascii=False)
        argv = [self.node, DRIVER, scenario]
        process = cast(Any, reactor).spawnProcess(driver, self.node, argv, env=dict(os.environ), path=E2E_DIR)

        def kill() -> Deferred[int]:
            if not driver.ended.called:
                process.signalProcess("KILL")
            return driver.ended

        self.addCleanup(kill)
        driver.process = process
        return driver

    async def run_scenario(self, server: ServerProcess, steps: list[dict[str, Any]]) -> Events:
        """Run to the end; the scenario must complete (exit 0, ``done``)."""
        driver = self.spawn(server, steps)
        code = await driver.ended
        self.assertEqual((code, driver.events.of("fail")), (0, []), driver.describe())
        self.assertEqual(driver.events[-1]["ev"], "done", driver.describe())
        return driver.events

    # -- shared assertions ------------------------------------------------

    def assertConnected(self, events: Events, c: str, version: str = "1.2", heartbeat: str | None = "10000,10000") -> str:
        headers = events.connected(c)
        self.assertEqual(headers["version"], version)
        if heartbeat is not None:
            self.assertEqual(headers["heart-beat"], heartbeat)
        self.assertRegex(headers["server"], SERVER)
        self.assertTrue(headers["session"])
        self.assertRegex(headers["user-name"], NICKNAME)
        return headers["user-name"]

    def assertMessageFrame(self, event: dict[str, Any], subscription: str, destination: str = CHAT) -> dict[str, Any]:
        headers = event["headers"]
        self.assertEqual(headers["destination"], destination)
        self.assertEqual(headers["subscription"], subscription)
        self.assertEqual(headers["content-type"], JSON_TYPE)
        self.assertEqual(int(headers["content-length"]), len(event["body"].encode("utf-8")))
        message: dict[str, Any] = json.loads(event["body"])
        if destination == CHAT:
            self.assertEqual(headers["message-id"], message["id"])
            self.assertChatMessage(message)
        return message

    def assertChatMessage(self, message: dict[str, Any]) -> None:
        self.assertEqual(set(message), MESSAGE_KEYS, message)
        self.assertIn(message["type"], ("CHAT", "JOIN", "LEAVE"))
        self.assertIsInstance(message["id"], str)
        self.assertRegex(message["sender"], NICKNAME)
        self.assertRegex(message["timestamp"], TIMESTAMP)
        when = datetime.strptime(message["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        self.assertLess(abs(datetime.now(timezone.utc) - when), timedelta(minutes=2), message)
        if message["type"] != "CHAT":
            self.assertEqual(message["content"], "")

    def assertAppError(self, event: dict[str, Any], subscription: str) -> dict[str, Any]:
        error = self.assertMessageFrame(event, subscription, ERRORS)
        self.assertEqual(set(error), {"code", "message"}, error)
        self.assertIsInstance(error["code"], str)
        self.assertTrue(error["code"])
        self.assertIsInstance(error["message"], str)
        self.assertTrue(error["message"])
        return error

    async def users(self, server: ServerProcess) -> list[str]:
        status, data = await server.get("/api/users")
        self.assertEqual(status, 200, data)
        online = json.loads(data)
        self.assertEqual(online["count"], len(online["users"]))
        return [u["name"] for u in online["users"]]

    async def everyone_left(self, server: ServerProcess) -> None:
        """Wait until the server has closed every session (their LEAVEs are in)."""
        for _ in range(100):
            if not await self.users(server):
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail("sessions still open after the client exited")

    async def recent(self, server: ServerProcess, limit: int) -> list[dict[str, Any]]:
        status, data = await server.get(f"/api/messages/recent?limit={limit}")
        self.assertEqual(status, 200, data)
        result: list[dict[str, Any]] = json.loads(data)
        return result


class ChatTests(StompJsTestCase):
    async def test_join_chat_spoofed_sender_and_receipt(self) -> None:
        """CONNECTED headers, JOIN, CHAT with server-set fields, RECEIPT, MESSAGE headers."""
        server = await self.start_server()
        spoof = {"content": "hello from a", "sender": "admin", "id": "9999999999999-0",
                 "timestamp": "2000-01-01T00:00:00.000Z", "type": "LEAVE"}
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "a"},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "sub-a"},
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "my-sub-7"},
            {"op": "wait", "c": "a", "count": 1, "type": "JOIN"},
            {"op": "send", "c": "a", "destination": SEND, "body": json.dumps(spoof), "receipt": "r-1"},
            {"op": "wait", "c": "a", "count": 1, "type": "CHAT"},
            {"op": "wait", "c": "b", "count": 1, "type": "CHAT"},
        ])
        a_name = self.assertConnected(events, "a")
        b_name = self.assertConnected(events, "b")
        self.assertNotEqual(a_name, b_name)
        self.assertNotEqual(events.connected("a")["session"], events.connected("b")["session"])
        self.assertEqual([e["protocol"] for e in events.of("ws_open")], ["v12.stomp", "v12.stomp"])

        # a saw b's session open, exactly once (whether a sees its own JOIN is not pinned).
        joins = [self.assertMessageFrame(e, "sub-a") for e in events.messages("a", type="JOIN")]
        joins = [j for j in joins if j["sender"] != a_name]
        self.assertEqual([(j["sender"], j["content"]) for j in joins], [(b_name, "")])

        # The RECEIPT for the SEND.
        self.assertEqual([e["headers"]["receipt-id"] for e in events.of("receipt", "a")], ["r-1"])

        # Both see the CHAT, with the server's sender, id, timestamp and type.
        seen_by_a = [self.assertMessageFrame(e, "sub-a") for e in events.messages("a", type="CHAT")]
        seen_by_b = [self.assertMessageFrame(e, "my-sub-7") for e in events.messages("b", type="CHAT")]
        self.assertEqual(seen_by_a, seen_by_b)
        self.assertEqual(len(seen_by_a), 1)
        chat = seen_by_a[0]
        self.assertEqual((chat["type"], chat["sender"], chat["content"]), ("CHAT", a_name, "hello from a"))
        self.assertNotEqual(chat["id"], spoof["id"])
        self.assertNotEqual(chat["timestamp"], spoof["timestamp"])
        self.assertGreater(id_key(chat["id"]), id_key(joins[0]["id"]))
        self.assertEqual(events.of("ws_close"), [])

    async def test_unsubscribe_ends_delivery(self) -> None:
        """After UNSUBSCRIBE (and its RECEIPT) nothing more arrives on that
        subscription: a React component that unmounts and mounts again
        gets each message once, on its new subscription."""
        server = await self.start_server()
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "a"},
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "old"},
            {"op": "subscribe", "c": "a", "destination": "/topic/chat.typing", "id": "old-typing"},
            {"op": "unsubscribe", "c": "a", "id": "old", "receipt": "u-1"},
            {"op": "unsubscribe", "c": "a", "id": "old-typing", "receipt": "u-2"},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "new"},
            {"op": "send", "c": "b", "destination": "/app/chat.typing", "body": '{"typing": true}'},
            {"op": "send", "c": "b", "destination": SEND, "body": body("after"), "receipt": "r-1"},
            {"op": "wait", "c": "a", "count": 1, "type": "CHAT", "content": "after"},
            {"op": "sleep", "ms": 300},
        ])
        self.assertEqual(events.of("unhandled_message", "a"), [])
        chats = [e for e in events.messages("a", type="CHAT")]
        self.assertEqual([(e["headers"]["subscription"], json.loads(e["body"])["content"]) for e in chats],
                         [("new", "after")])

    async def test_two_hundred_messages_arrive_in_send_order(self) -> None:
        """200 SENDs from a reach b in order, ids strictly increasing; recent API agrees."""
        server = await self.start_server("--rate-limit", "0", "--frame-rate", "0")
        contents = [f"m-{i:03d}" for i in range(200)]
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "sub-0"},
            {"op": "connect", "c": "a"},
            {"op": "sendMany", "c": "a", "destination": SEND, "bodies": [body(t) for t in contents]},
            {"op": "send", "c": "a", "destination": SEND, "body": body("last"), "receipt": "r-last"},
            {"op": "wait", "c": "b", "count": 201, "type": "CHAT", "timeout": 15000},
        ])
        a_name = self.assertConnected(events, "a")
        received = [self.assertMessageFrame(e, "sub-0") for e in events.messages("b", type="CHAT")]
        self.assertEqual([m["content"] for m in received], contents + ["last"])
        self.assertEqual({m["sender"] for m in received}, {a_name})
        keys = [id_key(m["id"]) for m in received]
        self.assertEqual(keys, sorted(set(keys)), "ids must be strictly increasing")

        # The buffer, oldest first: b's JOIN, a's JOIN, the 201 CHATs, both LEAVEs.
        await self.everyone_left(server)
        everything = await self.recent(server, 500)
        for message in everything:
            self.assertChatMessage(message)
        self.assertEqual([m["type"] for m in everything], ["JOIN", "JOIN"] + ["CHAT"] * 201 + ["LEAVE", "LEAVE"])
        self.assertEqual(everything[2:203], received)
        self.assertEqual(await self.recent(server, 203), everything[-203:])
        self.assertEqual(await self.recent(server, 3), everything[-3:])
        self.assertEqual(len(await self.recent(server, 1)), 1)

    async def test_dropped_tcp_connection_gives_one_leave(self) -> None:
        """a's socket destroyed without DISCONNECT: b sees exactly one LEAVE for a."""
        server = await self.start_server()
        driver = self.spawn(server, [
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "sub-0"},
            {"op": "connect", "c": "a"},
            {"op": "wait", "c": "b", "count": 1, "type": "JOIN"},
            {"op": "drop", "c": "a"},
            {"op": "waitClose", "c": "a"},
            {"op": "wait", "c": "b", "count": 1, "type": "LEAVE"},
            {"op": "sleep", "ms": 300},
            {"op": "mark", "name": "left"},
            {"op": "input"},
        ])
        await driver.wait_for(lambda e: e == {"ev": "mark", "name": "left"})
        online = await self.users(server)
        driver.go()
        self.assertEqual(await driver.ended, 0, driver.describe())
        events = driver.events
        a_name = self.assertConnected(events, "a")
        b_name = self.assertConnected(events, "b")
        self.assertEqual(events.of("ws_close", "a")[0]["code"], 1006)  # no close handshake happened
        seen = [self.assertMessageFrame(e, "sub-0") for e in events.messages("b")]
        seen = [m for m in seen if m["sender"] != b_name]
        self.assertEqual([(m["type"], m["sender"]) for m in seen], [("JOIN", a_name), ("LEAVE", a_name)])
        self.assertGreater(id_key(seen[1]["id"]), id_key(seen[0]["id"]))
        self.assertEqual(events.of("ws_close", "b"), [])
        self.assertEqual(online, [b_name])

    async def test_stomp_10_and_11_clients_chat(self) -> None:
        """stompjs limited to 1.0 and to 1.1 negotiates that version and chats."""
        server = await self.start_server()
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "v10", "versions": ["1.0"]},
            {"op": "subscribe", "c": "v10", "destination": CHAT, "id": "s10"},
            {"op": "connect", "c": "v11", "versions": ["1.1"]},
            {"op": "subscribe", "c": "v11", "destination": CHAT, "id": "s11"},
            {"op": "send", "c": "v10", "destination": SEND, "body": body("from 1.0: 안녕"), "receipt": "r10"},
            {"op": "send", "c": "v11", "destination": SEND, "body": body("from 1.1: a:b\\c"), "receipt": "r11"},
            {"op": "wait", "c": "v10", "count": 2, "type": "CHAT"},
            {"op": "wait", "c": "v11", "count": 2, "type": "CHAT"},
        ])
        n10 = self.assertConnected(events, "v10", version="1.0", heartbeat=None)
        n11 = self.assertConnected(events, "v11", version="1.1")
        self.assertEqual({e["c"]: e["protocol"] for e in events.of("ws_open")}, {"v10": "v10.stomp", "v11": "v11.stomp"})
        self.assertEqual(events.of("receipt", "v10")[0]["headers"]["receipt-id"], "r10")
        self.assertEqual(events.of("receipt", "v11")[0]["headers"]["receipt-id"], "r11")
        on10 = [self.assertMessageFrame(e, "s10") for e in events.messages("v10", type="CHAT")]
        on11 = [self.assertMessageFrame(e, "s11") for e in events.messages("v11", type="CHAT")]
        self.assertEqual(on10, on11)
        self.assertEqual([(m["sender"], m["content"]) for m in on10], [(n10, "from 1.0: 안녕"), (n11, "from 1.1: a:b\\c")])

    async def test_unicode_round_trips_exactly(self) -> None:
        """Korean, emoji (ZWJ, flags, skin tones), astral CJK, RTL, combining marks, JSON escapes."""
        server = await self.start_server()
        contents = [
            "안녕하세요 👋",
            "👩‍👩‍👧‍👦 🇰🇷 👍🏽",
            "𠜎𠜱𝄞 astral",
            "שלום مرحبا",
            "e\u0301 n\u0303 ﬁ",
            'quote " back \\ slash\nnew line\ttab <b>&amp;</b>',
        ]
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "a"},
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "sub-0"},
            *({"op": "send", "c": "a", "destination": SEND, "body": body(t), "receipt": f"r{i}"}
              for i, t in enumerate(contents)),
            {"op": "wait", "c": "b", "count": len(contents), "type": "CHAT"},
        ])
        received = [self.assertMessageFrame(e, "sub-0") for e in events.messages("b", type="CHAT")]
        self.assertEqual([m["content"] for m in received], contents)
        await self.everyone_left(server)
        stored = [m for m in await self.recent(server, 500) if m["type"] == "CHAT"]
        self.assertEqual(stored, received)


class HeartbeatTests(StompJsTestCase):
    async def test_one_second_heartbeats_keep_an_idle_client_alive(self) -> None:
        """1000 ms heart-beats both ways: 4 s idle, server beats arrive, still chatting."""
        server = await self.start_server("--heartbeat", "1000")
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "a", "heartbeat": [1000, 1000]},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "sub-0"},
            {"op": "mark", "name": "idle"},
            {"op": "sleep", "ms": 4000},
            {"op": "mark", "name": "awake"},
            {"op": "send", "c": "a", "destination": SEND, "body": body("still here"), "receipt": "r-1"},
            {"op": "wait", "c": "a", "count": 1, "type": "CHAT"},
        ])
        self.assertConnected(events, "a", heartbeat="1000,1000")
        self.assertEqual(events.of("ws_close"), [])
        self.assertEqual(events.of("heartbeat_lost"), [])
        idle = events.index({"ev": "mark", "name": "idle"})
        awake = events.index({"ev": "mark", "name": "awake"})
        beats = [e for e in events[idle:awake] if e["ev"] == "heartbeat"]
        self.assertGreaterEqual(len(beats), 3, "the server must send a heart-beat each idle second")
        self.assertEqual([m["content"] for m in events.bodies("a", type="CHAT")], ["still here"])


class BadInputTests(StompJsTestCase):
    async def test_bad_input_is_reported_and_the_connection_stays_open(self) -> None:
        """Not JSON, empty, over --max-content, over --rate-limit: an error to the sender only."""
        server = await self.start_server("--max-content", "10", "--rate-limit", "2")
        burst = [body(f"burst-{i}") for i in range(8)]
        events = await self.run_scenario(server, [
            {"op": "connect", "c": "a"},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "chat-a"},
            {"op": "subscribe", "c": "a", "destination": ERRORS, "id": "err-a"},
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "chat-b"},
            {"op": "subscribe", "c": "b", "destination": ERRORS, "id": "err-b"},
            {"op": "send", "c": "a", "destination": SEND, "body": "this is not json"},
            {"op": "send", "c": "a", "destination": SEND, "body": body("")},
            {"op": "send", "c": "a", "destination": SEND, "body": body("x" * 11)},
            {"op": "wait", "c": "a", "count": 3, "destination": ERRORS},
            {"op": "sleep", "ms": 2100},  # the bucket (2/s, burst 4) is full again
            {"op": "send", "c": "a", "destination": SEND, "body": body("x" * 10), "receipt": "ok-1"},
            {"op": "wait", "c": "b", "count": 1, "type": "CHAT"},
            {"op": "sleep", "ms": 600},
            {"op": "mark", "name": "burst"},
            {"op": "sendMany", "c": "a", "destination": SEND, "bodies": burst},
            {"op": "wait", "c": "a", "count": 6, "destination": ERRORS},
            {"op": "sleep", "ms": 1200},
            {"op": "send", "c": "a", "destination": SEND, "body": body("after"), "receipt": "ok-2"},
            {"op": "wait", "c": "b", "count": 1, "type": "CHAT", "content": "after"},
            {"op": "sleep", "ms": 300},
        ])
        a_name = self.assertConnected(events, "a")
        self.assertEqual(events.of("ws_close"), [])
        self.assertEqual(events.of("stomp_error"), [])
        errors = [self.assertAppError(e, "err-a") for e in events.messages("a", ERRORS)]
        self.assertEqual(events.messages("b", ERRORS), [], "errors go to the sender only")

        # The three invalid bodies: three errors, three distinct reasons.
        self.assertEqual(len({e["code"] for e in errors[:3]}), 3, errors[:3])

        # The burst of 8: a full bucket of 4 (maybe 5 with refill) pass, the rest are refused.
        chats = [(m["sender"], m["content"]) for m in events.bodies("b", type="CHAT")]
        passed = [c for s, c in chats if c.startswith("burst-")]
        refused = errors[3:]
        self.assertIn(len(passed), (4, 5), chats)
        self.assertEqual(len(passed) + len(refused), 8, (chats, errors))
        self.assertEqual(passed, [f"burst-{i}" for i in range(len(passed))])
        self.assertEqual(len({e["code"] for e in refused}), 1, refused)
        self.assertNotIn(refused[0]["code"], {e["code"] for e in errors[:3]})

        # Still connected: the valid messages before and after went through.
        self.assertEqual(chats, [(a_name, "x" * 10)] + [(a_name, c) for c in passed] + [(a_name, "after")])
        self.assertEqual(events.bodies("a", type="CHAT"), events.bodies("b", type="CHAT"))
        receipts = [e["headers"]["receipt-id"] for e in events.of("receipt", "a")]
        self.assertIn("ok-1", receipts)
        self.assertIn("ok-2", receipts)
        # Nothing invalid or refused was stored.
        stored = [m["content"] for m in await self.recent(server, 500) if m["type"] == "CHAT"]
        self.assertEqual(stored, [c for _, c in chats])


def parse_raw_frame(data: str) -> tuple[str, dict[str, str], str]:
    """command, headers (first wins), body of one raw STOMP frame."""
    assert data.endswith("\x00"), repr(data)
    head, _, frame_body = data[:-1].partition("\n\n")
    lines = head.split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)
    return lines[0], headers, frame_body


class ProtocolErrorTests(StompJsTestCase):
    async def test_malformed_frame_gets_one_error_then_close(self) -> None:
        """A raw malformed frame: exactly one ERROR with a message header, then the close."""
        server = await self.start_server()
        events = await self.run_scenario(server, [
            {"op": "raw", "c": "colon", "send": [
                "CONNECT\naccept-version:1.2\nhost:x\n\n\x00",
                "SEND\ndestination /app/chat.sendMessage\n\n{\"content\":\"x\"}\x00",
            ]},
            {"op": "raw", "c": "garbage", "send": ["\x01\x02 this is not STOMP\n\n\x00"]},
        ])
        self.assertEqual(events.of("raw_timeout"), [], "the server must close the connection")
        for c, before in (("colon", ["CONNECTED"]), ("garbage", [])):
            frames = [parse_raw_frame(e["data"]) for e in events.of("raw_message", c)]
            self.assertEqual([f[0] for f in frames], before + ["ERROR"], frames)
            _, headers, text = frames[-1]
            self.assertTrue(headers.get("message"), headers)
            self.assertTrue(text.strip(), "the ERROR body is a plain-text explanation")
            self.assertTrue(headers.get("content-type", "text/plain").startswith("text/plain"), headers)
            self.assertEqual(len(events.of("ws_close", c)), 1)
            # The close comes after the ERROR.
            self.assertGreater(events.index(events.of("ws_close", c)[0]), events.index(events.of("raw_message", c)[-1]))


class ShutdownTests(StompJsTestCase):
    async def test_sigterm_closes_clients_exits_zero_and_archives_everything(self) -> None:
        """SIGTERM with clients connected: both see the close, exit 0, every row in SQLite once."""
        server = await self.start_server()
        contents = ["first", "둘째 👋", "𠜎 third"]
        driver = self.spawn(server, [
            {"op": "connect", "c": "a"},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "sub-0"},
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "sub-0"},
            *({"op": "send", "c": "a", "destination": SEND, "body": body(t), "receipt": f"r{i}"}
              for i, t in enumerate(contents)),
            {"op": "wait", "c": "b", "count": len(contents), "type": "CHAT"},
            {"op": "mark", "name": "ready"},
            {"op": "waitClose", "c": "a", "timeout": 15000},
            {"op": "waitClose", "c": "b", "timeout": 15000},
        ])
        await driver.wait_for(lambda e: e == {"ev": "mark", "name": "ready"})
        code = await server.stop()
        self.assertEqual(code, 0, server.read_log()[-3000:])
        self.assertEqual(await driver.ended, 0, driver.describe())
        events = driver.events
        a_name = self.assertConnected(events, "a")
        b_name = self.assertConnected(events, "b")
        closes = {e["c"]: e for e in events.of("ws_close")}
        self.assertEqual(set(closes), {"a", "b"})
        for close in closes.values():
            self.assertNotEqual(close["code"], 1006, "the server closes with a WebSocket close handshake")
        chats = events.bodies("b", type="CHAT")

        rows = await threads.deferToThread(
            _query, os.path.join(server.workdir, "anonchat.sqlite3"),
            "SELECT id, type, sender, content, created_at FROM chat_messages")
        stored_chats = [r for r in rows if r[1] == "CHAT"]
        self.assertEqual(sorted((r[0], r[2], r[3]) for r in stored_chats),
                         sorted((m["id"], a_name, m["content"]) for m in chats))
        self.assertEqual(sorted(r[3] for r in stored_chats), sorted(contents))
        self.assertEqual(len({r[0] for r in rows}), len(rows), "each message stored once")
        presence = sorted((r[1], r[2]) for r in rows if r[1] != "CHAT")
        self.assertEqual(presence, sorted([("JOIN", a_name), ("JOIN", b_name), ("LEAVE", a_name), ("LEAVE", b_name)]))
        # created_at keeps the message's timestamp to the millisecond.
        sent_at = {m["id"]: _instant(m["timestamp"]) for m in chats}
        self.assertEqual({r[0]: _instant(r[4]) for r in stored_chats}, sent_at)


def _instant(text: str) -> datetime:
    """An ISO-8601 / SQL timestamp (UTC) as an aware datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _query(path: str, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()
