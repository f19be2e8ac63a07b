"""ReplicaRoute: when history reads try the replica, and what gets logged."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from anonchat.store.sql_replica import RECHECK_SECONDS, Passed, ReplicaRoute


class ReplicaRouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.route = ReplicaRoute(self.clock)

    def test_a_new_route_tries_the_replica(self) -> None:
        self.assertTrue(self.route.worth_trying())

    def test_a_replica_that_failed_is_skipped_for_a_second_then_tried_again(self) -> None:
        self.route.passed_over(Passed.FAILED, "OperationalError 2003")
        self.assertFalse(self.route.worth_trying())
        self.clock.advance(RECHECK_SECONDS - 0.01)
        self.assertFalse(self.route.worth_trying())
        self.clock.advance(0.02)
        self.assertTrue(self.route.worth_trying())

    def test_a_replica_behind_is_skipped_for_a_second_too(self) -> None:
        self.route.passed_over(Passed.BEHIND, "")
        self.assertFalse(self.route.worth_trying())
        self.clock.advance(RECHECK_SECONDS)
        self.assertTrue(self.route.worth_trying())

    def test_serving_again_clears_the_skip(self) -> None:
        self.route.passed_over(Passed.FAILED, "x")
        self.clock.advance(RECHECK_SECONDS)
        self.route.served()
        self.assertTrue(self.route.worth_trying())

    def test_each_outage_is_logged_once_and_so_is_its_end(self) -> None:
        with capturedLogs() as events:
            for _ in range(5):
                self.route.passed_over(Passed.FAILED, "OperationalError 2003")
                self.clock.advance(RECHECK_SECONDS)
            self.route.served()
            self.route.served()
            self.route.passed_over(Passed.FAILED, "OperationalError 2013")
        levels = [event["log_level"] for event in events]
        self.assertEqual(levels, [LogLevel.warn, LogLevel.info, LogLevel.warn])
        self.assertEqual([event.get("error") for event in events], ["OperationalError 2003", None,
                                                                   "OperationalError 2013"])

    def test_a_change_of_reason_is_logged_a_repeat_is_not(self) -> None:
        with capturedLogs() as events:
            self.route.passed_over(Passed.BEHIND, "")
            self.route.passed_over(Passed.BEHIND, "")
            self.route.passed_over(Passed.FAILED, "OperationalError 2003")
            self.route.passed_over(Passed.UNKNOWN_POSITION, "OperationalError 1193")
            self.route.passed_over(Passed.UNKNOWN_POSITION, "OperationalError 1193")
        self.assertEqual([event["reason"] for event in events], ["behind", "failed", "unknown-position"])
