"""The site's static face: the demo page and its files."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from tests.inprocess import start_service


class StaticTests(TestCase):
    timeout = 20

    def test_demo_page_and_its_script_are_served_and_revalidated(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self)
            agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
            for path, kind, needle in [("/", b"text/html", "anonchat".encode())]:
                response = await agent.request(b"GET", f"http://127.0.0.1:{svc.listening_port}{path}".encode())
                body = await readBody(response)
                self.assertEqual(response.code, 200, path)
                self.assertIn(kind, response.headers.getRawHeaders(b"content-type")[0])
                self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-cache"])
                self.assertIn(needle, body)
        return ensureDeferred(go())

    def test_health_on_the_embedded_stores_says_in_process(self):  # type: ignore[no-untyped-def]
        import json

        async def go() -> None:
            svc = await start_service(self)
            agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
            response = await agent.request(b"GET", f"http://127.0.0.1:{svc.listening_port}/healthz".encode())
            self.assertEqual(response.code, 200)
            self.assertEqual(json.loads(await readBody(response)),
                             {"status": "ok", "redis": "in-process", "database": "ok"})
        return ensureDeferred(go())
