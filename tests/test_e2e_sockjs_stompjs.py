"""The real ``@stomp/stompjs`` over the real ``sockjs-client`` (in Node) against a real ``twistd -n anonchat``.

For each SockJS transport the frontend may end up on (sockjs-client's
``websocket``, ``xhr-streaming``, ``eventsource`` and ``xhr-polling``), client ``a`` is a
stompjs ``Client`` whose ``webSocketFactory`` is
``new SockJS(base + '/ws-chat', null, {transports: [name]})`` and client
``b`` is stompjs on the raw WebSocket endpoint, so every message crosses
the transport under test in both directions. Each test class is one
transport, with one server per test (``--sockjs-disconnect-delay 1``).

The driver is ``tests/e2e/stomp_client.js`` (its ``connect`` step with
``"sockjs": name``); events and assertions are shared with
``tests/test_e2e_stompjs.py``. Skipped without ``node`` or
``tests/e2e/node_modules`` unless ``ANONCHAT_TEST_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.serverprocess import ServerProcess
from tests.services import require_node
from tests.test_e2e_stompjs import CHAT, ERRORS, SEND, Events, StompJsTestCase, body, id_key

#: Seconds a SockJS session outlives its last receiving request.
DISCONNECT_DELAY = 1.0

#: Content that must reach the other side exactly: Korean, emoji (outside
#: the BMP, ZWJ sequences), JSON and STOMP specials, and characters SockJS
#: escapes on the wire (U+2028/2029, U+200C-U+200F, U+FEFF, U+FFF0-U+FFFF,
#: control characters).
UNICODE = [
    "안녕하세요 👋",
    "𠜎 U+2070E and 😀 outside the BMP",
    "가족 👨\u200d👩\u200d👧 zwj, \u200c zwnj, \u200e lrm",
    "줄\n바꿈 \"따옴표\" \\ 백슬래시 : colon",
    "separators \u2028 and \u2029",
    "bom \ufeff specials \ufff0 \ufffd \uffff",
    "control \x01 \x1f \x7f nul \x00 end",
    "e\u0301 combining, é precomposed",
    "<script>alert('x')</script> &amp;",
    "^@ NUL-looking and \r\n CRLF",
]

#: Three kinds of bad input on SEND (not JSON, empty, over --max-content).
BAD_BODIES = ["this is not json", body(""), body("x" * 1001)]


def _sockjs_node() -> None:
    require_node("sockjs-client")


class _SockJSChat:
    """The chat through one SockJS transport; mixed into a ``StompJsTestCase``."""

    transport: str

    def setUp(self: Any) -> None:
        StompJsTestCase.setUp(self)
        _sockjs_node()

    async def start(self: Any) -> ServerProcess:
        server: ServerProcess = await self.start_server(
            "--rate-limit", "0", "--frame-rate", "0", "--sockjs-disconnect-delay", str(DISCONNECT_DELAY))
        return server

    def assertTransport(self: Any, events: Events, c: str) -> None:
        opened = events.of("ws_open", c)
        self.assertEqual([e.get("transport") for e in opened], [self.transport],
                         "sockjs-client must open the one transport it was allowed")

    async def test_join_chat_receipts_order_unicode_errors_and_leave(self: Any) -> None:
        """a on SockJS, b on raw WebSocket: the whole chat, both directions, then a's DISCONNECT."""
        server = await self.start()
        ordered = [f"{i:03d} 순서 ✓" for i in range(100)]
        steps: list[dict[str, Any]] = [
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "chat-b"},
            {"op": "subscribe", "c": "b", "destination": ERRORS, "id": "err-b"},
            {"op": "connect", "c": "a", "sockjs": self.transport, "timeout": 10000},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "chat-a"},
            {"op": "subscribe", "c": "a", "destination": ERRORS, "id": "err-a"},
            # One CHAT with a receipt, seen by both.
            {"op": "send", "c": "a", "destination": SEND, "body": body("hello"), "receipt": "r-hello"},
            {"op": "wait", "c": "b", "count": 1, "type": "CHAT", "content": "hello"},
            {"op": "wait", "c": "a", "count": 1, "type": "CHAT", "content": "hello"},
            # 100 messages back to back (sockjs-client batches xhr_send), then one with a receipt.
            {"op": "sendMany", "c": "a", "destination": SEND, "bodies": [body(t) for t in ordered]},
            {"op": "send", "c": "a", "destination": SEND, "body": body("last"), "receipt": "r-last",
             "timeout": 15000},
            {"op": "wait", "c": "b", "count": 102, "type": "CHAT", "timeout": 15000},
            {"op": "wait", "c": "a", "count": 102, "type": "CHAT", "timeout": 15000},
            # Unicode from a (over SockJS) and from b (to a over SockJS).
            *({"op": "send", "c": "a", "destination": SEND, "body": body(t), "receipt": f"u-a-{i}"}
              for i, t in enumerate(UNICODE)),
            *({"op": "send", "c": "b", "destination": SEND, "body": body(t), "receipt": f"u-b-{i}"}
              for i, t in enumerate(UNICODE)),
            {"op": "wait", "c": "a", "count": 102 + 2 * len(UNICODE), "type": "CHAT", "timeout": 10000},
            {"op": "wait", "c": "b", "count": 102 + 2 * len(UNICODE), "type": "CHAT", "timeout": 10000},
            # Bad input: errors to a only, and a stays connected.
            *({"op": "send", "c": "a", "destination": SEND, "body": b} for b in BAD_BODIES),
            {"op": "wait", "c": "a", "count": len(BAD_BODIES), "destination": ERRORS},
            {"op": "send", "c": "a", "destination": SEND, "body": body("still here"), "receipt": "r-after"},
            {"op": "wait", "c": "b", "count": 1, "type": "CHAT", "content": "still here"},
            # a deactivates (DISCONNECT, then the SockJS close): b sees a's LEAVE.
            {"op": "mark", "name": "leaving"},
            {"op": "disconnect", "c": "a"},
            {"op": "wait", "c": "b", "count": 1, "type": "LEAVE", "timeout": 5000},
            {"op": "sleep", "ms": 300},
        ]
        events = await self.run_scenario(server, steps)

        a_name = self.assertConnected(events, "a")
        b_name = self.assertConnected(events, "b")
        self.assertNotEqual(a_name, b_name)
        self.assertTransport(events, "a")
        self.assertEqual(events.of("stomp_error"), [])
        self.assertEqual(events.of("heartbeat_lost"), [])

        seen_by_a = [self.assertMessageFrame(e, "chat-a") for e in events.messages("a")]
        seen_by_b = [self.assertMessageFrame(e, "chat-b") for e in events.messages("b")]

        # Every message b saw, in strictly increasing id order; same for a.
        for seen in (seen_by_a, seen_by_b):
            keys = [id_key(m["id"]) for m in seen]
            self.assertEqual(keys, sorted(set(keys)), "ids must be strictly increasing")

        # b saw a's JOIN exactly once, before a's first CHAT.
        a_joins = [i for i, m in enumerate(seen_by_b) if (m["type"], m["sender"]) == ("JOIN", a_name)]
        self.assertEqual(len(a_joins), 1, seen_by_b[:5])
        first_chat = next(i for i, m in enumerate(seen_by_b) if m["type"] == "CHAT")
        self.assertLess(a_joins[0], first_chat)

        # The CHATs: same messages, same order, same ids on both sides.
        chats_a = [m for m in seen_by_a if m["type"] == "CHAT"]
        chats_b = [m for m in seen_by_b if m["type"] == "CHAT"]
        self.assertEqual(chats_a, chats_b)
        expected = ([(a_name, "hello")] + [(a_name, t) for t in ordered] + [(a_name, "last")]
                    + [(a_name, t) for t in UNICODE] + [(b_name, t) for t in UNICODE] + [(a_name, "still here")])
        self.assertEqual([(m["sender"], m["content"]) for m in chats_b], expected)

        # Receipts: one per SEND that asked, in send order, none unexpected.
        self.assertEqual([e["headers"]["receipt-id"] for e in events.of("receipt", "a")],
                         ["r-hello", "r-last", *(f"u-a-{i}" for i in range(len(UNICODE))), "r-after"])
        self.assertEqual([e["headers"]["receipt-id"] for e in events.of("receipt", "b")],
                         [f"u-b-{i}" for i in range(len(UNICODE))])
        self.assertEqual([e for e in events.of("receipt") if e.get("unhandled")], [])

        # Bad input: three errors with three codes, to a only; nothing broadcast.
        errors = [self.assertAppError(e, "err-a") for e in events.messages("a", ERRORS)]
        self.assertEqual(len(errors), len(BAD_BODIES), errors)
        self.assertEqual(len({e["code"] for e in errors}), len(BAD_BODIES), errors)
        self.assertEqual(events.messages("b", ERRORS), [])

        # a's LEAVE, exactly once, last; a's transport closed once, only after it asked.
        leaves = [m for m in seen_by_b if m["type"] == "LEAVE"]
        self.assertEqual([m["sender"] for m in leaves], [a_name])
        self.assertIs(seen_by_b[-1], leaves[0])
        closes = events.of("ws_close", "a")
        self.assertEqual(len(closes), 1, closes)
        self.assertGreater(events.index(closes[0]), events.index({"ev": "mark", "name": "leaving"}))
        self.assertEqual(events.of("ws_close", "b"), [])

        # The buffer stored exactly what was delivered.
        await self.everyone_left(server)
        stored = [m for m in await self.recent(server, 500) if m["type"] == "CHAT"]
        self.assertEqual(stored, chats_b)

    async def test_vanished_client_leaves(self: Any) -> None:
        """The SockJS client's process is SIGKILLed: b sees exactly one LEAVE for it, promptly.

        The kill closes a's open receiving connection (the WebSocket, the
        streaming response, or the pending poll), which ends the session at
        once (sockjs-protocol 0.3.3: an aborted receiver is ``1002
        Connection interrupted``); the bound below allows for the disconnect
        delay too, but not for a STOMP heart-beat timeout (3 x 10 s).
        """
        server = await self.start()
        observer = self.spawn(server, [
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "sub-0"},
            {"op": "mark", "name": "b-ready"},
            {"op": "wait", "c": "b", "count": 1, "type": "LEAVE", "timeout": 15000},
            {"op": "sleep", "ms": 300},
        ])
        await observer.wait_for(lambda e: e == {"ev": "mark", "name": "b-ready"})
        vanishing = self.spawn(server, [
            {"op": "connect", "c": "a", "sockjs": self.transport, "timeout": 10000},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "sub-0"},
            {"op": "send", "c": "a", "destination": SEND, "body": body("잠깐만 👋"), "receipt": "r-1"},
            {"op": "wait", "c": "a", "count": 1, "type": "CHAT"},
            {"op": "mark", "name": "a-up"},
            {"op": "input"},  # never released: the process is killed here
        ])
        await vanishing.wait_for(lambda e: e == {"ev": "mark", "name": "a-up"})
        a_name = self.assertConnected(vanishing.events, "a")
        self.assertTransport(vanishing.events, "a")
        await observer.wait_for(lambda e: e["ev"] == "message" and json.loads(e["body"])["content"] == "잠깐만 👋")
        # Let a polling client settle into its next poll (or between polls).
        await deferLater(reactor, 0.2, lambda: None)
        self.assertIn(a_name, await self.users(server))

        killed_at = reactor.seconds()
        vanishing.process.signalProcess("KILL")
        await vanishing.ended
        leave = await observer.wait_for(
            lambda e: e["ev"] == "message" and json.loads(e["body"])["type"] == "LEAVE")
        elapsed = reactor.seconds() - killed_at
        self.assertEqual(await observer.ended, 0, observer.describe())

        message = self.assertMessageFrame(leave, "sub-0")
        self.assertEqual(message["sender"], a_name)
        events = observer.events
        self.assertEqual([m["sender"] for m in events.bodies("b", type="LEAVE")], [a_name], "exactly one LEAVE")
        self.assertEqual([m["sender"] for m in events.bodies("b", type="JOIN") if m["sender"] == a_name], [a_name])
        # Noticed by the disconnect delay (1 s here, 5 s by default), not by a heart-beat (10 s, x3).
        self.assertLess(elapsed, DISCONNECT_DELAY + 1.5, f"LEAVE {elapsed:.2f}s after the kill")
        self.assertNotIn(a_name, await self.users(server))


