"""The URL tree: ``/ws-chat`` (raw WebSocket and SockJS), ``/api/*``,
``/healthz``, ``/metrics`` and the demo page at ``/``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import NoResource, Resource
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site
from twisted.web.static import File

from anonchat.metrics import MetricsResource
from anonchat.web.clientaddress import client_address
from anonchat.web.rest import Api, CorsPolicy, JsonResource
from anonchat.web.sockjs import SockJSOptions, SockJSResource
from anonchat.web.websocket import StompWebSocketFactory

if TYPE_CHECKING:
    from anonchat.service import AnonchatService

log = Logger()

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


class StaticFiles(File):
    """The web client built from frontend/: index.html (and sockjs.min.js)
    revalidated on every load, so an upgraded server never runs an old
    page; Vite's content-hashed ``assets/`` cached for good."""

    def render_GET(self, request: Request) -> bytes | int:
        hashed = (request.prepath or [])[:1] == [b"assets"] and not self.isdir()
        request.setHeader("Cache-Control", "public, max-age=31536000, immutable" if hashed else "no-cache")
        return super().render_GET(request)  # type: ignore[no-any-return]

    def directoryListing(self) -> Resource:
        return NoResource("the web client is not built: pip install . (or npm run build in frontend/)")


class QuietHTTPChannel(HTTPChannel):
    """Twisted's channel, but its idle-timeout log line names no client address."""

    def timeoutConnection(self) -> None:
        log.info("closing an idle or incomplete HTTP connection")
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


class QuietSite(Site):
    """No access log (it would record client addresses), HTTP/1.1 only (we
    offer no HTTP/2), and an idle timeout so a connection that never
    finishes its request is not held for long."""

    protocol = QuietHTTPChannel  # type: ignore[assignment]

    def log(self, request: object) -> None:
        pass


def build_site(svc: AnonchatService) -> tuple[Site, SockJSResource]:
    """The site, and the SockJS endpoint (the service closes its sessions at stop)."""
    settings = svc.settings
    cors = CorsPolicy(settings.allowed_origins)
    ws_factory = StompWebSocketFactory(
        svc.new_session,
        max_send_buffer=settings.max_send_buffer,
        allowed_origins=settings.allowed_origins,
        trusted_proxies=settings.trusted_proxies or frozenset(),
        limiter=svc.limiter,
        on_refusal=svc.count_close,
    )
    api = Api(svc.buffer, svc.archive, svc.presence, ready=lambda: svc.ready, uses_redis=bool(settings.redis))

    trusted = settings.trusted_proxies or frozenset()

    def address(request: Request) -> str:
        peer = getattr(request.getClientAddress(), "host", "local")
        return client_address(peer, request.getHeader("x-forwarded-for"), trusted)

    sockjs = SockJSResource(
        svc.new_session,
        svc.reactor,
        options=SockJSOptions(
            heartbeat_delay=settings.sockjs_heartbeat,
            disconnect_delay=settings.sockjs_disconnect_delay,
            max_send_buffer=settings.max_send_buffer,
            max_message_size=4 * settings.max_frame,
            allowed_origins=settings.allowed_origins,
            on_close=svc.count_close,
        ),
        raw_websocket=WebSocketResource(ws_factory),
        client_address=address,
    )
    root = StaticFiles(STATIC_DIR)
    root.putChild(b"ws-chat", sockjs)
    api_root = Resource()
    messages = JsonResource(api.history, cors)
    messages.isLeaf = False
    messages.putChild(b"recent", JsonResource(api.recent, cors))
    api_root.putChild(b"messages", messages)
    api_root.putChild(b"users", JsonResource(api.users, cors))
    root.putChild(b"api", api_root)
    root.putChild(b"healthz", JsonResource(api.health, cors))
    root.putChild(b"metrics", MetricsResource(svc.metrics))
    site = QuietSite(root, timeout=settings.connect_timeout)
    site.displayTracebacks = False
    site.noisy = False
    return site, sockjs
