"""Hostile clients against a real ``twistd -n anonchat``: malformed STOMP,
oversized frames, silent and half-open sockets, bad origins, broken SockJS
JSON, unstorable text, subscription and rate floods.

After every attack a bystander (connected and subscribed before it) must
still chat (SEND with receipt, MESSAGE back) and ``/healthz`` must be 200.
Each test prints a table of what the server did, and fails if the
server's RSS grew by more than a few MiB over its attacks.

Resource attacks (connection storms, slow readers, per-address limits)
are in ``test_hostile_resources``.
"""

from __future__ import annotations

import json
import random
import time

from tests.hostile import (
    CHAT, ERRORS, SEND_TO, HostileTestCase, RawSocket, RawWs, app_errors, chat_body, chat_contents,
    closed_within, connect_frame, describe_error, http, sleep, stomp_client,
)
from tests.stompfakes import frame
from tests.wsclient import WsClient

GOOD_ORIGIN = "http://good.example"
EVIL_ORIGIN = "http://evil.example"
CONNECT_TIMEOUT = 1.0
HEARTBEAT_MS = 1000
#: A TCP connection that never completes its HTTP request is closed by the
#: site's idle timeout, which is --connect-timeout too (the open-handshake and
#: CONNECT timeouts only start once the request has been parsed).
IDLE_HTTP_CLOSE = CONNECT_TIMEOUT


