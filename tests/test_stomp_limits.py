"""Every limit option changes behaviour: in-process, each limit is checked
once set low (refused) and once at its default (the same input accepted)."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from anonchat.service import AnonchatService
from tests.hostile import chat_body, sleep
from tests.inprocess import start_service, ws_url
from tests.stompfakes import frame
from tests.wsclient import WsClient

CONNECT = frame("CONNECT", accept_version="1.2", heart_beat="0,0")
SEND_TO = "/app/chat.sendMessage"


def closes(svc: AnonchatService, reason: str) -> float:
    return float(svc.metrics.closes.labels(reason)._value.get())


class LimitTests(TestCase):
    timeout = 30

    async def client(self, svc: AnonchatService, connect: bool = True, **kwargs: Any) -> WsClient:
        c = WsClient(ws_url(svc), **kwargs)
        self.addCleanup(c.close)
        await c.opened
        if connect:
            c.send(CONNECT + frame("SUBSCRIBE", id="err", destination="/user/queue/errors", receipt="ready"))
            await self.receipt(c, "ready")
        return c

    async def receipt(self, c: WsClient, rid: str) -> None:
        await c.wait_for(lambda fs: any(f.command == "RECEIPT" and f.get("receipt-id") == rid for f in fs))

    async def refused(self, c: WsClient, message: str) -> None:
        await c.closed.addTimeout(5, reactor)
        errors = [f for f in c.frames if f.command == "ERROR"]
        self.assertEqual([e.get("message") for e in errors], [message])

    def app_errors(self, c: WsClient) -> list[str]:
        return [json.loads(f.body)["code"] for f in c.frames
                if f.command == "MESSAGE" and f.get("destination") == "/user/queue/errors"]

    async def accepted_and_refused(self, setting: dict[str, Any], data: bytes, message: str) -> None:
        """``data`` (asking for receipt ``r``) gets its RECEIPT by default and ERROR ``message`` under ``setting``."""
        default = await start_service(self)
        c = await self.client(default)
        c.send(data)
        await self.receipt(c, "r")
        self.assertFalse(c.closed.called)

        limited = await start_service(self, **setting)
        c = await self.client(limited)
        c.send(data)
        await self.refused(c, message)
        self.assertEqual(closes(limited, "malformed-frame"), 1)

    async def test_max_frame(self) -> None:
        data = frame("SEND", chat_body("two KiB"), destination=SEND_TO, receipt="r", x_pad="p" * 2048)
        await self.accepted_and_refused({"max_frame": 1024}, data, "frame too large")

    async def test_max_headers(self) -> None:
        data = frame("SEND", chat_body("six headers"), destination=SEND_TO, receipt="r",
                     x_a="1", x_b="2", x_c="3", x_d="4")
        await self.accepted_and_refused({"max_headers": 5}, data, "too many headers")

    async def test_max_header_length(self) -> None:
        data = frame("SEND", chat_body("long header"), destination=SEND_TO, receipt="r", x_pad="p" * 150)
        await self.accepted_and_refused({"max_header_length": 100}, data, "header too long")

    async def test_max_subscriptions(self) -> None:
        subscribe = b"".join(frame("SUBSCRIBE", id=f"s{i}", destination="/topic/chat.typing", receipt=f"s{i}")
                             for i in range(3))
        default = await start_service(self)
        c = await self.client(default)
        c.send(subscribe)
        await self.receipt(c, "s2")

        limited = await start_service(self, max_subscriptions=2)  # the errors queue counts too
        c = await self.client(limited)
        c.send(subscribe)
        await self.refused(c, "too many subscriptions")
        self.assertEqual(closes(limited, "limit"), 1)

    async def test_connect_timeout(self) -> None:
        limited = await start_service(self, connect_timeout=0.5)
        default = await start_service(self)
        slow = await self.client(limited, connect=False)
        patient = await self.client(default, connect=False)
        started = time.monotonic()
        await self.refused(slow, "CONNECT timeout")
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertEqual(closes(limited, "connect-timeout"), 1)
        await sleep(1.0)
        self.assertFalse(patient.closed.called)
        patient.send(CONNECT)
        await patient.wait_for_command("CONNECTED")

    async def test_max_content(self) -> None:
        svc = await start_service(self, max_content=10)
        c = await self.client(svc)
        c.send(frame("SEND", chat_body("x" * 11), destination=SEND_TO, receipt="long")
               + frame("SEND", chat_body("y" * 10), destination=SEND_TO, receipt="ok"))
        await self.receipt(c, "ok")
        await c.wait_for(lambda fs: self.app_errors(c) == ["CONTENT_TOO_LONG"])
        self.assertFalse(any(f.command == "RECEIPT" and f.get("receipt-id") == "long" for f in c.frames))

    async def test_rate_limit(self) -> None:
        burst = b"".join(frame("SEND", chat_body(f"m{i}"), destination=SEND_TO, receipt=f"m{i}") for i in range(5))
        limited = await start_service(self, rate_limit=1.0)  # burst 2
        c = await self.client(limited)
        c.send(burst + frame("DISCONNECT", receipt="bye"))
        await self.receipt(c, "bye")
        got = sorted(f.get("receipt-id") for f in c.frames if f.command == "RECEIPT" and f.get("receipt-id", "")[0] == "m")
        self.assertEqual(got, ["m0", "m1"])
        self.assertEqual(self.app_errors(c), ["RATE_LIMITED"] * 3)

        off = await start_service(self, rate_limit=0.0)
        c = await self.client(off)
        c.send(b"".join(frame("SEND", chat_body(f"m{i}"), destination=SEND_TO, receipt=f"m{i}") for i in range(100)))
        await self.receipt(c, "m99")
        self.assertEqual(self.app_errors(c), [])

    async def test_max_connections_per_ip_ignores_untrusted_forwarded_for(self) -> None:
        svc = await start_service(self, max_connections_per_ip=2)
        await self.client(svc, headers={"X-Forwarded-For": "198.51.100.1"})
        await self.client(svc, headers={"X-Forwarded-For": "198.51.100.2"})
        third = WsClient(ws_url(svc), headers={"X-Forwarded-For": "198.51.100.3"})
        with self.assertRaises(ConnectionError):
            await third.opened
        self.assertEqual(closes(svc, "too-many-connections"), 1)
        unlimited = await start_service(self)
        for i in range(3):
            await self.client(unlimited)

    async def test_message_over_the_websocket_limit_gets_an_error_frame(self) -> None:
        """CONTRACT: "a frame over the size limit" gets one ERROR frame, then the close.

        However large the WebSocket message, the payload is streamed to the
        STOMP parser, whose limit answers with ERROR (Autobahn's own message
        limit would have dropped the TCP connection silently)."""
        svc = await start_service(self, max_frame=1024)
        c = await self.client(svc)
        c.send(frame("SEND", b"x" * 5000, destination=SEND_TO))
        await c.closed.addTimeout(5, reactor)
        self.assertEqual([f.get("message") for f in c.frames if f.command == "ERROR"], ["frame too large"])

