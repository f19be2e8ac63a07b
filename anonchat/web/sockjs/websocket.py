"""The SockJS-framed WebSocket transport ``/{server}/{session}/websocket``,
and the handshake checks SockJS wants before any WebSocket upgrade.

The raw ``/websocket`` URL is served by the one raw STOMP carrier
(``anonchat.web.websocket``). Autobahn builds its protocol inside
``WebSocketResource.render``; the request's client address is handed to
the factory just before that call (synchronously, so it cannot mix
requests up).
"""

from __future__ import annotations

from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Request

from anonchat.stomp.transport import ClientInfo
from anonchat.web.sockjs import framing, responses
from anonchat.web.sockjs.endpoint import Endpoint
from anonchat.web.sockjs.session import SockJSSession
from anonchat.web.websocket import Clock, WebSocketCarrier, configure

log = Logger()

#: WebSocket close sent to a client whose message is not SockJS JSON
#: (Autobahn only lets the application send 1000 or 3000-4999).
BROKEN_FRAMING = (3000, "Broken framing.")

SOCKJS_WEBSOCKET = "sockjs-websocket"


class _Factory(WebSocketServerFactory):  # type: ignore[misc]
    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(reactor=endpoint.clock)
        self.protocol = SockJSWebSocketProtocol
        self.endpoint = endpoint
        self.clock: Clock = endpoint.clock
        configure(self, endpoint.options.max_message_size)
        self._next_client: ClientInfo | None = None

    def hand_off(self, client: ClientInfo) -> None:
        self._next_client = client

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = super().buildProtocol(addr)
        protocol.client = self._next_client or ClientInfo(str(getattr(addr, "host", "")), SOCKJS_WEBSOCKET)
        self._next_client = None
        return protocol


class SockJSWebSocketProtocol(WebSocketCarrier):
    """SockJS framing over one WebSocket: a channel that is attached for its whole life."""

    kind = SOCKJS_WEBSOCKET
    client: ClientInfo
    factory: _Factory

    session: SockJSSession | None = None
    _ending = False

    def opened(self) -> None:
        self.session = self.factory.endpoint.registry.create_unnamed(self.kind, self.client)
        self.session.attach(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None or self._ending:
            return
        try:
            messages = framing.decode_websocket(payload)
        except framing.PayloadError:
            log.info("closing a SockJS WebSocket that sent broken JSON")
            self._ending = True
            self.sendClose(code=BROKEN_FRAMING[0], reason=BROKEN_FRAMING[1])
            return
        self.session.messages_received(messages)

    def closed(self) -> None:
        if self.session is not None:
            self.session.channel_lost(self)

    def drained(self) -> None:
        if self.session is not None:
            self.session.channel_writable(self)

    # -- Channel (pause_reading, resume_reading, keepalive: WebSocketCarrier's)

    @property
    def writable(self) -> bool:
        return not self._ending and self.state == self.STATE_OPEN and not self.write_paused

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


class WebSocketEndpoint:
    """Checks a WebSocket request as SockJS wants, then lets Autobahn take the
    connection over: ``resource`` when given (the raw STOMP carrier), else
    the SockJS-framed transport."""

    def __init__(self, endpoint: Endpoint, resource: IResource | None = None) -> None:
        self._endpoint = endpoint
        self._own = resource
        self._factory = _Factory(endpoint)
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
        self._factory.hand_off(ClientInfo(self._endpoint.client_address(request), SOCKJS_WEBSOCKET))
        return self._resource.render(request)
