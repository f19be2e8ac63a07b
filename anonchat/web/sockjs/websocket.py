"""WebSocket transports via Autobahn: SockJS-framed ``/{server}/{session}/websocket`` and raw ``/websocket``.

Autobahn builds its protocol inside ``WebSocketResource.render``; the
request's client address is handed to the factory just before that call
(synchronously, so it cannot mix requests up). Each protocol takes over the
TCP transport's producer slot to learn when the client stops reading, so
queued bytes are counted and bounded rather than piling up in Twisted.
"""

from __future__ import annotations

from collections import deque
from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Request
from zope.interface import implementer

from anonchat.stomp.outbound import Outbound
from anonchat.stomp.transport import ClientInfo, IFrameTransport
from anonchat.web.sockjs import framing, responses
from anonchat.web.sockjs.endpoint import Endpoint
from anonchat.web.sockjs.hints import Receiver
from anonchat.web.sockjs.session import GO_AWAY, SockJSSession

#: ``Outbound.encoded`` key of the ready-framed raw WebSocket message.
PREPARED_KEY = object()

#: Seconds a client has to finish the opening / closing handshake.
OPEN_HANDSHAKE_TIMEOUT = 10.0
CLOSE_HANDSHAKE_TIMEOUT = 2.0

#: WebSocket close sent to a client whose message is not SockJS JSON
#: (Autobahn only lets the application send 1000 or 3000-4999).
BROKEN_FRAMING = (3000, "Broken framing.")

SOCKJS_WEBSOCKET = "sockjs-websocket"
RAW_WEBSOCKET = "websocket"


@implementer(IPushProducer)
class _WriteGate:
    """Stands in the transport's producer slot and remembers whether writing is paused."""

    def __init__(self, on_resume: Any) -> None:
        self.paused = False
        self._on_resume = on_resume

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._on_resume()

    def stopProducing(self) -> None:
        pass


def _install_gate(protocol: WebSocketServerProtocol, gate: _WriteGate) -> None:
    transport: Any = protocol.transport
    try:
        transport.unregisterProducer()  # Twisted Web's channel, which no longer owns the socket
        transport.registerProducer(gate, True)
    except Exception:
        protocol.log.failure("Could not watch the WebSocket send buffer")


class _Factory(WebSocketServerFactory):  # type: ignore[misc]
    def __init__(self, endpoint: Endpoint, protocol: type[WebSocketServerProtocol]) -> None:
        super().__init__(reactor=endpoint.clock)
        self.protocol = protocol
        self.endpoint = endpoint
        limit = endpoint.options.max_message_size
        self.setProtocolOptions(
            maxMessagePayloadSize=limit,
            maxFramePayloadSize=limit,
            openHandshakeTimeout=OPEN_HANDSHAKE_TIMEOUT,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
            perMessageCompressionAccept=lambda offers: None,  # compression is per connection: never for fan-out
        )
        self._next_client: ClientInfo | None = None

    def hand_off(self, client: ClientInfo) -> None:
        self._next_client = client

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = super().buildProtocol(addr)
        protocol.client = self._next_client or ClientInfo(str(getattr(addr, "host", "")), protocol.kind)
        self._next_client = None
        return protocol


class SockJSWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """SockJS framing over one WebSocket: a channel that is attached for its whole life."""

    log = Logger()
    kind = SOCKJS_WEBSOCKET
    client: ClientInfo
    factory: _Factory

    session: SockJSSession | None = None
    _gate: _WriteGate | None = None
    _ending = False

    def onOpen(self) -> None:
        self._gate = _WriteGate(self._resumed)
        _install_gate(self, self._gate)
        self.session = self.factory.endpoint.registry.create_unnamed(self.kind, self.client)
        self.session.attach(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None or self._ending:
            return
        try:
            messages = framing.decode_websocket(payload)
        except framing.PayloadError:
            self.log.info("Closing a SockJS WebSocket that sent broken JSON")
            self._ending = True
            self.sendClose(code=BROKEN_FRAMING[0], reason=BROKEN_FRAMING[1])
            return
        self.session.messages_received(messages)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.channel_lost(self)

    def _resumed(self) -> None:
        if self.session is not None:
            self.session.channel_writable(self)

    # -- Channel

    @property
    def writable(self) -> bool:
        return not self._ending and self._gate is not None and not self._gate.paused

    def write_frame(self, frame: bytes) -> None:
        if not self._ending:
            self.sendMessage(frame, isBinary=False)

    def end(self) -> None:
        if not self._ending:
            self._ending = True
            self.sendClose(code=1000)

    def abort(self) -> None:
        self._ending = True
        self.dropConnection(abort=True)


@implementer(IFrameTransport)
class RawWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """The raw ``/websocket`` endpoint: one message in or out is one STOMP message, unframed."""

    log = Logger()
    kind = RAW_WEBSOCKET
    client: ClientInfo
    factory: _Factory

    _receiver: Receiver | None = None
    _gate: _WriteGate | None = None
    _closing = False
    _lost = False

    def onOpen(self) -> None:
        self._queue: deque[tuple[PreparedMessage, int]] = deque()
        self._queued_bytes = 0
        self._gate = _WriteGate(self._drain)
        _install_gate(self, self._gate)
        registry = self.factory.endpoint.registry
        registry.track(self)
        try:
            self._receiver = registry.session_factory(self, self.client)
        except Exception:
            self.log.failure("Could not start a STOMP session")
            self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._receiver is not None and not self._lost:
            self._receiver.data_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.endpoint.registry.untrack(self)
        self._lose()

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            try:
                receiver.connection_lost()
            except Exception:
                self.log.failure("STOMP session failed on connection_lost")

    # -- IFrameTransport

    def send(self, out: Outbound) -> None:
        if self._closing or self._gate is None:
            return
        for part in out.frames():
            self._send_one(part)

    def _send_one(self, out: Outbound) -> None:
        if self._closing or self._gate is None:
            return
        message = out.encoded(PREPARED_KEY, self.factory.prepareMessage)
        if self._gate.paused or self._queue:
            self._queue.append((message, len(out.data)))
            self._queued_bytes += len(out.data)
            if self._queued_bytes > self.factory.endpoint.options.max_send_buffer:
                self.log.info("Dropping a WebSocket over its send buffer ({queued} bytes)", queued=self._queued_bytes)
                self.factory.endpoint.options.on_close("slow-consumer")
                self._queue.clear()
                self._closing = True
                self.dropConnection(abort=True)
            return
        self.sendPreparedMessage(message)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._drain()
            self.sendClose(code=GO_AWAY[0], reason=GO_AWAY[1])

    def when_writable(self) -> Deferred[None]:
        # The standalone raw endpoint queues in front of the socket itself.
        return succeed(None)

    def shutdown(self) -> None:
        self.close()
        self._lose()

    def _drain(self) -> None:
        while self._queue and self._gate is not None and not self._gate.paused:
            message, size = self._queue.popleft()
            self._queued_bytes -= size
            self.sendPreparedMessage(message)


class WebSocketEndpoint:
    """Checks a WebSocket request as SockJS wants, then lets Autobahn take the connection over."""

    def __init__(self, endpoint: Endpoint, protocol: type[SockJSWebSocketProtocol | RawWebSocketProtocol],
                 resource: IResource | None = None) -> None:
        """``resource``, when given, serves the upgrade instead (the
        application's own raw STOMP WebSocket, for ``/websocket``)."""
        self._endpoint = endpoint
        self._kind: str = protocol.kind
        self._factory = _Factory(endpoint, protocol)
        self._own = resource
        self._resource = WebSocketResource(self._factory)

    def render(self, request: Request) -> object:
        if request.method != b"GET":
            return responses.method_not_allowed(request, b"GET")
        if (request.getHeader(b"upgrade") or b"").strip().lower() != b"websocket":
            return responses.error(request, 400, 'Can "Upgrade" only to "WebSocket".')
        tokens = [t.strip().lower() for t in (request.getHeader(b"connection") or b"").split(b",")]
        if b"upgrade" not in tokens:
            return responses.error(request, 400, '"Connection" must be "Upgrade".')
        if self._own is not None:
            return cast(Any, self._own).render(request)
        self._factory.hand_off(ClientInfo(self._endpoint.client_address(request), self._kind))
        return self._resource.render(request)
