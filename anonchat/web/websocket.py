"""WebSocket carriers via Autobahn: what every WebSocket connection shares
(``WebSocketCarrier``), and the one raw STOMP-over-WebSocket carrier
(``StompWebSocketProtocol``) served at ``/ws-chat`` and ``/ws-chat/websocket``.

Broadcast frames are framed once (``TextMessages``, cached on the shared
``Outbound``) and written straight to the TCP transport.
Inbound payload is streamed to the STOMP parser as Autobahn reads it,
never gathered into whole messages: the parser's frame limit bounds
memory and answers an oversized frame with ``ERROR`` as the contract says
(Autobahn's own message limit would drop the connection silently).
The backlog bound uses Twisted's public producer API: while the transport
has paused us, what we write is counted, and past the limit we hang up.
Keepalive pings run on the injected clock, not Autobahn's auto-ping (which
runs on txaio's global loop), so they can be tested with ``task.Clock``.
"""

from __future__ import annotations

import os
from typing import AbstractSet, Any, Callable, Protocol

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.stomp.outbound import Outbound
from anonchat.stomp.transport import ClientInfo, IFrameReceiver, IFrameTransport
from anonchat.web.addresslimits import AddressLimits
from anonchat.web.clientaddress import client_address
from anonchat.web.origins import origin_allowed

log = Logger()

#: Subprotocols in our order of preference.
STOMP_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")

#: Seconds a client has to finish the opening / closing handshake.
OPEN_HANDSHAKE_TIMEOUT = 10.0
CLOSE_HANDSHAKE_TIMEOUT = 2.0

SessionFactory = Callable[[IFrameTransport, ClientInfo], IFrameReceiver]


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...


class Tracker(Protocol):
    """Where a carrier registers itself so a server shutdown can reach it."""

    def track(self, connection: Any) -> None: ...

    def untrack(self, connection: Any) -> None: ...


def configure(factory: WebSocketServerFactory, max_message_size: int) -> None:
    """The Autobahn options every carrier uses (0 = no message size limit)."""
    factory.setProtocolOptions(
        maxFramePayloadSize=max_message_size,
        maxMessagePayloadSize=max_message_size,
        openHandshakeTimeout=OPEN_HANDSHAKE_TIMEOUT,
        closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
        autoPingInterval=0,
        failByDrop=True,
        # Compression is per connection: never for fan-out.
        perMessageCompressionAccept=lambda offers: None,
    )


