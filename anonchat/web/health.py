"""Readiness for load balancers (``/healthz``).

503 only when this node cannot take chat: the buffer is unreachable, or
the node is not ready (starting, draining). A database outage is 200
``degraded``: chat goes on and the backlog waits in the buffer. The store
probes are cached for ``ttl`` seconds and shared by concurrent callers, so
a busy prober costs one PING and one ``SELECT 1`` a second at most; a probe
that does not answer within ``timeout`` counts as down.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime

Ping = Callable[[], "Deferred[bool]"]


class HealthCheck:
    def __init__(self, clock: IReactorTime, buffer_ping: Ping, archive_ping: Ping, *,
                 ready: Callable[[], bool], uses_redis: bool, ttl: float = 1.0, timeout: float = 2.0) -> None:
        self._clock = clock
        self._pings = (buffer_ping, archive_ping)
        self._ready = ready
        self._uses_redis = uses_redis
        self._ttl = ttl
        self._timeout = timeout
        self._cached: tuple[bool, bool] | None = None
        self._cached_at = 0.0
        self._probing: list[Deferred[tuple[bool, bool]]] | None = None

    async def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body)."""
        redis, database = await self._probe()
        ok = redis and self._ready()
        if not ok:
            status = "unavailable"
        else:
            status = "ok" if database else "degraded"
        return (200 if ok else 503), {
            "status": status,
            "redis": ("ok" if redis else "down") if self._uses_redis else "in-process",
            "database": "ok" if database else "down",
        }

    def _probe(self) -> Deferred[tuple[bool, bool]]:
        now = self._clock.seconds()
        if self._cached is not None and now - self._cached_at < self._ttl:
            return succeed(self._cached)
        waiter: Deferred[tuple[bool, bool]] = Deferred()
        if self._probing is not None:
            self._probing.append(waiter)
            return waiter
        self._probing = [waiter]
        probes = [ping().addTimeout(self._timeout, self._clock) for ping in self._pings]  # type: ignore[arg-type]
        DeferredList(probes, consumeErrors=True).addCallback(self._probed)
        return waiter

    def _probed(self, results: list[tuple[bool, Any]]) -> None:
        redis, database = (bool(success and value) for success, value in results)
        self._cached = (redis, database)
        self._cached_at = self._clock.seconds()
        waiting, self._probing = self._probing or [], None
        for d in waiting:
            d.callback(self._cached)

