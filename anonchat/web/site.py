"""The URL tree: ``/ws-chat`` (raw WebSocket and SockJS), ``/api/*``,
``/healthz``, ``/metrics`` and the demo page at ``/``."""

from __future__ import annotations

import os
from typing import Any, Callable

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import NoResource, Resource
from twisted.logger import Logger
from twisted.web.server import Request, Site
from twisted.web.static import File

from anonchat.chat.access import AccessDenied, AccessPolicy
from anonchat.chat.moderator import Moderator
from anonchat.chat.ports import IMessageArchive, IMessageBuffer, IPresence
from anonchat.chat.room import ChatRoom
from anonchat.metrics import Metrics, MetricsResource
from anonchat.settings import Settings
from anonchat.web.addresslimits import AddressLimits
from anonchat.web.admin import AdminApi
from anonchat.web.clientaddress import request_client_address
from anonchat.web.requestbody import DEFAULT_MAX_REQUEST_BODY, BodyLimitedChannel, BodyLimitedRequest
from anonchat.web.health import HealthCheck
from anonchat.web.origins import CorsPolicy
from anonchat.web.rest import Api, JsonResource, RateLimitedApi
from anonchat.web.sockjs import SockJSOptions, SockJSResource
from anonchat.web.websocket import SessionFactory, StompWebSocketFactory

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


class QuietHTTPChannel(BodyLimitedChannel):
    """Bounded request bodies, and an idle-timeout log line that names no client address."""

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
    requestFactory = BodyLimitedRequest
    #: Bytes of one request body (``--max-request-body``), read by the channel.
    max_request_body = DEFAULT_MAX_REQUEST_BODY

    def log(self, request: object) -> None:
        pass


def build_site(
    settings: Settings,
    clock: Any,
    *,
    session_factory: SessionFactory,
    buffer: IMessageBuffer,
    archive: IMessageArchive,
    presence: IPresence,
    ready: Callable[[], bool],
    metrics: Metrics,
    limits: AddressLimits,
    on_close: Callable[[str], None],
    room: ChatRoom | None = None,
    moderator: Moderator | None = None,
    access: AccessPolicy | None = None,
    admin_token: str | None = None,
) -> tuple[Site, SockJSResource]:
    """The site, and the SockJS endpoint (the service closes its sessions at stop).

    ``session_factory`` makes the STOMP session of each connection; the
    stores serve REST and ``/healthz``; ``ready`` is False while starting
    or draining; ``limits`` holds the per-address limits; ``on_close`` is
    told why the server cut a connection (for metrics). With a
    ``moderator``, banned clients are refused at every door; with
    ``access``, REST needs a token; with ``admin_token`` (and the ``room``
    the moderation API acts on), ``/api/admin/`` exists.
    """
    cors = CorsPolicy(settings.allowed_origins)
    trusted = settings.trusted_proxies or frozenset()

    def address(request: Request) -> str:
        return request_client_address(request, trusted)

    def banned(identity: str) -> bool:
        return moderator is not None and moderator.ban_of(moderator.client_of(identity)) is not None

    def admission(request: Request) -> tuple[int, str] | None:
        identity = address(request)
        if access is not None:
            scheme, _, token = (request.getHeader("authorization") or "").partition(" ")
            try:
                identity = access.subject(token.strip() if scheme.lower() == "bearer" else None)
            except AccessDenied:
                return 401, "a valid access token is required"
        return (403, "banned") if banned(identity) else None

    def admit(client_address: str) -> bool:
        return not banned(client_address)

    ws_factory = StompWebSocketFactory(
        session_factory,
        clock,
        limiter=limits,
        max_send_buffer=settings.max_send_buffer,
        allowed_origins=settings.allowed_origins,
        trusted_proxies=trusted,
        on_refusal=on_close,
        admit=admit,
    )
    sockjs = SockJSResource(
        session_factory,
        clock,
        options=SockJSOptions(
            heartbeat_delay=settings.sockjs_heartbeat,
            disconnect_delay=settings.sockjs_disconnect_delay,
            max_send_buffer=settings.max_send_buffer,
            max_message_size=4 * settings.max_frame,
            allowed_origins=settings.allowed_origins,
            on_close=on_close,
        ),
        raw_websocket=WebSocketResource(ws_factory),
        client_address=address,
        admit=admit,
    )
    api = Api(buffer, archive, presence, hidden=room.hidden if room is not None else None,
              gate=room.history_gate if room is not None else None,
              rate=room.history_rate if room is not None else None)
    health = HealthCheck(clock, buffer.ping, archive.ping, ready=ready, uses_redis=bool(settings.redis))

    async def healthz(request: Request) -> tuple[int, Any]:
        return await health.report()

    root = StaticFiles(STATIC_DIR)
    root.putChild(b"ws-chat", sockjs)
    async def client_settings(request: Request) -> tuple[int, Any]:
        return 200, {"max_content": settings.max_content,
                     "slow_mode": moderator.slow_mode if moderator is not None else 0,
                     "access": "token" if access is not None else "open"}

    api_root = RateLimitedApi(limits, address, cors, admission, open=frozenset({b"settings", b"admin"}))
    api_root.putChild(b"settings", JsonResource(client_settings, cors))
    if admin_token is not None and room is not None and moderator is not None:
        api_root.putChild(b"admin", AdminApi(admin_token, room, moderator, presence, clock, address))
    messages = JsonResource(api.history, cors)
    messages.isLeaf = False
    messages.putChild(b"recent", JsonResource(api.recent, cors))
    api_root.putChild(b"messages", messages)
    api_root.putChild(b"users", JsonResource(api.users, cors))
    root.putChild(b"api", api_root)
    root.putChild(b"healthz", JsonResource(healthz, cors))
    root.putChild(b"metrics", MetricsResource(metrics))
    site = QuietSite(root, timeout=settings.connect_timeout)
    site.displayTracebacks = False
    site.noisy = False
    site.max_request_body = settings.max_request_body
    return site, sockjs