class LibraryLog:
    """Stands in for Autobahn's per-connection logger. Its events carry the
    peer's address and every request header as fields (at debug level, and
    some warnings too), so only the templates of warnings and worse go on,
    with no values filled in."""

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        pass

    trace = debug = info = _drop

    def warn(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        log.warn("WebSocket library: {template}", template=format or "")

    warning = error = critical = failure = warn

    def __getattr__(self, name: str) -> Any:
        return self._drop


@implementer(IPushProducer)
class WebSocketCarrier(WebSocketServerProtocol):  # type: ignore[misc]
    """One WebSocket as a carrier: write-side back-pressure (we take the
    transport's producer slot), read-side pause, and keepalive pings.

    Subclasses implement ``opened``, ``drained`` and ``closed``.
    """

    #: The connected TCP or TLS transport (with producer support).
    transport: Any
    log = LibraryLog()

    write_paused = False
    reading_paused = False
    _ping_interval = 0.0
    _ping_timeout = 0.0
    _ping_call: Any = None
    _pong_deadline: Any = None

    @property
    def clock(self) -> Clock:
        """The factory's clock (the reactor, or a ``task.Clock`` in tests)."""
        return self.factory.clock  # type: ignore[no-any-return]

    def onOpen(self) -> None:
        try:
            self.transport.registerProducer(self, True)
        except RuntimeError:
            # Twisted Web's channel registered itself before the upgrade.
            self.transport.unregisterProducer()
            self.transport.registerProducer(self, True)
        self.opened()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._stop_keepalive()
        self.closed()

    def opened(self) -> None:
        raise NotImplementedError

    def drained(self) -> None:
        """The transport took what we wrote: we may write again."""

    def closed(self) -> None:
        raise NotImplementedError

    # -- IPushProducer: the transport tells us when its buffer is full

    def pauseProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        self.write_paused = False
        self.drained()

    def stopProducing(self) -> None:
        self.write_paused = True

    # -- reading

    def pause_reading(self) -> None:
        """Stop reading the socket: the client's TCP window fills and it
        stops sending. What Autobahn already read may still arrive."""
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if self.transport is not None:
                self.transport.resumeProducing()

    # -- keepalive

    def keepalive(self, interval: float, timeout: float) -> None:
        """Ping every ``interval`` seconds; drop the peer if a ping is not
        answered within ``timeout``. An interval of 0 turns it off."""
        self._stop_keepalive()
        self._ping_interval, self._ping_timeout = interval, timeout
        if interval > 0 and self.state == self.STATE_OPEN:
            self._ping_call = self.clock.callLater(interval, self._ping)

    def _ping(self) -> None:
        self._ping_call = None
        if self.state != self.STATE_OPEN:
            return
        self.sendPing(os.urandom(4))
        self._pong_deadline = self.clock.callLater(self._ping_timeout, self._no_pong)

    def onPong(self, payload: bytes) -> None:
        if self._pong_deadline is not None:
            self._pong_deadline.cancel()
            self._pong_deadline = None
            self._ping_call = self.clock.callLater(self._ping_interval, self._ping)

    def _no_pong(self) -> None:
        self._pong_deadline = None
        log.info("dropping a WebSocket peer that did not answer a ping within {timeout} s",
                 timeout=self._ping_timeout)
        self.dropConnection(abort=True)

    def _stop_keepalive(self) -> None:
        for call in (self._ping_call, self._pong_deadline):
            if call is not None and call.active():
                call.cancel()
        self._ping_call = self._pong_deadline = None


def _header(length: int) -> bytes:
    """The header of one unmasked server text message of ``length`` bytes
    (RFC 6455: FIN, opcode 1, the payload length, no mask). Built here
    rather than with Autobahn's PreparedMessage: it runs once per frame per
    batch on the fan-out path, and it has three fixed shapes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


class TextMessages:
    """Outbound's encoding for raw WebSocket: one text message per frame."""

    separator = b""

    @staticmethod
    def encode(data: bytes) -> bytes:
        return _header(len(data)) + data

    @staticmethod
    def around(head: bytes, tail: bytes, line_length: int) -> tuple[bytes, bytes]:
        return _header(len(head) + line_length + len(tail)) + head, tail

    @staticmethod
    def inner(line: bytes) -> bytes:
        return line


TEXT_MESSAGES = TextMessages()


@implementer(IFrameTransport)
class StompWebSocketProtocol(WebSocketCarrier):
    """Raw STOMP over one WebSocket: one frame out is one message; inbound
    payload is handed to the session as it arrives, however it is split."""

    kind = "websocket"
    factory: StompWebSocketFactory

    receiver: IFrameReceiver | None = None
    address: str | None = None
    _backlog = 0
    _waiting: list[Deferred[None]] | None = None
    _held: list[bytes] | None = None

    def onConnect(self, request: ConnectionRequest) -> str | None:
        factory = self.factory
        origin = request.headers.get("origin")
        if not origin_allowed(factory.allowed_origins, origin):
            factory.count_refusal("bad-origin")
            raise ConnectionDeny(403, "origin not allowed")
        forwarded = request.headers.get("x-forwarded-for")
        peer = getattr(self.transport.getPeer(), "host", "local")
        address = client_address(peer, forwarded, factory.trusted_proxies)
        if factory.admit is not None and not factory.admit(address):
            factory.count_refusal("banned")
            raise ConnectionDeny(403, "banned")
        if not factory.limiter.acquire(address):
            factory.count_refusal("too-many-connections")
            raise ConnectionDeny(429, "too many connections from this address")
        self.address = address
        for protocol in STOMP_SUBPROTOCOLS:
            if protocol in request.protocols:
                return protocol
        return None

    def opened(self) -> None:
        assert self.address is not None
        if self.factory.tracker is not None:
            self.factory.tracker.track(self)
        try:
            self.receiver = self.factory.session_factory(self, ClientInfo(self.address, self.kind, slot_held=True))
        except Exception:
            log.failure("Could not start a STOMP session")
            self.dropConnection(abort=True)

    # Autobahn's streaming API: payload as it arrives, no message buffer.
    def onMessageBegin(self, isBinary: bool) -> None:
        pass

    def onMessageFrameBegin(self, length: int) -> None:
        pass

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.receiver is None:
            return
        if self._held is not None:
            # Read before the pause took hold (one socket read at most).
            self._held.append(payload)
            return
        self.receiver.data_received(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        pass

    def closed(self) -> None:
        self._writable()
        self._held = None
        if self.factory.tracker is not None:
            self.factory.tracker.untrack(self)
        self._lose()
        if self.address is not None:
            self.factory.limiter.release(self.address)
            self.address = None

    def _lose(self) -> None:
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            try:
                receiver.connection_lost()
            except Exception:
                log.failure("STOMP session failed on connection_lost")

    # -- IFrameTransport ------------------------------------------------------

    def send(self, out: Outbound) -> None:
        if self.state != self.STATE_OPEN:
            return
        wire = out.encoded(TEXT_MESSAGES)
        if self.write_paused:
            self._backlog += len(wire)
            if self._backlog > self.factory.max_send_buffer:
                self.factory.count_refusal("slow-consumer")
                log.info("closing a WebSocket whose client stopped reading (backlog {backlog} bytes)",
                         backlog=self._backlog)
                self.dropConnection(abort=True)
                return
        self.transport.write(wire)

    def close(self) -> None:
        if self.state == self.STATE_OPEN:
            code, reason = self.factory.close_reason
            self.sendClose(code, reason)

    def when_writable(self) -> Deferred[None]:
        if not self.write_paused or self.state != self.STATE_OPEN:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(d)
        return d

    def pause_reading(self) -> None:
        if self._held is None:
            self._held = []
        super().pause_reading()

    def resume_reading(self) -> None:
        held, self._held = self._held or [], None
        for i, payload in enumerate(held):
            if self.receiver is None:
                break
            self.receiver.data_received(payload)
            if self._held is not None:  # paused again: keep the rest, in order
                self._held[:0] = held[i + 1:]
                return
        super().resume_reading()

    def shutdown(self) -> None:
        """Server shutdown: close, and tell the STOMP session now."""
        self.close()
        self._lose()

    def drained(self) -> None:
        self._backlog = 0
        self._writable()

    def _writable(self) -> None:
        waiting, self._waiting = self._waiting, None
        for d in waiting or ():
            d.callback(None)


class StompWebSocketFactory(WebSocketServerFactory):  # type: ignore[misc]
    protocol = StompWebSocketProtocol  # type: ignore[assignment]

    def __init__(
        self,
        session_factory: SessionFactory,
        clock: Clock,
        *,
        limiter: AddressLimits,
        max_send_buffer: int = 512 * 1024,
        allowed_origins: AbstractSet[str] | None = None,
        trusted_proxies: AbstractSet[str] = frozenset(),
        on_refusal: Callable[[str], Any] | None = None,
        close_reason: tuple[int, str | None] = (1000, None),
        tracker: Tracker | None = None,
        admit: Callable[[str], bool] | None = None,
        server: str = "anonchat",
    ) -> None:
        super().__init__(server=server)
        #: False for an address that may not connect at all (banned).
        self.admit = admit
        self.session_factory = session_factory
        self.clock = clock
        self.max_send_buffer = max_send_buffer
        self.allowed_origins = allowed_origins
        self.trusted_proxies = trusted_proxies
        self.limiter = limiter
        self.close_reason = close_reason
        self.tracker = tracker
        self._on_refusal = on_refusal
        # No WebSocket size limits: payload is streamed to the STOMP parser,
        # whose frame limit bounds what is held.
        configure(self, 0)

    def count_refusal(self, reason: str) -> None:
        if self._on_refusal is not None:
            self._on_refusal(reason)
