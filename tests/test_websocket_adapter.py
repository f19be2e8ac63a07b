"""Raw STOMP over WebSocket through a real in-process server: subprotocols,
frame packing and splitting, text and binary, origins, per-address limits."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from tests.inprocess import start_service, ws_url
from tests.stompfakes import frame
from tests.wsclient import WsClient

CONNECT = frame("CONNECT", accept_version="1.2", heart_beat="0,0")


def run(coro: Any) -> Deferred[Any]:
    return ensureDeferred(coro)


class WebSocketAdapterTests(TestCase):
    timeout = 20

    async def client(self, svc: Any, **kwargs: Any) -> WsClient:
        c = WsClient(ws_url(svc), **kwargs)
        self.addCleanup(c.close)
        await c.opened
        return c

    def test_subprotocol_is_the_best_the_client_offers(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self)
            for offered, chosen in [
                (["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),
                (["v11.stomp", "v10.stomp"], "v11.stomp"),
                (["v10.stomp"], "v10.stomp"),
                ([], None),
            ]:
                c = await self.client(svc, protocols=offered)
                self.assertEqual(c.subprotocol, chosen)
        return run(go())

    def test_client_offering_no_subprotocol_gets_stomp_1_2_after_connect(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self)
            c = await self.client(svc, protocols=[])
            c.send(CONNECT)
            [connected] = await c.wait_for_command("CONNECTED")
            self.assertEqual(connected.get("version"), "1.2")
        return run(go())

    def test_several_frames_in_one_message_and_one_frame_split_across_three(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self)
            c = await self.client(svc)
            c.send(CONNECT + frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", receipt="s"))
            await c.wait_for_command("RECEIPT")
            send = frame("SEND", json.dumps({"content": "조각난 프레임"}).encode(),
                         destination="/app/chat.sendMessage", receipt="m")
            c.send(send[:7])
            c.send(send[7:30])
            c.send(send[30:])
            await c.wait_for_command("RECEIPT", 2)
            chats = [json.loads(f.body) for f in await c.wait_for(
                lambda fs: any(f.command == "MESSAGE" and b"CHAT" in f.body for f in fs))
                if f.command == "MESSAGE"]
            self.assertEqual([m["content"] for m in chats if m["type"] == "CHAT"], ["조각난 프레임"])
        return run(go())

    def test_each_outbound_message_is_exactly_one_frame(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self)
            c = await self.client(svc)
            c.send(CONNECT + frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", receipt="s")
                   + frame("SEND", b'{"content":"a"}', destination="/app/chat.sendMessage", receipt="r"))
            await c.wait_for_command("RECEIPT", 2)
            await c.wait_for(lambda fs: any(b'"CHAT"' in f.body for f in fs))
            for message in c.messages:
                self.assertEqual(message.count(b"\x00"), 1, message)
                self.assertTrue(message.endswith(b"\x00"))
        return run(go())

    def test_binary_messages_are_accepted(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self)
            c = await self.client(svc)
            c.send(CONNECT, binary=True)
            await c.wait_for_command("CONNECTED")
        return run(go())

    def test_malformed_frame_gets_error_then_the_socket_closes(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self)
            c = await self.client(svc)
            c.send(CONNECT)
            await c.wait_for_command("CONNECTED")
            c.send(b"SEND\nno-colon-here\n\n\x00")
            [error] = await c.wait_for_command("ERROR")
            self.assertTrue(error.get("message"))
            await c.closed
        return run(go())

    def test_disallowed_origin_is_refused_with_403(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self, allowed_origins=frozenset({"https://chat.example"}))
            ok = await self.client(svc, origin="https://chat.example")
            self.assertTrue(ok.protocol)
            bad = WsClient(ws_url(svc), origin="https://evil.example")
            with self.assertRaises(ConnectionError):
                await bad.opened
        return run(go())

    def test_connections_per_address_are_limited(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self, max_connections_per_ip=2)
            first = await self.client(svc)
            await self.client(svc)
            third = WsClient(ws_url(svc))
            with self.assertRaises(ConnectionError):
                await third.opened
            await first.close()
            await self.client(svc)
        return run(go())

    def test_forwarded_for_is_believed_only_from_trusted_proxies(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self, max_connections_per_ip=1, trusted_proxies=frozenset({"127.0.0.1"}))
            await self.client(svc, headers={"X-Forwarded-For": "203.0.113.1"})
            await self.client(svc, headers={"X-Forwarded-For": "203.0.113.2"})
            again = WsClient(ws_url(svc), headers={"X-Forwarded-For": "203.0.113.1"})
            with self.assertRaises(ConnectionError):
                await again.opened
        return run(go())

    def test_forwarded_for_from_an_untrusted_peer_is_ignored(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self, max_connections_per_ip=1)
            await self.client(svc, headers={"X-Forwarded-For": "203.0.113.1"})
            spoof = WsClient(ws_url(svc), headers={"X-Forwarded-For": "203.0.113.9"})
            with self.assertRaises(ConnectionError):
                await spoof.opened
        return run(go())

    def test_dropped_connection_becomes_a_leave(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self, rejoin_grace=0.5)  # no rejoin within it: a LEAVE
            watcher = await self.client(svc)
            watcher.send(CONNECT + frame("SUBSCRIBE", id="w", destination="/topic/chat", receipt="s"))
            await watcher.wait_for_command("RECEIPT")
            leaver = await self.client(svc)
            leaver.send(CONNECT)
            [connected] = await leaver.wait_for_command("CONNECTED")
            leaver.drop()
            await watcher.wait_for(lambda fs: any(b'"LEAVE"' in f.body for f in fs))
            leaves = [json.loads(f.body) for f in watcher.frames if b'"LEAVE"' in f.body]
            self.assertEqual([m["sender"] for m in leaves], [connected.get("user-name")])
        return run(go())

    def test_sockjs_raw_websocket_path_is_the_same_stomp_endpoint(self) -> Deferred[Any]:
        async def go() -> None:
            svc = await start_service(self, max_connections_per_ip=1)
            url = ws_url(svc) + "/websocket"
            c = WsClient(url, protocols=["v11.stomp"])
            self.addCleanup(c.close)
            await c.opened
            self.assertEqual(c.subprotocol, "v11.stomp")
            c.send(CONNECT)
            [connected] = await c.wait_for_command("CONNECTED")
            self.assertEqual(connected.get("version"), "1.2")
            second = WsClient(url)
            with self.assertRaises(ConnectionError):
                await second.opened
        return run(go())

    def test_a_resume_larger_than_the_send_buffer_is_paced_not_cut(self) -> Deferred[Any]:
        """A client back after a long gap replays more than --max-send-buffer
        of history: the replay waits for the socket instead of overflowing it."""
        async def go() -> None:
            svc = await start_service(self, rate_limit=0.0, frame_rate=0.0, max_content=3000, redis_retain=2000,
                                      max_send_buffer=65536)
            writer = await self.client(svc)
            writer.send(CONNECT)
            await writer.wait_for_command("CONNECTED")
            body = json.dumps({"content": "가" * 2500}).encode()  # ~7.5 KB per message
            for n in range(200):  # ~1.5 MB in all, far over the 64 KiB buffer
                writer.send(frame("SEND", body, destination="/app/chat.sendMessage", receipt=f"r{n}"))
            await writer.wait_for_command("RECEIPT", 200, timeout=30)
            first = (await svc.buffer.recent(201))[0].id  # the writer's JOIN
            reader = await self.client(svc)
            reader.send(CONNECT + frame("SUBSCRIBE", id="s", destination="/topic/chat", **{"x_since_id": first}))
            chats = await reader.wait_for(
                lambda fs: sum(f.command == "MESSAGE" and b'"CHAT"' in f.body for f in fs) >= 200, timeout=30)
            self.assertFalse(reader.closed.called)
            self.assertEqual(sum(f.command == "MESSAGE" and b'"CHAT"' in f.body for f in chats), 200)
            self.assertFalse(writer.closed.called)
        return run(go())
