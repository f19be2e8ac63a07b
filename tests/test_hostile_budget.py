"""The per-connection abuse budget against a real server, on the wire:
stalled resumes, frame floods, re-subscribe races, typing floods and a
client that vanished with heart-beats off. Each attack is a row with the
server's answer, its RSS before and after, and a bystander check."""

from __future__ import annotations

import json
import time

from tests.hostile import (
    CHAT, SEND_TO, HostileTestCase, RawWs, chat_body, chat_contents, closed_within, connect_frame, describe_error,
    http, metric, server_rss, sleep, stomp_client,
)
from tests.stompfakes import frame

TYPING = "/topic/chat.typing"


class BudgetAttackTests(HostileTestCase):
    title = "hostile clients: the per-connection budget"
    rss_growth_mib = 32

    async def history(self, count: int, size: int = 900) -> list[str]:
        """``count`` stored messages of about ``size`` characters; their ids."""
        c, name = await stomp_client(self.server)
        for n in range(count):
            c.send(frame("SEND", chat_body(f"h{n} " + "x" * size), destination=SEND_TO, receipt=f"h{n}"))
            if n % 50 == 49:
                await sleep(0.6)  # within the frame budget
        await c.wait_for(lambda fs: any(f.get("receipt-id") == f"h{count - 1}" for f in fs), 30)
        await c.close()
        status, _, body = await http(self.server, "GET", f"/api/messages/recent?limit={min(count, 500)}")
        assert status == 200, status
        return [m["id"] for m in json.loads(body) if m["type"] == "CHAT"]

    async def test_budget_attacks(self) -> None:
        # history bigger than the kernel's socket buffers, so a replay to a
        # client that stops reading really waits for its socket
        await self.start_server("--rate-limit", "0", "--max-replay", "400", "--frame-rate", "100",
                                "--max-content", "20000",
                                "--ws-ping-interval", "1", "--ws-ping-timeout", "1")
        ids = await self.history(400, size=19000)
        oldest = ids[0]

        async def stalled_resume() -> str:
            """Resume from long ago, then never read while the room is busy."""
            raw = RawWs(self.server.port, rcvbuf=4096)
            assert await raw.handshake() == 101
            await raw.send_text(connect_frame())
            await raw.send_text(frame("SUBSCRIBE", id="sub-0", destination=CHAT, x_since_id=oldest))
            publisher, _ = await stomp_client(self.server)
            before = server_rss(self.server)
            sent = 0
            while raw.closed is None and sent < 500:
                publisher.send(frame("SEND", chat_body("y" * 19000), destination=SEND_TO))
                sent += 1
                if sent % 50 == 0:
                    await sleep(0.6)  # within the publisher's own frame budget
                    if await metric(self.server, "anonchat_closes_total", reason="slow-consumer"):
                        break
            grown = server_rss(self.server) - before
            await publisher.close()
            cut = await metric(self.server, "anonchat_closes_total", reason="slow-consumer")
            assert cut >= 1, f"not cut after {sent} live messages"
            assert grown < 40 * 1024, f"RSS grew {grown} KiB"
            raw.abort()
            return f"cut as slow consumer after {sent} live messages; RSS +{grown // 1024} MiB"

        async def frame_flood() -> str:
            c, _ = await stomp_client(self.server)
            c.send(b"".join(frame("UNSUBSCRIBE", id=f"x{n}") for n in range(1000)))
            await closed_within(c, 5)
            assert "too many frames" in describe_error(c), describe_error(c)
            return describe_error(c)

        async def resume_subscribe_loop() -> str:
            """SUBSCRIBE x-since-id / UNSUBSCRIBE pairs, as fast as they go."""
            c, _ = await stomp_client(self.server)
            c.send(b"".join(frame("SUBSCRIBE", id="sub-0", destination=CHAT, x_since_id=oldest)
                            + frame("UNSUBSCRIBE", id="sub-0") for _ in range(300)))
            await closed_within(c, 10)
            assert "too many frames" in describe_error(c), describe_error(c)
            return describe_error(c)

        async def second_resume_while_one_runs() -> str:
            raw = RawWs(self.server.port, rcvbuf=4096)
            assert await raw.handshake() == 101
            await raw.send_text(connect_frame())
            await raw.send_text(frame("SUBSCRIBE", id="a", destination=CHAT, x_since_id=oldest)
                                + frame("SUBSCRIBE", id="b", destination=CHAT, x_since_id=oldest))
            closed = await raw.wait_closed(5)
            assert closed is not None, "still open"
            assert b"a resume is already running" in raw.buffer, bytes(raw.buffer[-300:])
            return "ERROR 'a resume is already running on this connection', closed"

        async def remount_resubscribe() -> str:
            """A React remount: UNSUBSCRIBE and SUBSCRIBE sub-0 again at once."""
            c, _ = await stomp_client(self.server)
            _, _, body = await http(self.server, "GET", "/api/messages/recent?limit=100")
            recent = [m["id"] for m in json.loads(body) if m["type"] == "CHAT"]
            since = recent[-50]
            c.send(frame("SUBSCRIBE", id="sub-0", destination=CHAT, x_since_id=since)
                   + frame("UNSUBSCRIBE", id="sub-0")
                   + frame("SUBSCRIBE", id="sub-0", destination=CHAT, x_since_id=since, receipt="again"))
            await c.wait_for(lambda fs: any(f.get("receipt-id") == "again" for f in fs))
            writer, _ = await stomp_client(self.server)
            writer.send(frame("SEND", chat_body("after remount"), destination=SEND_TO))
            await c.wait_for(lambda fs: "after remount" in chat_contents(c), 10)
            got = [json.loads(f.body)["id"] for f in c.frames
                   if f.command == "MESSAGE" and f.get("destination") == CHAT and f.get("subscription") == "sub-0"]
            await writer.close()
            await c.close()
            assert len(got) == len(set(got)), "duplicates"
            missing = [i for i in recent[-49:] if i not in got]
            assert not missing, f"{len(missing)} replayed messages missing"
            return f"{len(got)} messages, none missing, none twice"

        async def typing_flood() -> str:
            watcher, _ = await stomp_client(self.server)
            watcher.send(frame("SUBSCRIBE", id="t", destination=TYPING, receipt="t"))
            await watcher.wait_for(lambda fs: any(f.get("receipt-id") == "t" for f in fs))
            typist, _ = await stomp_client(self.server)
            started = time.monotonic()
            for n in range(90):
                typist.send(frame("SEND", b'{"typing": %s}' % (b"true" if n % 2 else b"false"),
                                  destination="/app/chat.typing"))
            await sleep(1.0)
            elapsed = time.monotonic() - started
            seen = [f for f in watcher.frames if f.command == "MESSAGE" and f.get("destination") == TYPING]
            await typist.close()
            await watcher.close()
            assert len(seen) <= 2 + 2 * elapsed + 1, f"{len(seen)} typing updates in {elapsed:.1f}s"
            return f"90 updates sent, {len(seen)} relayed in {elapsed:.1f}s"

        async def vanished_without_heartbeats() -> str:
            """Heart-beats 0,0, then silence: no pong to the server's pings."""
            raw = RawWs(self.server.port)
            assert await raw.handshake() == 101
            await raw.send_text(connect_frame("0,0"))
            await raw.read_until(lambda b: b"CONNECTED" in b)
            name = bytes(raw.buffer).split(b"user-name:", 1)[1].split(b"\n", 1)[0].decode()
            started = time.monotonic()
            # This raw client answers no ping: the server must give up on it.
            closed = await raw.wait_closed(10)
            waited = time.monotonic() - started
            assert closed is not None, "still connected after 10 s"
            await sleep(1.5)  # its --rejoin-grace
            status, _, body = await http(self.server, "GET", "/api/users")
            assert name not in [u["name"] for u in json.loads(body)["users"]], "still listed"
            return f"dropped after {waited:.1f}s without a pong; LEAVE written"

        await self.attack("stalled resume (x-since-id, never reads)", stalled_resume)
        await self.attack("1,000 frames in one message", frame_flood)
        await self.attack("300 resume SUBSCRIBE/UNSUBSCRIBE pairs", resume_subscribe_loop)
        await self.attack("second x-since-id while one runs", second_resume_while_one_runs)
        await self.attack("UNSUBSCRIBE + re-SUBSCRIBE sub-0 mid-replay", remount_resubscribe)
        await self.attack("90 typing updates at once", typing_flood)
        await self.attack("heart-beat 0,0 then vanished", vanished_without_heartbeats)
        self.finish()
