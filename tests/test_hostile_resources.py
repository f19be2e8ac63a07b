"""Hostile clients that go after server resources, against a real
``twistd -n anonchat``: a connect-and-drop storm, readers that stop reading
(raw WebSocket and SockJS xhr_streaming) while another client floods, and
one address opening more connections than ``--max-connections-per-ip``
(directly and through a trusted proxy's ``X-Forwarded-For``).

Each attack is followed by a bystander check (see ``tests.hostile``); each
test prints a table of what the server did and its RSS, and fails if the RSS
grew by more than ``rss_growth_mib`` over its attacks (floods and storms
leave the allocator a few MiB larger: about 7 MiB measured).
"""

from __future__ import annotations

import json
import time

from tests.hostile import (
    CHAT, SEND_TO, HostileTestCase, RawSocket, RawWs, chat_body, connect_frame, http, metric, mib,
    online, server_rss, sleep, stomp_client,
)
from tests.stompfakes import frame

SEND_BUFFER = 65536
CONTENT = 19000  # characters per flood message (under --max-content 20000)


def presence(bystander_frames: list, kind: str) -> list[str]:  # type: ignore[type-arg]
    out = []
    for f in bystander_frames:
        if f.command == "MESSAGE" and f.get("destination") == CHAT:
            m = json.loads(f.body)
            if m["type"] == kind:
                out.append(m["sender"])
    return out


class ResourceAttackTests(HostileTestCase):
    title = "hostile clients: resource attacks"
    rss_growth_mib = 32


