"""Calls made in one reactor turn, sent to Redis as one command.

txredisapi's per-command cost (a Deferred chain, a connection lookup, two
timeouts) dominated appends, nickname claims and releases under load; one
script per turn for all of them does the work once. Each caller still
gets its own Deferred, in call order.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")
R = TypeVar("R")


class TurnBatcher(Generic[T, R]):
    """``add(item)`` collects; at the end of the turn ``run(items)`` is called
    once per ``max_batch`` items and must fire with one result per item."""

    def __init__(self, reactor: Any, run: Callable[[list[T]], Deferred[Sequence[R]]], max_batch: int = 500) -> None:
        self._reactor = reactor
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[T, Deferred[R]]] = []

    def add(self, item: T) -> Deferred[R]:
        d: Deferred[R] = Deferred()
        if not self._pending:
            self._reactor.callLater(0, self._flush)
        self._pending.append((item, d))
        return d

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_batch):
            batch = pending[start:start + self._max_batch]
            try:
                sent = self._run([item for item, _ in batch])
            except Exception:
                self._failed(Failure(), batch)
                continue
            sent.addCallbacks(self._done, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    @staticmethod
    def _done(results: Sequence[R], batch: list[tuple[T, Deferred[R]]]) -> None:
        if len(results) != len(batch):
            TurnBatcher._failed(Failure(RuntimeError(f"{len(results)} results for {len(batch)} calls")), batch)
            return
        for (_, d), result in zip(batch, results):
            d.callback(result)

    @staticmethod
    def _failed(failure: Failure, batch: list[tuple[T, Deferred[R]]]) -> None:
        for _, d in batch:
            d.errback(failure)
