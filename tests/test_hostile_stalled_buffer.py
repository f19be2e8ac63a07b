"""SENDs waiting on a stalled buffer, against a real server on the wire.

The server's Redis (a private ``redis-server``) sits behind a fault proxy.
While the proxy holds every byte, a client pipelines far more SENDs, each
with a receipt, than the 100 allowed to wait: the server must stop reading
that connection instead of queueing them (its RSS stays flat), and once
Redis is back, every SEND it did read gets exactly one answer (RECEIPT or
a refusal naming the receipt), the rest are read and answered in turn,
and the bystander chats on.
"""

from __future__ import annotations

import json
import time

from twisted.internet import reactor

from anonchat.stomp.parser import FrameParser
from tests.faultproxy import FaultProxy
from tests.hostile import (
    ERRORS, SEND_TO, HostileTestCase, RawWs, chat_body, connect_frame, metric, server_rss, sleep, ws_frame,
)
from tests.privateredis import PrivateRedis
from tests.stompfakes import frame

#: SENDs the client pipelines (five times the 100 allowed to wait), and
#: characters in each (all of them fit the kernel's socket buffers, so
#: only the server can hold them back).
SENDS = 500
CONTENT = 2000


class StalledBufferTests(HostileTestCase):
    title = "hostile clients: SENDs waiting on a stalled buffer"
    timeout = 120

    async def test_sends_waiting_on_a_stalled_buffer(self) -> None:
        redis = PrivateRedis(self)
        await redis.start()
        proxy = FaultProxy(reactor, "127.0.0.1", redis.port)
        await proxy.start()
        self.addCleanup(proxy.stop)
        await self.start_server("--redis", f"redis://127.0.0.1:{proxy.port}/0", "--rate-limit", "0",
                                "--frame-rate", "0", "--max-content", str(CONTENT + 100))

        async def stalled_buffer() -> str:
            raw = RawWs(self.server.port)
            assert await raw.handshake() == 101
            await raw.send_text(connect_frame())
            await raw.send_text(frame("SUBSCRIBE", id="e", destination=ERRORS, receipt="e-ok"))
            await raw.wait_message(lambda m: b"receipt-id:e-ok" in m)
            wire = b"".join(ws_frame(frame("SEND", chat_body(f"{n} " + "z" * CONTENT), destination=SEND_TO,
                                           receipt=f"p{n}"))
                            for n in range(SENDS))
            before = server_rss(self.server)
            proxy.blackhole()
            try:
                # Every byte goes out at once; the server reads SENDs until 100
                # wait for Redis (whose commands time out after 5 s), then stops.
                stalled = await push(raw, wire, seconds=2.0)
                await sleep(1.0)
                waiting = await metric(self.server, "anonchat_sends_waiting")
                held = server_rss(self.server) - before
                answered_while_stalled = len(answers(raw))
            finally:
                proxy.restore()
            assert waiting == 100, f"{waiting} SENDs waiting for a stalled buffer (at most 100)"
            pushed = stalled
            pushed += await push(raw, wire[pushed:], seconds=60.0)
            assert pushed == len(wire), f"only {pushed} of {len(wire)} bytes taken after Redis came back"
            deadline = time.monotonic() + 60
            while len(answers(raw)) < SENDS and time.monotonic() < deadline and raw.closed is None:
                raw.pump()
                await sleep(0.05)
            got = answers(raw)
            kinds = sorted(set(got.values()))
            assert raw.closed is None, f"the server hung up ({raw.closed})"
            assert sorted(got) == sorted(f"p{n}" for n in range(SENDS)), \
                f"{len(got)} of {SENDS} SENDs answered ({kinds})"
            assert held < 8 * 1024, f"RSS grew {held} KiB while {pushed_mb(wire)} MB were pushed at it"
            raw.abort()
            return (f"stalled buffer: {int(waiting)} SENDs waiting, the rest unread ({stalled / 1e6:.1f} MB sent"
                    f" by the client), RSS +{held // 1024} MiB, {answered_while_stalled} answers; back: all {SENDS}"
                    f" answered once ({', '.join(kinds)})")

        await self.attack("pipelined SENDs, Redis stalled", stalled_buffer)
        self.finish()


def pushed_mb(wire: bytes) -> str:
    return f"{len(wire) / 1e6:.1f}"


async def push(raw: RawWs, data: bytes, seconds: float) -> int:
    """Write as much of ``data`` as the server takes within ``seconds``,
    reading what it answers meanwhile; how many bytes went."""
    view = memoryview(data)
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += raw.sock.send(view[sent:sent + 65536])
        except BlockingIOError:
            raw.pump()
            await sleep(0.01)
    raw.pump()
    return sent


def answers(raw: RawWs) -> dict[str, str]:
    """receipt -> RECEIPT, or the code of the refusal that names it."""
    found: dict[str, str] = {}
    parser = FrameParser(max_frame=1 << 24)
    for opcode, payload in raw.messages():
        if opcode != 1:
            continue
        for f in parser.feed(payload):
            receipt = f.get("receipt-id")
            if receipt is None or not receipt.startswith("p"):
                continue
            if f.command == "RECEIPT":
                kind = "RECEIPT"
            else:
                kind = json.loads(f.body).get("code", "?") if f.command == "MESSAGE" else f.command
            assert receipt not in found, f"{receipt} answered twice ({found[receipt]}, {kind})"
            found[receipt] = kind
    return found

