"""Per-client-address limits: open connections and the REST request rate
(``--max-connections-per-ip``, ``--api-rate``), as a unit on a clock and
through a real in-process server."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from anonchat.web.addresslimits import AddressLimits
from tests.inprocess import start_service


class ConnectionSlotTests(SynchronousTestCase):
    def test_slots_per_address_and_released_on_close(self) -> None:
        limits = AddressLimits(Clock(), max_connections=2)
        self.assertEqual([limits.acquire("a"), limits.acquire("a"), limits.acquire("a")], [True, True, False])
        self.assertTrue(limits.acquire("b"))
        limits.release("a")
        self.assertTrue(limits.acquire("a"))

    def test_zero_means_no_connection_limit(self) -> None:
        limits = AddressLimits(Clock())
        self.assertTrue(all(limits.acquire("a") for _ in range(1000)))


class RequestRateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = AddressLimits(self.clock, api_rate=20.0)

    def test_burst_of_twice_the_rate_then_refused_with_a_retry_after(self) -> None:
        answers = [self.limits.take_request("a") for _ in range(41)]
        self.assertEqual(answers[:40], [None] * 40)
        self.assertEqual(answers[40], 1)
        self.clock.advance(0.05)  # one token back at 20/s
        self.assertIsNone(self.limits.take_request("a"))
        self.assertIsNotNone(self.limits.take_request("a"))

    def test_each_address_has_its_own_budget(self) -> None:
        for _ in range(40):
            self.limits.take_request("a")
        self.assertIsNotNone(self.limits.take_request("a"))
        self.assertIsNone(self.limits.take_request("b"))

    def test_retry_after_is_whole_seconds_until_a_token(self) -> None:
        slow = AddressLimits(self.clock, api_rate=0.25)  # one request every 4 s (a burst of at least one)
        self.assertEqual([slow.take_request("a"), slow.take_request("a")], [None, 4])

    def test_zero_rate_is_off_and_tracks_nobody(self) -> None:
        off = AddressLimits(self.clock, api_rate=0.0)
        self.assertTrue(all(off.take_request(f"10.0.{i // 250}.{i % 250}") is None for i in range(1000)))
        self.assertEqual(off.rate_tracked, 0)

    def test_idle_addresses_are_forgotten(self) -> None:
        for i in range(1000):
            self.limits.take_request(f"10.0.{i // 250}.{i % 250}")
        self.assertEqual(self.limits.rate_tracked, 1000)
        self.clock.advance(2.0)  # long enough for any bucket to be full again
        self.limits.take_request("192.0.2.1")
        self.assertEqual(self.limits.rate_tracked, 1)

    def test_an_address_still_limited_is_not_forgotten(self) -> None:
        for _ in range(41):
            self.limits.take_request("a")
        self.clock.advance(1.0)
        self.limits.take_request("b")
        self.assertEqual(self.limits.rate_tracked, 2)
        refused = sum(self.limits.take_request("a") is not None for _ in range(41))
        self.assertEqual(refused, 41 - 20)  # 20 tokens came back in that second, not a fresh 40


class RestRateTests(TestCase):
    timeout = 20

    async def get(self, port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Headers, bytes]:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        h = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
        response = await agent.request(b"GET", f"http://127.0.0.1:{port}{path}".encode(), h)
        return response.code, response.headers, await readBody(response)

    def test_rest_past_the_rate_gets_429_with_retry_after(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self, api_rate=1.0)  # burst 2
            port = svc.listening_port
            codes = [(await self.get(port, "/api/users"))[0] for _ in range(2)]
            self.assertEqual(codes, [200, 200])
            code, headers, body = await self.get(port, "/api/messages/recent", {"Origin": "http://a.example"})
            self.assertEqual(code, 429)
            self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"1"])
            self.assertEqual(headers.getRawHeaders(b"access-control-allow-origin"), [b"http://a.example"])
            self.assertIn("error", json.loads(body))
        return ensureDeferred(go())

    def test_health_and_metrics_are_not_limited(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self, api_rate=1.0)
            port = svc.listening_port
            codes = [(await self.get(port, path))[0] for path in ["/healthz", "/metrics"] * 5]
            self.assertEqual(codes, [200] * 10)
            self.assertEqual((await self.get(port, "/api/users"))[0], 200)
        return ensureDeferred(go())

    def test_the_limit_follows_the_client_address_behind_a_trusted_proxy(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self, api_rate=1.0, trusted_proxies=frozenset({"127.0.0.1"}))
            port = svc.listening_port
            one = {"X-Forwarded-For": "203.0.113.1"}
            codes = [(await self.get(port, "/api/users", one))[0] for _ in range(3)]
            self.assertEqual(codes, [200, 200, 429])
            self.assertEqual((await self.get(port, "/api/users", {"X-Forwarded-For": "203.0.113.2"}))[0], 200)
        return ensureDeferred(go())
