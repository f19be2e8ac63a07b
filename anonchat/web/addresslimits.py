"""Per-client-address limits, shared by every transport and the REST API:
open connections (``--max-connections-per-ip``) and the REST request rate
(``--api-rate``, burst twice the rate).

Rate buckets are kept in least-recently-used order; one idle long enough
to be full again is the same as a new one, so it is dropped, which keeps
memory proportional to the addresses active in the last few seconds.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict

from twisted.internet.interfaces import IReactorTime

from anonchat.ratelimit import TokenBucket


class AddressLimits:
    """``acquire``/``release`` a connection slot; ``take_request`` for each
    REST request. Zero means no limit for either."""

    def __init__(self, clock: IReactorTime, *, max_connections: int = 0, api_rate: float = 0.0) -> None:
        self.max_connections = max_connections
        self.api_rate = api_rate
        self._clock = clock
        self._open: Counter[str] = Counter()
        self._burst = max(1.0, 2 * api_rate)
        #: Seconds after which an untouched bucket is full again.
        self._refill = self._burst / api_rate if api_rate > 0 else 0.0
        self._buckets: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()

    # -- connections

    def acquire(self, address: str) -> bool:
        if self.max_connections and self._open[address] >= self.max_connections:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        left = self._open[address] - 1
        if left > 0:
            self._open[address] = left
        else:
            del self._open[address]

    # -- REST requests

    def take_request(self, address: str) -> int | None:
        """None if this request may go ahead, else the seconds to wait
        (for ``Retry-After``)."""
        if self.api_rate <= 0:
            return None
        now = self._clock.seconds()
        self._forget_idle(now)
        entry = self._buckets.pop(address, None)
        bucket = entry[0] if entry is not None else TokenBucket(self._clock, self.api_rate, self._burst)
        self._buckets[address] = (bucket, now)
        if bucket.take():
            return None
        return max(1, math.ceil(1 / self.api_rate))

    @property
    def rate_tracked(self) -> int:
        """Addresses whose request rate is being tracked."""
        return len(self._buckets)

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            address, (_, last) = next(iter(self._buckets.items()))
            if now - last < self._refill:
                return
            del self._buckets[address]
