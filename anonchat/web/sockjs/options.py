"""The knobs of one SockJS endpoint; defaults follow sockjs-node and Spring.

``sockjs_url`` only matters to the iframe-based transports (a browser loads
it inside ``iframe.html``); the default is sockjs-client's own dist file,
which the frontend build copies into the package's static files, so no
browser is sent to a CDN.
"""

from __future__ import annotations

from typing import Callable

import attrs

from anonchat.web.origins import CorsPolicy

#: The packaged sockjs-client (copied in by the frontend build), for the
#: iframe transports' page: served by this server, no CDN.
DEFAULT_SOCKJS_URL = "/sockjs.min.js"


@attrs.frozen
class SockJSOptions:
    """Timing and limits of one SockJS endpoint.

    - ``heartbeat_delay``: seconds between ``h`` frames on an idle receiving
      connection.
    - ``disconnect_delay``: seconds a polling/streaming session survives
      without a receiving request before it is ended (and, once closed, how
      long it keeps answering with its close frame).
    - ``response_limit``: bytes a streaming response carries before the
      server ends it and the client reconnects.
    - ``max_send_buffer``: queued, unsent bytes after which the client is
      deemed too slow and the session is closed.
    - ``max_message_size``: bytes of one inbound WebSocket message or HTTP
      send body.
    - ``allowed_origins``: ``None`` for any, else the exact ``Origin``
      values allowed (others get 403).
    """

    heartbeat_delay: float = 25.0
    disconnect_delay: float = 5.0
    response_limit: int = 128 * 1024
    websocket_enabled: bool = True
    cookie_needed: bool = False
    max_send_buffer: int = 512 * 1024
    max_message_size: int = 1024 * 1024
    allowed_origins: frozenset[str] | None = None
    #: Told why the server cut a session ("slow-consumer"), for metrics.
    on_close: Callable[[str], None] = attrs.field(default=lambda reason: None, eq=False, repr=False)
    sockjs_url: str = DEFAULT_SOCKJS_URL

    @property
    def cors(self) -> CorsPolicy:
        return CorsPolicy(self.allowed_origins)