class ProtocolAttackTests(HostileTestCase):
    title = "hostile clients: protocol attacks"
    rss_growth_mib = 8  # measured: under 1 MiB over all 24 attacks

    async def refused(self, c: WsClient, data: bytes, expect: str, binary: bool = False,
                      timeout: float = 5.0) -> str:
        """Send ``data``; the server must answer one ERROR whose message has ``expect``, then close."""
        c.send(data, binary=binary)
        await closed_within(c, timeout)
        errors = [f for f in c.frames if f.command == "ERROR"]
        if len(errors) != 1:
            raise AssertionError(f"expected one ERROR, got {describe_error(c)}")
        if expect not in (errors[0].get("message") or ""):
            raise AssertionError(f"expected ERROR {expect!r}, got {describe_error(c)}")
        if not errors[0].body:
            raise AssertionError("ERROR without a body")
        return describe_error(c)

    async def fresh(self) -> WsClient:
        c = WsClient(self.server.ws_url)
        await c.opened
        return c

    async def connected(self, heart_beat: str = "0,0") -> WsClient:
        c, _ = await stomp_client(self.server, heart_beat=heart_beat, subscribe_errors=False)
        return c

    async def test_protocol_attacks(self) -> None:
        await self.start_server("--connect-timeout", str(CONNECT_TIMEOUT), "--heartbeat", str(HEARTBEAT_MS),
                                "--allowed-origins", GOOD_ORIGIN)
        rng = random.Random(20261125)
        port = self.server.port

        # Half-open TCP first: they must be gone by the end, whatever else happens meanwhile.
        idle_tcp = await RawSocket(port).connect()
        half_http = await RawSocket(port).connect()
        await half_http.send(b"GET /ws-chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")

        def garbage() -> bytes:
            # Not starting with EOL, so the parser must judge the garbage itself.
            return b"\x07" + bytes(rng.randrange(256) for _ in range(4095))

        http_text = b"GET /admin HTTP/1.1\r\nHost: evil\r\nCookie: a=b\r\n\r\n"

        async def garbage_before_connect() -> str:
            return await self.refused(await self.fresh(), garbage(), "", binary=True)

        async def http_before_connect() -> str:
            return await self.refused(await self.fresh(), http_text, "unknown command")

        async def garbage_after_connect() -> str:
            return await self.refused(await self.connected(), garbage(), "", binary=True)

        async def http_after_connect() -> str:
            return await self.refused(await self.connected(), http_text, "unknown command")

        async def ws_level_garbage() -> str:
            # Bytes that are not WebSocket frames at all, after a good handshake.
            ws = RawWs(port)
            status = await ws.handshake()
            assert status == 101, status
            await ws.send_text(connect_frame())
            await ws.wait_message(lambda p: p.startswith(b"CONNECTED"))
            await ws.send(b"\x8f\x7f" + bytes(rng.randrange(256) for _ in range(2048)))
            how = await ws.wait_closed(5)
            if how is None:
                raise AssertionError("connection kept after WebSocket-level garbage")
            close = ws.close_frame()
            return f"TCP {how}" + (f" after close frame {close}" if close else " (no close frame)")

        async def one_mib_message() -> str:
            c = await self.connected()
            body = b"x" * (1 << 20)
            c.send(frame("SEND", body, destination=SEND_TO))
            await closed_within(c, 10)
            self.assertEqual([f.get("message") for f in c.frames if f.command == "ERROR"], ["frame too large"])
            return describe_error(c)

        async def one_mib_split_frame() -> str:
            c = await self.connected()
            data = b"SEND\ndestination:" + SEND_TO.encode() + b"\n\n" + b"x" * (1 << 20) + b"\0"
            chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
            for chunk in chunks:
                if c.closed.called or c.protocol.state != c.protocol.STATE_OPEN:
                    break  # the server has started closing: the rest would be refused by Autobahn here
                c.send(chunk)
                await sleep(0)
            await closed_within(c, 10)
            errors = [f for f in c.frames if f.command == "ERROR"]
            if len(errors) != 1 or "too large" not in (errors[0].get("message") or ""):
                raise AssertionError(describe_error(c))
            return describe_error(c)

        async def ten_thousand_headers() -> str:
            c = await self.connected()
            heads = b"".join(b"h%d:v\n" % i for i in range(10000))
            return await self.refused(c, b"SEND\ndestination:" + SEND_TO.encode() + b"\n" + heads + b"\n{}\0",
                                      "too many headers")

        async def header_over_limit() -> str:
            c = await self.connected()
            return await self.refused(c, frame("SEND", b"{}", destination=SEND_TO, x_long="y" * 9000),
                                      "header too long")

        async def escape_tab() -> str:
            c = await self.connected()
            return await self.refused(c, b"SEND\ndestination:" + SEND_TO.encode() + b"\nx-a:a\\tb\n\n{}\0",
                                      "invalid header escape")

        async def escape_trailing_backslash() -> str:
            c = await self.connected()
            return await self.refused(c, b"SEND\ndestination:" + SEND_TO.encode() + b"\nx-a:ab\\\n\n{}\0",
                                      "invalid header escape")

        async def content_length(value: bytes, expect: str) -> str:
            c = await self.connected()
            return await self.refused(
                c, b"SEND\ndestination:" + SEND_TO.encode() + b"\ncontent-length:" + value + b"\n\n{}\0", expect)

        async def content_length_then_silence() -> str:
            # The frame says 100 bytes, 20 come, then nothing: with heart-beats
            # agreed (1 s), the server must give up on the silent client.
            c = await self.connected(heart_beat=f"{HEARTBEAT_MS},{HEARTBEAT_MS}")
            body = chat_body("partial!")
            c.send(b"SEND\ndestination:" + SEND_TO.encode() + b"\ncontent-length:100\n\n" + body + b"\0")
            started = time.monotonic()
            await closed_within(c, 10)
            took = time.monotonic() - started
            if "partial!" in chat_contents(self.bystander.client):
                raise AssertionError("the partial frame was broadcast")
            if took < 2 * HEARTBEAT_MS / 1000:
                raise AssertionError(f"dropped after {took:.1f}s, before the heart-beat grace")
            return f"held the partial frame; dropped as silent after {took:.1f}s ({describe_error(c)})"

        async def frame_before_connect(command: str, headers: dict[str, str]) -> str:
            c = await self.fresh()
            return await self.refused(c, frame(command, b"", **headers), "CONNECT expected")

        async def silent_websocket() -> str:
            c = await self.fresh()
            started = time.monotonic()
            await closed_within(c, CONNECT_TIMEOUT + 4)
            took = time.monotonic() - started
            errors = [f for f in c.frames if f.command == "ERROR"]
            if len(errors) != 1 or "CONNECT timeout" not in (errors[0].get("message") or ""):
                raise AssertionError(describe_error(c))
            if not CONNECT_TIMEOUT * 0.8 <= took <= CONNECT_TIMEOUT + 2:
                raise AssertionError(f"closed after {took:.1f}s")
            return f"{describe_error(c)} after {took:.1f}s"

        async def too_many_subscriptions() -> str:
            c = await self.connected()
            frames = b"".join(frame("SUBSCRIBE", id=f"s{i}", destination="/topic/chat.typing") for i in range(101))
            return await self.refused(c, frames, "too many subscriptions")

        async def lone_surrogate() -> str:
            c, name = await stomp_client(self.server)
            c.send(frame("SEND", b'{"content":"\\ud800"}', destination=SEND_TO, receipt="bad"))
            await c.wait_for(lambda fs: len(app_errors(c)) >= 1)
            # The same as raw bytes: a UTF-8-encoded surrogate is not UTF-8 (a binary
            # WebSocket message: a text one would be refused by WebSocket itself, 1007).
            c.send(frame("SEND", b'{"content":"\xed\xa0\x80"}', destination=SEND_TO, receipt="bad2"), binary=True)
            await c.wait_for(lambda fs: len(app_errors(c)) >= 2)
            c.send(frame("SEND", chat_body("after the surrogate"), destination=SEND_TO, receipt="good"))
            await c.wait_for(lambda fs: any(f.command == "RECEIPT" and f.get("receipt-id") == "good" for f in fs))
            if c.closed.called:
                raise AssertionError("connection closed")
            if any(f.command == "RECEIPT" and f.get("receipt-id") in ("bad", "bad2") for f in c.frames):
                raise AssertionError("a refused SEND got a RECEIPT")
            await sleep(1.2)  # one flush interval
            status, body = await self.server.get("/api/messages/recent?limit=500")
            assert status == 200
            mine = [m["content"] for m in json.loads(body) if m["sender"] == name and m["type"] == "CHAT"]
            if mine != ["after the surrogate"]:
                raise AssertionError(f"stored: {mine!r}")
            codes = [e["code"] for e in app_errors(c)]
            await c.close()
            return f"{codes} on {ERRORS}, no RECEIPT, connection kept, nothing stored"

        async def rate_limit_flood() -> str:
            c, name = await stomp_client(self.server)
            total = 100
            started = time.monotonic()
            c.send(b"".join(frame("SEND", chat_body(f"flood {i}"), destination=SEND_TO, receipt=f"f{i}")
                            for i in range(total)))
            c.send(frame("DISCONNECT", receipt="bye"))
            await c.wait_for(lambda fs: any(f.command == "RECEIPT" and f.get("receipt-id") == "bye" for f in fs), 10)
            elapsed = time.monotonic() - started
            receipts = sum(1 for f in c.frames if f.command == "RECEIPT" and f.get("receipt-id", "").startswith("f"))
            limited = [e for e in app_errors(c) if e["code"] == "RATE_LIMITED"]
            # burst 40, then 20/s: a few more may trickle in while the batch is parsed
            if not 40 <= receipts <= 40 + int(20 * elapsed) + 1:
                raise AssertionError(f"{receipts} accepted")
            if receipts + len(limited) != total:
                raise AssertionError(f"{receipts} accepted + {len(limited)} refused != {total}")
            await self.bystander.client.wait_for(lambda fs: len(chat_contents(self.bystander.client, name)) >= receipts)
            await sleep(0.3)
            seen = len(chat_contents(self.bystander.client, name))
            if seen != receipts:
                raise AssertionError(f"bystander saw {seen} flood messages, {receipts} were accepted")
            return f"{receipts}/{total} accepted (RECEIPT, broadcast); {len(limited)} RATE_LIMITED on {ERRORS}"

        async def silent_tcp() -> str:
            # Checked last: a TCP connection that never finishes (or never starts) the HTTP upgrade.
            out = []
            for name, sock in (("no bytes", idle_tcp), ("half an upgrade request", half_http)):
                remaining = IDLE_HTTP_CLOSE + 5 - (time.monotonic() - sock.opened_at)
                how = await sock.wait_closed(max(remaining, 0.1))
                if how is None:
                    raise AssertionError(f"raw TCP ({name}) still open after "
                                         f"{time.monotonic() - sock.opened_at:.0f}s")
                assert sock.closed_at is not None
                out.append(f"{name}: {how} after {sock.closed_at - sock.opened_at:.1f}s")
            return "; ".join(out)

        async def bad_origin() -> str:
            ws = RawWs(port)
            status = await ws.handshake(headers={"Origin": EVIL_ORIGIN})
            ws.abort()
            info, _, _ = await http(self.server, "GET", "/ws-chat/info", {"Origin": EVIL_ORIGIN})
            xhr, _, _ = await http(self.server, "POST", "/ws-chat/000/evilsess/xhr", {"Origin": EVIL_ORIGIN}, b"")
            sws = RawWs(port)
            sockjs_ws = await sws.handshake("/ws-chat/000/evilws/websocket", None, {"Origin": EVIL_ORIGIN})
            sws.abort()
            good_ws = RawWs(port)
            good = await good_ws.handshake(headers={"Origin": GOOD_ORIGIN})
            good_ws.abort()
            good_info, headers, _ = await http(self.server, "GET", "/ws-chat/info", {"Origin": GOOD_ORIGIN})
            got = (status, info, xhr, sockjs_ws, good, good_info)
            if got != (403, 403, 403, 403, 101, 200):
                raise AssertionError(f"WS, info, xhr, SockJS WS, good WS, good info: {got}")
            if headers.get("access-control-allow-origin") != GOOD_ORIGIN:
                raise AssertionError(f"CORS header {headers.get('access-control-allow-origin')!r}")
            return f"WS {status}, /info {info}, xhr {xhr}, SockJS WS {sockjs_ws}; good origin {good}/{good_info}"

        async def sockjs_broken_json_xhr() -> str:
            sid = "/ws-chat/000/brokenjson"
            opened, _, body = await http(self.server, "POST", sid + "/xhr", {}, b"")
            assert (opened, body) == (200, b"o\n"), (opened, body)
            code, _, text = await http(self.server, "POST", sid + "/xhr_send", {}, b'["CONNECT')
            if code != 500:
                raise AssertionError(f"broken JSON: {code} {text!r}")
            # The session survives and still works.
            ok, _, _ = await http(self.server, "POST", sid + "/xhr_send", {}, json.dumps([connect_frame().decode()]).encode())
            poll, _, data = await http(self.server, "POST", sid + "/xhr", {}, b"")
            if ok != 204 or not data.startswith(b'a["CONNECTED'):
                raise AssertionError(f"after broken JSON: send {ok}, poll {poll} {data[:60]!r}")
            await http(self.server, "POST", sid + "/xhr_send", {}, json.dumps([frame("DISCONNECT").decode()]).encode())
            return f"xhr_send {code} {text.strip().decode()!r}; session kept (next send {ok}, CONNECTED)"

        async def sockjs_broken_json_ws() -> str:
            ws = RawWs(port)
            status = await ws.handshake("/ws-chat/000/brokenws/websocket", None)
            assert status == 101, status
            await ws.wait_message(lambda p: p == b"o")
            await ws.send_text(b'["CONNECT\\n')
            how = await ws.wait_closed(5)
            close = ws.close_frame()
            if close is None or how is None:
                raise AssertionError(f"close frame {close}, TCP {how}")
            return f"close frame {close}, then TCP {how}"

        await self.attack("random binary before CONNECT", garbage_before_connect)
        await self.attack("HTTP-looking text before CONNECT", http_before_connect)
        await self.attack("random binary after CONNECT", garbage_after_connect)
        await self.attack("HTTP-looking text after CONNECT", http_after_connect)
        await self.attack("non-WebSocket bytes after upgrade", ws_level_garbage)
        await self.attack("1 MiB frame in one WS message", one_mib_message)
        await self.attack("1 MiB frame over 17 WS messages", one_mib_split_frame)
        await self.attack("10,000 headers", ten_thousand_headers)
        await self.attack("9,000-byte header line", header_over_limit)
        await self.attack("1.2 escape \\t", escape_tab)
        await self.attack("1.2 trailing backslash", escape_trailing_backslash)
        await self.attack("content-length:-5", lambda: content_length(b"-5", "invalid content-length"))
        await self.attack("content-length:abc", lambda: content_length(b"abc", "invalid content-length"))
        await self.attack("content-length:10^14", lambda: content_length(b"99999999999999", "too large"))
        await self.attack("content-length > body, then silence", content_length_then_silence)
        await self.attack("SEND before CONNECT",
                          lambda: frame_before_connect("SEND", {"destination": SEND_TO}))
        await self.attack("SUBSCRIBE before CONNECT",
                          lambda: frame_before_connect("SUBSCRIBE", {"destination": CHAT, "id": "0"}))
        await self.attack("WebSocket open, never CONNECT", silent_websocket)
        await self.attack("101 subscriptions", too_many_subscriptions)
        await self.attack('lone surrogate {"content":"\\ud800"}', lone_surrogate)
        await self.attack("100 SENDs at once (rate limit)", rate_limit_flood)
        await self.attack("bad Origin", bad_origin)
        await self.attack("SockJS xhr_send broken JSON", sockjs_broken_json_xhr)
        await self.attack("SockJS websocket broken JSON", sockjs_broken_json_ws)
        await self.attack("raw TCP, upgrade never completed", silent_tcp)
        self.finish()
