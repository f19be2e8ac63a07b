"""HTTP details every SockJS URL shares: origin policy, CORS, caching, the JSESSIONID cookie, errors.

CORS is the server's one policy (``anonchat.web.origins.CorsPolicy``, the
protocol's rules); with an origin allow-list, any other origin is refused
outright (403) rather than served without CORS headers.
"""

from __future__ import annotations

import re

from twisted.web.http import datetimeToString
from twisted.web.server import Request

from anonchat.web.sockjs.hints import Clock
from anonchat.web.sockjs.options import SockJSOptions

ONE_YEAR = 365 * 24 * 60 * 60
NO_CACHE = b"no-store, no-cache, must-revalidate, max-age=0"
CACHE_FOREVER = b"public, max-age=%d" % ONE_YEAR
TEXT_PLAIN = b"text/plain;charset=UTF-8"
JAVASCRIPT = b"application/javascript;charset=UTF-8"
JSON = b"application/json;charset=UTF-8"
HTML = b"text/html;charset=UTF-8"
EVENT_STREAM = b"text/event-stream;charset=UTF-8"

_COOKIE_VALUE = re.compile(rb"^[A-Za-z0-9._~-]{1,128}$")


def origin_allowed(request: Request, options: SockJSOptions) -> bool:
    """Whether this request's ``Origin`` (if any) may use the endpoint."""
    return options.cors.permits(request)


def set_cors(request: Request, options: SockJSOptions) -> None:
    options.cors.apply(request)


def set_no_cache(request: Request) -> None:
    request.setHeader(b"Cache-Control", NO_CACHE)


def set_cache_forever(request: Request, clock: Clock) -> None:
    request.setHeader(b"Cache-Control", CACHE_FOREVER)
    request.setHeader(b"Expires", datetimeToString(clock.seconds() + ONE_YEAR))


def set_cookie(request: Request, options: SockJSOptions) -> None:
    """``JSESSIONID`` for sticky load balancers, when the endpoint asks for it."""
    if not options.cookie_needed:
        return
    value = request.getCookie(b"JSESSIONID")
    if value is None or not _COOKIE_VALUE.match(value):
        value = b"dummy"
    request.setHeader(b"Set-Cookie", b"JSESSIONID=" + value + b"; Path=/")


def session_headers(request: Request, options: SockJSOptions, content_type: bytes) -> None:
    """Headers of every dynamic session response."""
    request.setHeader(b"Content-Type", content_type)
    set_no_cache(request)
    set_cookie(request, options)
    set_cors(request, options)


def preflight(request: Request, options: SockJSOptions, clock: Clock, methods: bytes) -> bytes:
    """``204`` answer to an ``OPTIONS`` request: cacheable for a year."""
    set_cache_forever(request, clock)
    set_cookie(request, options)
    options.cors.preflight(request, methods, ONE_YEAR)
    return b""


def _bare(request: Request, code: int) -> bytes:
    request.setResponseCode(code)
    request.defaultContentType = None  # type: ignore[attr-defined]
    return b""


def not_found(request: Request) -> bytes:
    return _bare(request, 404)


def forbidden(request: Request) -> bytes:
    return _bare(request, 403)


def not_modified(request: Request) -> bytes:
    return _bare(request, 304)


def method_not_allowed(request: Request, allowed: bytes) -> bytes:
    request.setHeader(b"Allow", allowed)
    return _bare(request, 405)


def error(request: Request, code: int, message: str) -> bytes:
    """A plain-text error such as ``500 Payload expected.``"""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", TEXT_PLAIN)
    set_no_cache(request)
    return message.encode("utf-8")
