"""Calls of one reactor turn go out as one batch, answers back in order."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from anonchat.store.turnbatch import TurnBatcher


class TurnBatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.batches: list[list[int]] = []

    def doubling(self, items: list[int]) -> Deferred[Any]:
        self.batches.append(items)
        return succeed([i * 2 for i in items])

    def test_calls_of_one_turn_are_one_batch_and_answered_in_order(self) -> None:
        batcher = TurnBatcher(self.clock, self.doubling)
        results = [batcher.add(i) for i in range(4)]
        self.assertEqual(self.batches, [])
        self.clock.advance(0)
        self.assertEqual(self.batches, [[0, 1, 2, 3]])
        self.assertEqual([self.successResultOf(d) for d in results], [0, 2, 4, 6])
        batcher.add(9)
        self.clock.advance(0)
        self.assertEqual(self.batches[-1], [9])

    def test_large_turns_are_split(self) -> None:
        batcher = TurnBatcher(self.clock, self.doubling, max_batch=3)
        for i in range(7):
            batcher.add(i)
        self.clock.advance(0)
        self.assertEqual(self.batches, [[0, 1, 2], [3, 4, 5], [6]])

    def test_a_failed_batch_fails_every_call_in_it(self) -> None:
        batcher: TurnBatcher[int, Any] = TurnBatcher(self.clock, lambda items: fail(ConnectionError("down")))
        results = [batcher.add(i) for i in range(2)]
        self.clock.advance(0)
        for d in results:
            self.failureResultOf(d, ConnectionError)

    def test_a_batch_that_raises_fails_its_calls(self) -> None:
        def broken(items: list[int]) -> Deferred[Any]:
            raise ValueError("bad")

        batcher = TurnBatcher(self.clock, broken)
        d = batcher.add(1)
        self.clock.advance(0)
        self.failureResultOf(d, ValueError)

    def test_the_wrong_number_of_results_fails_the_calls(self) -> None:
        batcher: TurnBatcher[int, Any] = TurnBatcher(self.clock, lambda items: succeed([1]))
        results = [batcher.add(i) for i in range(2)]
        self.clock.advance(0)
        for d in results:
            self.failureResultOf(d, RuntimeError)