class StormTests(ResourceAttackTests):
    async def storm(self, size: int) -> tuple[str, int, list[str]]:
        """Open ``size`` connections in five equal stages, then drop them all at once.

        Stages: TCP only; half an upgrade request; upgraded; upgraded with half
        a CONNECT frame; fully CONNECTED. Returns (summary, peak RSS, joined names).
        """
        port = self.server.port
        per = size // 5
        socks: list[RawSocket] = []
        names: list[str] = []
        request = b"GET /ws-chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        for stage in range(5):
            batch = [RawWs(port) if stage >= 2 else RawSocket(port) for _ in range(per)]
            for i in range(0, per, 50):  # keep under the listen backlog
                group = batch[i:i + 50]
                if stage >= 2:
                    statuses = [await s.handshake() for s in group]  # type: ignore[attr-defined]
                    assert statuses == [101] * len(group), statuses
                else:
                    for s in group:
                        await s.connect()
                if stage == 1:
                    for s in group:
                        await s.send(request)
                if stage == 3:
                    for s in group:
                        await s.send_text(b"CONNECT\naccept-version:1.2\nhea")  # type: ignore[attr-defined]
                if stage == 4:
                    for s in group:
                        await s.send_text(connect_frame())  # type: ignore[attr-defined]
                    for s in group:
                        connected = await s.wait_message(lambda p: p.startswith(b"CONNECTED"))  # type: ignore[attr-defined]
                        names.append(connected.split(b"user-name:")[1].split(b"\n")[0].decode())
            socks += batch
        peak = server_rss(self.server)
        users_at_peak = await online(self.server)
        for s in socks:
            s.abort()
        if users_at_peak != per + 1:
            raise AssertionError(f"{users_at_peak} online at the peak, expected {per + 1}")
        return f"{size} connects dropped at once ({per} fully CONNECTED)", peak, names

    async def settle(self, names: list[str]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            count = await online(self.server)
            conns = await metric(self.server, "anonchat_connections")
            leaves = presence(self.bystander.client.frames, "LEAVE")
            if count == 1 and conns == 1 and all(n in leaves for n in names):
                break
            await sleep(0.2)
        else:
            raise AssertionError(f"after the storm: {count} online, {conns} connections, "
                                 f"{sum(n in leaves for n in names)}/{len(names)} LEAVEs")
        joins = presence(self.bystander.client.frames, "JOIN")
        leaves = presence(self.bystander.client.frames, "LEAVE")
        for n in names:
            if (joins.count(n), leaves.count(n)) != (1, 1):
                raise AssertionError(f"{n}: {joins.count(n)} JOIN, {leaves.count(n)} LEAVE")

    async def test_connect_and_drop_storm(self) -> None:
        await self.start_server("--connect-timeout", "2")
        baseline = server_rss(self.server)
        peaks: list[int] = []
        afters: list[int] = []

        async def run() -> str:
            summary, peak, names = await self.storm(500)
            peaks.append(peak)
            await self.settle(names)
            await sleep(0.5)
            afters.append(server_rss(self.server))
            status, body = await self.server.get("/api/users")
            users = json.loads(body)
            if users["count"] != 1 or users["users"][0]["name"] != self.bystander.name:
                raise AssertionError(f"/api/users {users}")
            return (f"{summary}; /api/users back to 1 (bystander), 1 JOIN + 1 LEAVE each; "
                    f"peak RSS {mib(peak)} MiB, after {mib(afters[-1])} MiB")

        await self.attack("storm 1: 500 WS connects, drop at once", run)
        for k in (2, 3, 4):
            await self.attack(f"storm {k}: again (leak check)", run)
        if len(afters) == 4:
            # The first storms raise RSS by a few MiB that Python's allocator keeps
            # (measured: the same plateau with no STOMP session at all); from the
            # fourth on it must be flat: nothing is kept per connection.
            if max(afters) - baseline > 16 * 1024:
                self.failures.append(f"RSS after storms {[mib(a) for a in afters]} MiB, baseline {mib(baseline)} MiB")
            if afters[3] - afters[2] > 1024:
                self.failures.append(f"RSS grew from {mib(afters[2])} to {mib(afters[3])} MiB over storm 4")
        self.finish()


class SlowReaderTests(ResourceAttackTests):
    async def flood_until(self, done, limit: int = 600) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        """Send big messages (receipts as flow control) until ``done()``; (messages sent, peak RSS)."""
        flooder, _ = await stomp_client(self.server)
        content = chat_body("x" * CONTENT)
        sent = 0
        peak = server_rss(self.server)
        while sent < limit:
            receipt = f"batch-{sent}"
            frames = [frame("SEND", content, destination=SEND_TO) for _ in range(4)]
            frames.append(frame("SEND", content, destination=SEND_TO, receipt=receipt))
            flooder.send(b"".join(frames))
            sent += len(frames)
            await flooder.wait_for(lambda fs: any(f.get("receipt-id") == receipt for f in fs), 10)
            flooder.frames.clear()
            # the bystander reads it all; keep its buffer small
            self.bystander.client.frames[:] = [f for f in self.bystander.client.frames
                                               if b"xxxxxxxx" not in f.body]
            peak = max(peak, server_rss(self.server))
            if await done():
                break
        await flooder.close()
        return sent, peak

    async def test_reader_that_stops_reading(self) -> None:
        await self.start_server("--rate-limit", "0", "--frame-rate", "0", "--max-content", "20000",
                                "--max-send-buffer", str(SEND_BUFFER), "--sockjs-disconnect-delay", "30")
        port = self.server.port

        async def websocket_reader() -> str:
            slow = RawWs(port, rcvbuf=4096)
            assert await slow.handshake() == 101
            await slow.send_text(connect_frame())
            connected = await slow.wait_message(lambda p: p.startswith(b"CONNECTED"))
            name = connected.split(b"user-name:")[1].split(b"\n")[0].decode()
            await slow.send_text(frame("SUBSCRIBE", id="sub-0", destination=CHAT, receipt="sub"))
            await slow.wait_message(lambda p: p.startswith(b"RECEIPT"))
            before = await metric(self.server, "anonchat_closes_total", reason="slow-consumer")
            rss_before = server_rss(self.server)

            async def cut() -> bool:
                return await metric(self.server, "anonchat_closes_total", reason="slow-consumer") > before

            sent, peak = await self.flood_until(cut)
            if not await cut():
                raise AssertionError(f"slow reader still connected after {sent} messages of {CONTENT} chars")
            await self.bystander.client.wait_for(lambda fs: name in presence(fs, "LEAVE"), 5)
            await sleep(0.5)
            after = server_rss(self.server)
            how = await slow.wait_closed(5)  # now read: what is left, then the end
            if how is None:
                raise AssertionError("the slow reader's socket is still open")
            if peak - rss_before > 32 * 1024:
                raise AssertionError(f"RSS {mib(rss_before)} -> peak {mib(peak)} MiB")
            return (f"cut after {sent} msgs (~{sent * CONTENT // 1024} KiB): slow-consumer +1, TCP {how}, LEAVE; "
                    f"RSS during {mib(peak)} MiB, after {mib(after)} MiB")

        await self.attack("WS reader stops reading, flood", websocket_reader)
        await self.attack("SockJS xhr_streaming reader stops reading", lambda: self.xhr_streaming_reader(False))
        self.finish()

    async def test_sockjs_slow_consumer_is_counted(self) -> None:
        """A SockJS session closed for overflow counts as a slow-consumer close, as a WebSocket one does."""
        await self.start_server("--rate-limit", "0", "--frame-rate", "0", "--max-content", "20000",
                                "--max-send-buffer", str(SEND_BUFFER), "--sockjs-disconnect-delay", "30")
        await self.attack("SockJS slow reader: slow-consumer counted?", lambda: self.xhr_streaming_reader(True))
        self.finish()


    async def xhr_streaming_reader(self, require_metric: bool) -> str:
        """Cut for overflow, not for vanishing: the disconnect delay is set far longer than the flood."""
        port = self.server.port
        sid = "/ws-chat/000/slowstream"
        slow = RawSocket(port, rcvbuf=4096)
        await slow.connect()
        await slow.send(f"POST {sid}/xhr_streaming HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Length: 0\r\n\r\n".encode())
        await slow.read_until(lambda b: b"\no\n" in b)

        async def send(*frames: bytes) -> None:
            code, _, _ = await http(self.server, "POST", sid + "/xhr_send", {},
                                    json.dumps([f.decode() for f in frames]).encode())
            assert code == 204, code

        await send(connect_frame(), frame("SUBSCRIBE", id="sub-0", destination=CHAT, receipt="sub"))
        await slow.read_until(lambda b: b"RECEIPT" in b)
        name = bytes(slow.buffer).split(b"user-name:")[1].split(b"\\n")[0].decode()
        before = await metric(self.server, "anonchat_closes_total", reason="slow-consumer")
        rss_before = server_rss(self.server)

        async def gone() -> bool:
            return name in presence(self.bystander.client.frames, "LEAVE")

        # keep the LEAVE frames: flood_until drops only the big chat messages
        sent, peak = await self.flood_until(gone)
        if not await gone():
            raise AssertionError(f"xhr_streaming reader still online after {sent} messages")
        await sleep(0.5)
        after = server_rss(self.server)
        how = await slow.wait_closed(1) or "still open (finished response queued)"
        counted = await metric(self.server, "anonchat_closes_total", reason="slow-consumer") - before
        if peak - rss_before > 32 * 1024:
            raise AssertionError(f"RSS {mib(rss_before)} -> peak {mib(peak)} MiB")
        result = (f"cut after {sent} msgs: LEAVE, TCP {how}; slow-consumer +{counted:.0f}; "
                  f"RSS during {mib(peak)} MiB, after {mib(after)} MiB")
        if require_metric and counted != 1:
            raise AssertionError(f"{result}; not counted in anonchat_closes_total{{reason=\"slow-consumer\"}}")
        return result


class PerAddressLimitTests(ResourceAttackTests):
    async def open_many(self, count: int, headers: dict[str, str] | None,
                        path: str = "/ws-chat", protocol: str | None = "v12.stomp") -> tuple[list[RawWs], list[int]]:
        socks = [RawWs(self.server.port) for _ in range(count)]
        statuses = [await s.handshake(path, protocol, headers) for s in socks]
        return socks, statuses

    async def test_connections_per_address(self) -> None:
        # The bystander comes through the proxy from an address of its own.
        await self.start_server("--max-connections-per-ip", "5", "--trusted-proxies", "127.0.0.1",
                                bystander_headers={"X-Forwarded-For": "198.51.100.1"})
        attacker = "203.0.113.7"
        held: list[RawWs] = []

        async def ten_through_proxy() -> str:
            socks, statuses = await self.open_many(10, {"X-Forwarded-For": attacker})
            held.extend(s for s, st in zip(socks, statuses) if st == 101)
            for s, st in zip(socks, statuses):
                if st != 101:
                    s.abort()
            if sorted(statuses) != [101] * 5 + [429] * 5:
                raise AssertionError(f"statuses {statuses}")
            return f"XFF {attacker} x10: 5 x 101, 5 x 429"

        async def spoofed_chains() -> str:
            out = []
            for chain, expect in ((f"6.6.6.6, 10.0.0.1, {attacker}", 429),    # forged hops on the left
                                  (f"{attacker}, 127.0.0.1", 429),            # trusted proxy on the right
                                  (f"{attacker}, 203.0.113.9", 101),          # rightmost untrusted hop counts
                                  ("not-an-ip, 203.0.113.10", 101)):
                socks, statuses = await self.open_many(1, {"X-Forwarded-For": chain})
                socks[0].abort()
                out.append(f"{chain!r}: {statuses[0]}")
                if statuses[0] != expect:
                    raise AssertionError("; ".join(out) + f" (expected {expect})")
            return "; ".join(out)

        async def released_when_closed() -> str:
            for s in held:
                s.abort()
            held.clear()
            deadline = time.monotonic() + 5
            while True:
                socks, statuses = await self.open_many(1, {"X-Forwarded-For": attacker})
                socks[0].abort()
                if statuses == [101] or time.monotonic() > deadline:
                    break
                await sleep(0.1)
            if statuses != [101]:
                raise AssertionError(f"still refused after closing: {statuses}")
            return "closed the 5: the address may connect again (101)"

        async def ten_direct() -> str:
            socks, statuses = await self.open_many(10, None)
            for s in socks:
                s.abort()
            if sorted(statuses) != [101] * 5 + [429] * 5:
                raise AssertionError(f"statuses {statuses}")
            return "no XFF (peer 127.0.0.1) x10: 5 x 101, 5 x 429"

        await self.attack("10 WS via proxy, one client address", ten_through_proxy)
        await self.attack("spoofed X-Forwarded-For chains", spoofed_chains)
        await self.attack("slots released on close", released_when_closed)
        await self.attack("10 WS direct from 127.0.0.1", ten_direct)
        self.finish()

    async def test_sockjs_connections_per_address(self) -> None:
        await self.start_server("--max-connections-per-ip", "5", "--trusted-proxies", "127.0.0.1",
                                bystander_headers={"X-Forwarded-For": "198.51.100.1"})

        async def ten_sockjs() -> str:
            # The limit is per address across every transport (anonchat/web/addresslimits.py).
            addr = "203.0.113.20"
            socks, statuses = await self.open_many(10, {"X-Forwarded-For": addr}, "/ws-chat/000/x{}/websocket", None)
            opened = 0
            for s, st in zip(socks, statuses):
                if st == 101:
                    try:
                        await s.wait_message(lambda p: p == b"o", 2)
                        await s.send_text(json.dumps([connect_frame().decode()]).encode())
                        await s.wait_message(lambda p: b"CONNECTED" in p, 2)
                        opened += 1
                    except (AssertionError, OSError):
                        pass  # refused: ERROR "too many connections", then closed
            for s in socks:
                s.abort()
            if opened != 5:
                raise AssertionError(f"SockJS websocket, XFF {addr} x10: {opened} STOMP sessions opened "
                                     f"(HTTP {statuses}); the per-address limit does not apply to SockJS")
            return f"SockJS websocket x10: {opened} sessions"

        await self.attack("10 SockJS websockets, one address", ten_sockjs)
        self.finish()


class RequestBodyTests(ResourceAttackTests):
    """``--max-request-body``: refused from its Content-Length, or cut as a
    chunked body passes it; never read in full, never spooled to disk."""

    LIMIT = 262144

    async def test_request_bodies_are_bounded(self) -> None:
        await self.start_server("--max-request-body", str(self.LIMIT))
        port = self.server.port

        async def huge_content_length() -> str:
            s = RawSocket(port)
            await s.connect()
            started = time.monotonic()
            await s.send(b"POST /api/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 314572800\r\n\r\n")  # 300 MB announced, not one byte sent
            head = await s.read_until(lambda b: b"\r\n\r\n" in b, 3)
            took = time.monotonic() - started
            status = bytes(head).split(b" ", 2)[1].decode()
            how = await s.wait_closed(3)
            s.abort()
            if status != "413":
                raise AssertionError(f"300 MB Content-Length: {status}")
            if how is None:
                raise AssertionError("413, but the connection stays open for the body")
            return f"300 MB Content-Length on /api/users: 413 after {took * 1000:.0f} ms, no body sent; TCP {how}"

        async def chunked_past_the_limit(path: str) -> str:
            s = RawSocket(port)
            await s.connect()
            await s.send(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n".encode())
            rss_before = server_rss(self.server)
            chunk = b"%x\r\n" % 65536 + b"[" * 65536 + b"\r\n"
            sent = 0
            cap = 64 * 1024 * 1024
            try:
                while sent < cap and s.closed is None:
                    await s.send(chunk, timeout=3)
                    sent += 65536
                    s.pump()
            except (OSError, TimeoutError):
                pass  # reset, broken pipe, or the server stopped reading
            how = await s.wait_closed(3)
            peak = server_rss(self.server)
            s.abort()
            if how is None:
                raise AssertionError(f"{path}: still open after {sent // 1024} KiB of chunked body")
            if sent >= cap:
                raise AssertionError(f"{path}: the whole {cap // 1048576} MiB was read")
            if peak - rss_before > 16 * 1024:
                raise AssertionError(f"{path}: RSS {mib(rss_before)} -> {mib(peak)} MiB")
            return f"chunked {path}: dropped ({how}) after {sent // 1024} KiB sent; RSS {mib(peak)} MiB"

        async def normal_xhr_send() -> str:
            sid = "/ws-chat/000/bodylimit"
            opened, _, body = await http(self.server, "POST", sid + "/xhr", {}, b"")
            code, _, _ = await http(self.server, "POST", sid + "/xhr_send", {},
                                    json.dumps([connect_frame().decode()]).encode())
            poll, _, data = await http(self.server, "POST", sid + "/xhr", {}, b"")
            if (opened, body, code, poll) != (200, b"o\n", 204, 200) or b"CONNECTED" not in data:
                raise AssertionError(f"xhr {opened} {body!r}, xhr_send {code}, poll {poll} {data[:80]!r}")
            await http(self.server, "POST", sid + "/xhr_send", {}, json.dumps([frame("DISCONNECT").decode()]).encode())
            return "xhr_send under the limit: 204, CONNECTED on the next poll"

        await self.attack("POST announcing 300 MB", huge_content_length)
        await self.attack("chunked POST /api/users past the limit", lambda: chunked_past_the_limit("/api/users"))
        await self.attack("chunked xhr_send past the limit",
                          lambda: chunked_past_the_limit("/ws-chat/000/bodylimit2/xhr_send"))
        await self.attack("normal SockJS xhr_send", normal_xhr_send)
        self.finish()
