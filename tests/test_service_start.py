"""AnonchatService's start and stop in this process: every start step is
bounded by --start-timeout, and a stop never waits for a start that hangs."""

from __future__ import annotations

import os
import time

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import TestCase

from anonchat.service import AnonchatService, StartFailed
from anonchat.settings import Settings


class SilentRelay:
    """A typing relay whose start never answers (a Redis that accepts the
    connection and then says nothing)."""

    def __init__(self) -> None:
        self.stopped = False

    def start(self) -> Deferred[None]:
        return Deferred()

    def stop(self) -> Deferred[None]:
        self.stopped = True
        return succeed(None)


class StartTimeoutTests(TestCase):
    timeout = 20

    def service(self, start_timeout: float) -> tuple[AnonchatService, list[StartFailed]]:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        settings = attrs.evolve(Settings(), port="tcp:0:interface=127.0.0.1", start_timeout=start_timeout,
                                database="sqlite:///" + os.path.join(workdir, "anonchat.sqlite3"))
        failures: list[StartFailed] = []
        svc = AnonchatService(settings, reactor, on_start_failed=failures.append)
        svc.relay = SilentRelay()
        return svc, failures

    async def test_a_relay_that_never_answers_fails_the_start_at_the_timeout(self) -> None:
        svc, failures = self.service(start_timeout=0.5)
        started = time.monotonic()
        svc.startService()
        with self.assertRaisesRegex(StartFailed, r"typing relay.* unreachable for 0\.5 s"):
            await svc.when_ready()
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual([str(f) for f in failures], [str(svc.start_failure)])
        self.assertIsNone(svc.port)  # it never listened
        await svc.stopService()

    async def test_stop_does_not_wait_for_a_hanging_start(self) -> None:
        svc, failures = self.service(start_timeout=30)
        svc.startService()
        await Deferred.fromCoroutine(_sleep(0.2))
        stopping = time.monotonic()
        await svc.stopService()
        self.assertLess(time.monotonic() - stopping, 2.0)
        self.assertEqual(failures, [])  # a stop is not a failed start
        self.assertTrue(svc.relay.stopped)  # type: ignore[attr-defined]


async def _sleep(seconds: float) -> None:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d
