"""/metrics: Prometheus text with the counters the issue asks for."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from tests.inprocess import start_service, ws_url
from tests.stompfakes import frame
from tests.wsclient import WsClient


async def scrape(port: int) -> str:
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await Agent(reactor, pool=pool).request(b"GET", f"http://127.0.0.1:{port}/metrics".encode())
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    return (await readBody(response)).decode()


def value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in metrics:\n{text}")


class MetricsTests(TestCase):
    timeout = 20

    def test_counts_connections_messages_deliveries_refusals_and_flushes(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self, rate_limit=0.0, frame_rate=0.0, flush_interval=0.05)
            port = svc.listening_port
            c = WsClient(ws_url(svc))
            self.addCleanup(c.close)
            await c.opened
            c.send(frame("CONNECT", accept_version="1.2") + frame("SUBSCRIBE", id="s", destination="/topic/chat")
                   + frame("SUBSCRIBE", id="e", destination="/user/queue/errors")
                   + frame("SEND", b'{"content":"one"}', destination="/app/chat.sendMessage", receipt="1")
                   + frame("SEND", b'{"content":"two"}', destination="/app/chat.sendMessage", receipt="2")
                   + frame("SEND", b'not json', destination="/app/chat.sendMessage"))
            await c.wait_for_command("RECEIPT", 2)
            await c.wait_for(lambda fs: sum(f.get("destination") == "/user/queue/errors" for f in fs) == 1)
            text = await scrape(port)
            self.assertEqual(value(text, 'anonchat_connections{transport="websocket"}'), 1)
            self.assertEqual(value(text, "anonchat_messages_in_total"), 2)
            self.assertGreaterEqual(value(text, "anonchat_deliveries_total"), 2)
            self.assertEqual(value(text, 'anonchat_refused_total{code="INVALID_JSON"}'), 1)
            self.assertGreaterEqual(value(text, "anonchat_fanout_seconds_count"), 1)
            for _ in range(100):
                if value(await scrape(port), "anonchat_flushed_total") >= 3:  # JOIN + 2 CHAT
                    break
            self.assertGreaterEqual(value(await scrape(port), "anonchat_flushed_total"), 3)
            c.send(frame("SEND", b"{}", destination="/nowhere"))
            await c.closed
            text = await scrape(port)
            self.assertEqual(value(text, 'anonchat_closes_total{reason="bad-destination"}'), 1)
        return ensureDeferred(go())

    def test_process_memory_and_open_files_are_exported(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self)
            text = await scrape(svc.listening_port)
            self.assertGreater(value(text, "process_resident_memory_bytes"), 1_000_000)
            self.assertGreater(value(text, "process_open_fds"), 3)
            self.assertGreater(value(text, "process_max_fds"), 0)
        return ensureDeferred(go())

    def test_history_reads_refused_past_the_history_rate_are_counted(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self, history_rate=1.0, api_rate=0.0)
            port = svc.listening_port
            statuses = []
            for _ in range(4):  # empty pages cost nothing: book some history first
                svc.room.history_rate.charge(5)
                pool = HTTPConnectionPool(reactor, persistent=False)
                response = await Agent(reactor, pool=pool).request(
                    b"GET", f"http://127.0.0.1:{port}/api/messages/recent".encode())
                await readBody(response)
                statuses.append(response.code)
            self.assertIn(503, statuses)
            self.assertEqual(value(await scrape(port), "anonchat_history_refused_total"), statuses.count(503))

        return ensureDeferred(go())
