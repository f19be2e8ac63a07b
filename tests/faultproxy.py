"""A fault-injecting TCP proxy for tests: put it between a client and a server
and cut or stall the link at will.

``cut()`` aborts every proxied connection (an RST, like a server that died)
and keeps aborting new ones until ``restore()``; the listening port stays the
same so the client's configuration never changes. ``blackhole()`` stops the
bytes instead (a partitioned network): connections stay open but nothing
flows either way until ``restore()``, so only the client's timeouts notice.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.python.failure import Failure

OPEN, CUT, BLACKHOLE, HOLD_REPLIES = "open", "cut", "blackhole", "hold-replies"


class _Upstream(protocol.Protocol):
    """The proxy's connection to the real server."""

    transport: Any  # an ITCPTransport (typed loosely: mypy runs without the zope plugin)

    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream

    def dataReceived(self, data: bytes) -> None:
        self.downstream.transport.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.downstream.transport.loseConnection()


class _Downstream(protocol.Protocol):
    """A client's connection to the proxy."""

    transport: Any

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.upstream: _Upstream | None = None
        self.early: list[bytes] = []
        self.connecting: Deferred[Any] | None = None

    def connectionMade(self) -> None:
        self.proxy.connections.add(self)
        if self.proxy.mode == CUT:
            self.transport.abortConnection()
            return
        self.transport.pauseProducing()
        if self.proxy.mode in (OPEN, HOLD_REPLIES):
            self.open_upstream()

    def open_upstream(self) -> None:
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, self.proxy.target_host, self.proxy.target_port, timeout=5)
        factory: Any = protocol.Factory.forProtocol(lambda: _Upstream(self))
        self.connecting = endpoint.connect(factory)
        self.connecting.addCallbacks(self.upstream_ready, self.upstream_failed)

    def upstream_ready(self, upstream: _Upstream) -> None:
        self.connecting = None
        self.upstream = upstream
        for data in self.early:
            upstream.transport.write(data)
        self.early = []
        if self.proxy.mode == OPEN:
            self.transport.resumeProducing()
        elif self.proxy.mode == HOLD_REPLIES:
            upstream.transport.pauseProducing()
            self.transport.resumeProducing()
        elif self.proxy.mode == CUT:
            self.abort()
        else:
            upstream.transport.pauseProducing()

    def upstream_failed(self, reason: Failure) -> None:
        self.connecting = None
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.transport.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.proxy.connections.discard(self)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()
        elif self.connecting is not None:
            self.connecting.cancel()

    def abort(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.abortConnection()
        elif self.connecting is not None:
            self.connecting.cancel()
        self.transport.abortConnection()

    def pause(self) -> None:
        self.transport.pauseProducing()
        if self.upstream is not None:
            self.upstream.transport.pauseProducing()

    def hold_replies(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pauseProducing()

    def resume(self) -> None:
        if self.upstream is None:
            if self.connecting is None:
                self.open_upstream()
            return
        self.upstream.transport.resumeProducing()
        self.transport.resumeProducing()


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target``."""

    def __init__(self, reactor: Any, target_host: str, target_port: int) -> None:
        self.reactor = reactor
        self.target_host = target_host
        self.target_port = target_port
        self.mode = OPEN
        self.connections: set[_Downstream] = set()
        self.accepted = 0
        self._listening: Any = None  # an IListeningPort

    @property
    def port(self) -> int:
        assert self._listening is not None, "start() the proxy first"
        return int(self._listening.getHost().port)

    async def start(self) -> int:
        """Listen; fires with the port to point the client at."""
        factory = protocol.Factory.forProtocol(self._accept)
        self._listening = await TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(factory)
        return self.port

    def _accept(self) -> _Downstream:
        self.accepted += 1
        return _Downstream(self)

    def cut(self) -> None:
        """Reset every connection now and every new one until ``restore()``."""
        self.mode = CUT
        for connection in list(self.connections):
            connection.abort()

    def blackhole(self) -> None:
        """Stop every byte, both ways, on old and new connections alike."""
        self.mode = BLACKHOLE
        for connection in list(self.connections):
            connection.pause()

    def hold_replies(self) -> None:
        """Forward requests, hold replies (in the proxy's socket buffers)
        until ``restore()``, on old and new connections alike."""
        self.mode = HOLD_REPLIES
        for connection in list(self.connections):
            connection.hold_replies()

    def restore(self) -> None:
        """Forward again; stalled connections carry on where they stopped."""
        self.mode = OPEN
        for connection in list(self.connections):
            connection.resume()

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        self.mode = CUT
        for connection in list(self.connections):
            connection.abort()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await listening.stopListening()
        # let the aborted transports finish closing before the test ends
        while self.connections:
            await task.deferLater(self.reactor, 0.01, lambda: None)