class WebSocketTransportTests(_SockJSChat, StompJsTestCase):
    transport = "websocket"


class XhrStreamingTransportTests(_SockJSChat, StompJsTestCase):
    transport = "xhr-streaming"


class EventSourceTransportTests(_SockJSChat, StompJsTestCase):
    """sockjs-client also runs eventsource in Node (jsonp and the iframe
    transports are browser-only there)."""

    transport = "eventsource"


class XhrPollingTransportTests(_SockJSChat, StompJsTestCase):
    transport = "xhr-polling"

    async def test_frozen_client_leaves_after_the_disconnect_delay(self) -> None:
        """a's process is SIGSTOPped (no TCP close): its session lives on for the delay, then LEAVE.

        A frozen (or unplugged) polling client stops polling without aborting
        anything; only the disconnect delay can notice it. b's message
        completes a's pending poll, no next poll comes, and the session must
        end ``--sockjs-disconnect-delay`` later, not sooner and not at the
        STOMP heart-beat timeout.
        """
        server = await self.start()
        observer = self.spawn(server, [
            {"op": "connect", "c": "b"},
            {"op": "subscribe", "c": "b", "destination": CHAT, "id": "sub-0"},
            {"op": "mark", "name": "b-ready"},
            {"op": "input"},
            {"op": "send", "c": "b", "destination": SEND, "body": body("거기 있어요?"), "receipt": "r-b"},
            {"op": "wait", "c": "b", "count": 1, "type": "LEAVE", "timeout": 15000},
            {"op": "sleep", "ms": 300},
        ])
        await observer.wait_for(lambda e: e == {"ev": "mark", "name": "b-ready"})
        frozen = self.spawn(server, [
            {"op": "connect", "c": "a", "sockjs": self.transport, "timeout": 10000},
            {"op": "subscribe", "c": "a", "destination": CHAT, "id": "sub-0"},
            {"op": "send", "c": "a", "destination": SEND, "body": body("곧 멈춤"), "receipt": "r-a"},
            {"op": "wait", "c": "a", "count": 1, "type": "CHAT"},
            {"op": "mark", "name": "a-up"},
            {"op": "input"},
        ])
        await frozen.wait_for(lambda e: e == {"ev": "mark", "name": "a-up"})
        a_name = self.assertConnected(frozen.events, "a")
        self.assertTransport(frozen.events, "a")
        await deferLater(reactor, 0.2, lambda: None)

        stopped_at = reactor.seconds()
        frozen.process.signalProcess("STOP")  # the cleanup's SIGKILL ends it
        observer.go()
        # b's message is fanned out, answering a's pending poll: from here on a
        # has no receiving request, yet it is still online until the delay ends.
        await observer.wait_for(lambda e: e["ev"] == "message" and json.loads(e["body"])["type"] == "CHAT")
        self.assertIn(a_name, await self.users(server), "a frozen client is kept for the disconnect delay")
        leave = await observer.wait_for(
            lambda e: e["ev"] == "message" and json.loads(e["body"])["type"] == "LEAVE")
        elapsed = reactor.seconds() - stopped_at
        self.assertEqual(await observer.ended, 0, observer.describe())

        self.assertEqual(self.assertMessageFrame(leave, "sub-0")["sender"], a_name)
        self.assertEqual([m["sender"] for m in observer.events.bodies("b", type="LEAVE")], [a_name])
        self.assertGreaterEqual(elapsed, DISCONNECT_DELAY * 0.9, f"LEAVE {elapsed:.2f}s after the freeze")
        self.assertLess(elapsed, DISCONNECT_DELAY + 1.5, f"LEAVE {elapsed:.2f}s after the freeze")
        self.assertNotIn(a_name, await self.users(server))
