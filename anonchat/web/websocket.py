"""Raw STOMP over WebSocket: Autobahn on one side, a StompSession on the other.

Broadcast frames are framed once (an Autobahn ``PreparedMessage`` cached
on the shared ``Outbound``) and written straight to the TCP transport.
Inbound payload is streamed to the STOMP parser as Autobahn reads it,
never gathered into whole messages: the parser's frame limit bounds
memory and answers an oversized frame with ``ERROR`` as the contract says
(Autobahn's own message limit would drop the connection silently).
The backlog bound uses Twisted's public producer API: while the transport
has paused us, what we write is counted, and past the limit we hang up.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.stomp.outbound import Outbound
from anonchat.stomp.transport import ClientInfo, IFrameReceiver, IFrameTransport
from anonchat.web.clientaddress import client_address
from anonchat.web.addresslimits import AddressLimits
from anonchat.web.origins import origin_allowed

log = Logger()

#: Subprotocols in our order of preference.
STOMP_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")

SessionFactory = Callable[[IFrameTransport, ClientInfo], IFrameReceiver]


def _prepare(data: bytes) -> bytes:
    """The wire bytes of one unmasked server text message."""
    return PreparedMessage(data, False, False, True).payloadHybi  # type: ignore[no-any-return]


_WIRE = object()  # our key in Outbound's encoding cache


@implementer(IFrameTransport, IPushProducer)
class StompWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    kind = "websocket"
    factory: StompWebSocketFactory

    receiver: IFrameReceiver | None = None

    #: The connected TCP or TLS transport (with producer support).
    transport: Any
    address: str | None = None
    _paused = False
    _backlog = 0
    _waiting: list[Deferred[None]] | None = None

    def onConnect(self, request: ConnectionRequest) -> str | None:
        factory = self.factory
        origin = request.headers.get("origin")
        if not origin_allowed(factory.allowed_origins, origin):
            factory.count_refusal("bad-origin")
            raise ConnectionDeny(403, "origin not allowed")
        forwarded = request.headers.get("x-forwarded-for")
        peer = getattr(self.transport.getPeer(), "host", "local")
        address = client_address(peer, forwarded, factory.trusted_proxies)
        if not factory.limiter.acquire(address):
            factory.count_refusal("too-many-connections")
            raise ConnectionDeny(429, "too many connections from this address")
        self.address = address
        for protocol in STOMP_SUBPROTOCOLS:
            if protocol in request.protocols:
                return protocol
        return None

    def onOpen(self) -> None:
        try:
            self.transport.registerProducer(self, True)
        except RuntimeError:
            # Twisted Web's channel registered itself before the upgrade.
            self.transport.unregisterProducer()
            self.transport.registerProducer(self, True)
        assert self.address is not None
        self.receiver = self.factory.session_factory(self, ClientInfo(self.address, self.kind, slot_held=True))

    # Autobahn's streaming API: payload as it arrives, no message buffer.
    def onMessageBegin(self, isBinary: bool) -> None:
        pass

    def onMessageFrameBegin(self, length: int) -> None:
        pass

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.receiver is not None:
            self.receiver.data_received(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        pass

    def onClose(self, wasClean: bool, code: int, reason: str | None) -> None:
        self._writable()
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.connection_lost()
        if self.address is not None:
            self.factory.limiter.release(self.address)
            self.address = None

    # -- IFrameTransport ------------------------------------------------------

    def send(self, out: Outbound) -> None:
        if self.state != self.STATE_OPEN:
            return
        wire = out.encoded_all(_WIRE, _prepare, b"".join)
        if self._paused:
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
            self.sendClose(1000)

    def when_writable(self) -> Deferred[None]:
        if not self._paused or self.state != self.STATE_OPEN:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(d)
        return d

    def _writable(self) -> None:
        waiting, self._waiting = self._waiting, None
        for d in waiting or ():
            d.callback(None)

    # -- IPushProducer: the transport tells us when its buffer is full --------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._backlog = 0
        self._writable()

    def stopProducing(self) -> None:
        self._paused = True


class StompWebSocketFactory(WebSocketServerFactory):  # type: ignore[misc]
    protocol = StompWebSocketProtocol  # type: ignore[assignment]

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        max_send_buffer: int = 512 * 1024,
        allowed_origins: AbstractSet[str] | None = None,
        trusted_proxies: AbstractSet[str] = frozenset(),
        limiter: AddressLimits,
        on_refusal: Callable[[str], Any] | None = None,
        server: str = "anonchat",
    ) -> None:
        super().__init__(server=server)
        self.session_factory = session_factory
        self.max_send_buffer = max_send_buffer
        self.allowed_origins = allowed_origins
        self.trusted_proxies = trusted_proxies
        self.limiter = limiter
        self._on_refusal = on_refusal
        # No WebSocket size limits: payload is streamed to the STOMP parser,
        # whose frame limit bounds what is held.
        self.setProtocolOptions(
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
            autoPingInterval=0,
            failByDrop=True,
        )

    def count_refusal(self, reason: str) -> None:
        if self._on_refusal is not None:
            self._on_refusal(reason)
