"""The root of a SockJS endpoint: path dispatch, method and origin checks.

It is a leaf resource that reads ``request.postpath`` itself, so the same
base path answers the greeting, every SockJS URL and (with an ``Upgrade``
header) the caller's raw WebSocket resource.
"""

from __future__ import annotations

from typing import Any, Callable, cast

import attrs
from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web.server import Request
from twisted.web.resource import IResource, Resource

from anonchat.web.addresslimits import AddressLimits
from anonchat.web.sockjs import info, polling, responses, streaming
from anonchat.web.sockjs.endpoint import Endpoint, peer_host
from anonchat.web.sockjs.hints import Clock, ReceiverFactory
from anonchat.web.sockjs.options import SockJSOptions
from anonchat.web.sockjs.registry import SessionRegistry
from anonchat.web.sockjs.session import GO_AWAY
from anonchat.web.sockjs.websocket import WebSocketEndpoint
from anonchat.web.websocket import StompWebSocketFactory

Handler = Callable[[Endpoint, Request, str], object]


@attrs.frozen
class _Route:
    method: bytes
    handler: Handler
    preflight: bool


_XHR = b"OPTIONS, POST"

#: The session transports, by URL name (``websocket`` is handled apart).
_TRANSPORTS: dict[bytes, _Route] = {
    b"xhr": _Route(b"POST", polling.xhr, True),
    b"xhr_send": _Route(b"POST", polling.xhr_send, True),
    b"jsonp": _Route(b"GET", polling.jsonp, False),
    b"jsonp_send": _Route(b"POST", polling.jsonp_send, False),
    b"xhr_streaming": _Route(b"POST", streaming.xhr_streaming, True),
    b"eventsource": _Route(b"GET", streaming.eventsource, False),
    b"htmlfile": _Route(b"GET", streaming.htmlfile, False),
}


def _valid_id(segment: bytes) -> bool:
    return bool(segment) and b"." not in segment


def _is_upgrade(request: Request) -> bool:
    return (request.getHeader(b"upgrade") or b"").strip().lower() == b"websocket"


class SockJSResource(Resource):
    """A SockJS 0.3.3 endpoint; each session's STOMP side comes from ``session_factory``."""

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        session_factory: ReceiverFactory,
        clock: Clock,
        *,
        options: SockJSOptions = SockJSOptions(),
        raw_websocket: IResource | None = None,
        client_address: Callable[[Request], str] | None = None,
        admit: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.options = options
        self._client_address = client_address or peer_host
        #: False for an address that may not connect at all (banned).
        self._admit = admit
        self.registry = SessionRegistry(session_factory, clock, options)
        self._endpoint = Endpoint(options, clock, self.registry, client_address or peer_host)
        self._clock = clock
        self._raw_websocket = raw_websocket
        self._iframe = info.IframePage(options.sockjs_url)
        self._sockjs_websocket = WebSocketEndpoint(self._endpoint)
        # /websocket is raw WebSocket: the application's own endpoint when
        # given (the same one that answers upgrades at the base path), else
        # the same carrier on its own, closing as SockJS does.
        self._plain_websocket = WebSocketEndpoint(self._endpoint, raw_websocket or self._own_raw_websocket())

    def _own_raw_websocket(self) -> IResource:
        factory = StompWebSocketFactory(
            self.registry.session_factory, self._clock,  # type: ignore[arg-type]
            limiter=AddressLimits(self._clock),  # type: ignore[arg-type]
            max_send_buffer=self.options.max_send_buffer,
            allowed_origins=self.options.allowed_origins,
            on_refusal=self.options.on_close,
            close_reason=GO_AWAY,
            tracker=self.registry,
        )
        return WebSocketResource(factory)  # type: ignore[no-any-return]

    def close_all(self) -> None:
        """Close every session (shutdown); each STOMP session hears ``connection_lost`` now."""
        self.registry.close_all()

    def render(self, request: Request) -> object:
        if not responses.origin_allowed(request, self.options):
            self.log.info("Refused a SockJS request from a disallowed origin")
            return responses.forbidden(request)
        if self._admit is not None and not self._admit(self._client_address(request)):
            self.options.on_close("banned")
            return responses.forbidden(request)
        path = request.postpath or []
        if path in ([], [b""]):
            return self._base(request)
        if len(path) == 1:
            return self._single(request, path[0])
        if len(path) == 3:
            return self._session(request, path[0], path[1], path[2])
        return responses.not_found(request)

    def _base(self, request: Request) -> object:
        if self._raw_websocket is not None and _is_upgrade(request):
            return cast(Any, self._raw_websocket).render(request)
        if request.method not in (b"GET", b"HEAD"):
            return responses.method_not_allowed(request, b"GET")
        return info.greeting(request)

    def _single(self, request: Request, name: bytes) -> object:
        if name == b"info":
            if request.method == b"OPTIONS":
                return responses.preflight(request, self.options, self._clock, b"OPTIONS, GET")
            if request.method not in (b"GET", b"HEAD"):
                return responses.method_not_allowed(request, b"OPTIONS, GET")
            return info.info(request, self.options)
        if info.IFRAME_NAME.match(name):
            if request.method not in (b"GET", b"HEAD"):
                return responses.method_not_allowed(request, b"GET")
            return self._iframe.render(request, self._clock)
        if name == b"websocket" and self.options.websocket_enabled:
            return self._plain_websocket.render(request)
        return responses.not_found(request)

    def _session(self, request: Request, server: bytes, session: bytes, transport: bytes) -> object:
        if not (_valid_id(server) and _valid_id(session)):
            return responses.not_found(request)
        if transport == b"websocket":
            if not self.options.websocket_enabled:
                return responses.not_found(request)
            return self._sockjs_websocket.render(request)
        route = _TRANSPORTS.get(transport)
        if route is None:
            return responses.not_found(request)
        if request.method == b"OPTIONS" and route.preflight:
            return responses.preflight(request, self.options, self._clock, _XHR)
        if request.method != route.method:
            allowed = _XHR if route.preflight else route.method
            return responses.method_not_allowed(request, allowed)
        session_id = session.decode("utf-8", "surrogateescape")
        return route.handler(self._endpoint, request, session_id)
