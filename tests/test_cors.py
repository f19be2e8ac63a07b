"""One CORS policy: ``/api/*`` answers cross-origin requests exactly as the
SockJS endpoint does (the contract: SockJS rules, ``--allowed-origins``)."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from tests.inprocess import start_service

CORS_HEADERS = (b"access-control-allow-origin", b"access-control-allow-credentials", b"vary",
                b"access-control-allow-headers", b"access-control-allow-methods")


class OneCorsPolicyTests(TestCase):
    timeout = 20

    async def cors(self, port: int, method: bytes, path: str, headers: dict[str, str]) -> tuple[int, dict]:  # type: ignore[type-arg]
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        h = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        response = await agent.request(method, f"http://127.0.0.1:{port}{path}".encode(), h)
        return response.code, {name: response.headers.getRawHeaders(name) for name in CORS_HEADERS
                               if name != b"access-control-allow-methods"}

    async def compare(self, allowed: frozenset[str] | None, origins: list[str | None]) -> None:
        svc = await start_service(self, **({"allowed_origins": allowed} if allowed else {}))
        port = svc.listening_port
        for origin in origins:
            headers = {"Origin": origin} if origin is not None else {}
            for method, extra in ((b"GET", {}), (b"OPTIONS", {"Access-Control-Request-Headers": "x-a, x-b"})):
                rest = await self.cors(port, method, "/api/users", {**headers, **extra})
                sockjs = await self.cors(port, method, "/ws-chat/info", {**headers, **extra})
                self.assertEqual(rest, sockjs, f"{method!r} with Origin {origin!r}, allowed {allowed}")

    def test_any_origin(self):  # type: ignore[no-untyped-def]
        return ensureDeferred(self.compare(None, [None, "null", "https://a.example"]))

    def test_allowed_origins(self):  # type: ignore[no-untyped-def]
        return ensureDeferred(self.compare(frozenset({"https://a.example"}),
                                           [None, "null", "https://a.example", "https://evil.example"]))
