"""``/healthz``: ``degraded`` (still 200) without the database, 503 only
without the buffer or while not ready; probes cached for a second."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from anonchat.web.health import HealthCheck
from tests.inprocess import start_service
from tests.serverprocess import free_port


class Probe:
    """A ping that answers ``up`` (or is left hanging), counting its calls."""

    def __init__(self) -> None:
        self.up = True
        self.hang = False
        self.calls = 0
        self.pending: list[Deferred[bool]] = []

    def __call__(self) -> Deferred[bool]:
        self.calls += 1
        if self.hang:
            d: Deferred[bool] = Deferred()
            self.pending.append(d)
            return d
        return succeed(self.up)


class HealthCheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.buffer, self.archive = Probe(), Probe()
        self.ready = True
        self.check = HealthCheck(self.clock, self.buffer, self.archive, ready=lambda: self.ready, uses_redis=True)

    def report(self) -> tuple[int, dict]:  # type: ignore[type-arg]
        return self.successResultOf(Deferred.fromCoroutine(self.check.report()))

    def test_all_up_is_ok(self) -> None:
        self.assertEqual(self.report(), (200, {"status": "ok", "redis": "ok", "database": "ok"}))

    def test_database_down_is_degraded_but_200(self) -> None:
        self.archive.up = False
        self.assertEqual(self.report(), (200, {"status": "degraded", "redis": "ok", "database": "down"}))

    def test_buffer_down_is_503(self) -> None:
        self.buffer.up = False
        self.assertEqual(self.report(), (503, {"status": "unavailable", "redis": "down", "database": "ok"}))

    def test_not_ready_or_draining_is_503_at_once(self) -> None:
        self.report()
        self.ready = False
        self.assertEqual(self.report()[0], 503)
        self.assertEqual(self.report()[1]["status"], "unavailable")
        self.ready = True
        self.assertEqual(self.report()[0], 200)

    def test_probes_are_cached_for_a_second(self) -> None:
        for _ in range(5):
            self.report()
            self.clock.advance(0.1)
        self.assertEqual((self.buffer.calls, self.archive.calls), (1, 1))
        self.archive.up = False
        self.clock.advance(0.6)
        self.assertEqual(self.report()[1]["database"], "down")
        self.assertEqual((self.buffer.calls, self.archive.calls), (2, 2))

    def test_callers_during_a_probe_share_it(self) -> None:
        self.archive.hang = True
        first = Deferred.fromCoroutine(self.check.report())
        second = Deferred.fromCoroutine(self.check.report())
        self.assertEqual(self.archive.calls, 1)
        self.archive.pending[0].callback(True)
        self.assertEqual(self.successResultOf(first)[0], 200)
        self.assertEqual(self.successResultOf(second)[0], 200)

    def test_a_probe_that_does_not_answer_counts_as_down(self) -> None:
        self.archive.hang = True
        result = Deferred.fromCoroutine(self.check.report())
        self.assertNoResult(result)
        self.clock.advance(2.0)
        self.assertEqual(self.successResultOf(result), (200, {"status": "degraded", "redis": "ok", "database": "down"}))


class HealthEndpointTests(TestCase):
    timeout = 30

    def test_a_node_without_its_database_is_degraded_not_down(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            nowhere = f"mysql://root:@127.0.0.1:{free_port()}/anonchat_nowhere"
            svc = await start_service(self, database=nowhere)
            agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
            response = await agent.request(b"GET", f"http://127.0.0.1:{svc.listening_port}/healthz".encode())
            body = json.loads(await readBody(response))
            self.assertEqual((response.code, body["status"], body["database"]), (200, "degraded", "down"))
        return ensureDeferred(go())
