"""The static face of a SockJS endpoint: greeting, ``/info`` and ``/iframe*.html``.

The iframe page uses the 0.3.3 template (``_sockjs_onload`` before the
script tag), which sockjs-client 0.3 and 1.x both bootstrap from; its ETag
is a hash of the page, so it only changes with ``sockjs_url``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from html import escape

from twisted.web.server import Request

from anonchat.web.sockjs import responses
from anonchat.web.sockjs.hints import Clock
from anonchat.web.sockjs.options import SockJSOptions

GREETING = b"Welcome to SockJS!\n"

#: ``iframe.html`` and its versioned names, as sockjs-node matches them.
IFRAME_NAME = re.compile(rb"^iframe[0-9a-z_.-]*\.html$")

_IFRAME_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};
  </script>
  <script src="{sockjs_url}"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


def greeting(request: Request) -> bytes:
    request.setHeader(b"Content-Type", responses.TEXT_PLAIN)
    return GREETING


def info(request: Request, options: SockJSOptions) -> bytes:
    """Server capabilities, plus entropy the browser cannot produce well itself."""
    body = {
        "websocket": options.websocket_enabled,
        "cookie_needed": options.cookie_needed,
        "origins": ["*:*"],
        "entropy": secrets.randbits(32),
    }
    request.setHeader(b"Content-Type", responses.JSON)
    responses.set_no_cache(request)
    responses.set_cors(request, options)
    return json.dumps(body).encode("ascii")


class IframePage:
    """The hidden-iframe page, rendered once per endpoint."""

    def __init__(self, sockjs_url: str) -> None:
        self.body = _IFRAME_TEMPLATE.format(sockjs_url=escape(sockjs_url, quote=True)).encode("utf-8")
        self.etag = b'"' + hashlib.sha256(self.body).hexdigest()[:32].encode("ascii") + b'"'

    def render(self, request: Request, clock: Clock) -> bytes:
        responses.set_cache_forever(request, clock)
        request.setHeader(b"ETag", self.etag)
        if self._matches(request.getHeader(b"if-none-match")):
            return responses.not_modified(request)
        request.setHeader(b"Content-Type", responses.HTML)
        return self.body

    def _matches(self, header: bytes | None) -> bool:
        if header is None:
            return False
        tags = [t.strip() for t in header.split(b",")]
        return b"*" in tags or self.etag in tags or b"W/" + self.etag in tags
