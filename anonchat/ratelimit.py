"""A token bucket on an injected clock: ``rate`` per second, ``burst`` deep."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    __slots__ = ("rate", "burst", "_clock", "_tokens", "_stamp")

    def __init__(self, clock: IReactorTime, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock.seconds()

    def tokens_left(self) -> float:
        """What could be spent now (refilled to the clock), spending nothing."""
        if self.rate <= 0:
            return self.burst
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._tokens

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when none is left.
        A rate of 0 means no limit."""
        if self.rate <= 0:
            return True
        if self.tokens_left() >= 1.0:
            self._tokens -= 1.0
            return True
        return False
