"""Open connections per client address, shared by every transport."""

from __future__ import annotations

from collections import Counter


class ConnectionLimiter:
    """``acquire`` before accepting a connection, ``release`` when it ends.
    A limit of 0 means no limit."""

    def __init__(self, per_address: int = 0) -> None:
        self.per_address = per_address
        self._open: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        if self.per_address and self._open[address] >= self.per_address:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        left = self._open[address] - 1
        if left > 0:
            self._open[address] = left
        else:
            del self._open[address]
