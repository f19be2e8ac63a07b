"""Streaming transports: ``xhr_streaming``, ``eventsource`` and ``htmlfile``.

One long response carries many frames; it is ended after ``response_limit``
bytes of frames (the prelude not counted, as the protocol suite expects) so
the browser can free what it has buffered and reconnect. Each frame is one
``write`` so it leaves as one HTTP chunk.
"""

from __future__ import annotations

from twisted.web.server import Request

from anonchat.web.sockjs import framing, responses
from anonchat.web.sockjs.endpoint import Endpoint
from anonchat.web.sockjs.httpchannel import HTTPChannel, serve
from anonchat.web.sockjs.polling import callback_error, callback_of
from anonchat.web.sockjs.session import SockJSSession

_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"""


class StreamingChannel(HTTPChannel):
    prelude = b""

    def __init__(self, request: Request, session: SockJSSession, response_limit: int) -> None:
        super().__init__(request, session)
        self._limit = response_limit
        self._sent = 0

    def start(self) -> None:
        self.request.setHeader(b"X-Accel-Buffering", b"no")
        self.request.write(self.make_prelude())

    def make_prelude(self) -> bytes:
        return self.prelude

    def deliver(self, data: bytes) -> None:
        self.request.write(data)
        self._sent += len(data)
        if self._sent >= self._limit:
            self.end()


class XhrStreamingChannel(StreamingChannel):
    #: Old browsers only hand a streaming XHR's body to script after 2 KiB.
    prelude = b"h" * 2048 + b"\n"

    def wrap(self, frame: bytes) -> bytes:
        return frame + b"\n"


class EventSourceChannel(StreamingChannel):
    #: Opera needs a new line before the first event.
    prelude = b"\r\n"

    def wrap(self, frame: bytes) -> bytes:
        return b"data: " + frame + b"\r\n\r\n"


def _script_safe(literal: bytes) -> bytes:
    # A JSON string inside <script> must not be able to close the tag.
    return literal.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")


class HtmlFileChannel(StreamingChannel):

    def make_prelude(self) -> bytes:
        callback = callback_of(self.request).decode("ascii")
        head = _HTMLFILE_HEAD.format(callback=callback)
        # IE renders nothing of an htmlfile until it has 1 KiB.
        return (head + " " * max(0, 1024 - len(head) + 14) + "\r\n\r\n").encode("ascii")

    def wrap(self, frame: bytes) -> bytes:
        return b"<script>\np(" + _script_safe(framing.encode_literal(frame)) + b");\n</script>\r\n"


def _serve(
    endpoint: Endpoint, request: Request, session_id: str, kind: str, content_type: bytes, cls: type[StreamingChannel]
) -> object:
    limit = endpoint.options.response_limit

    def make(request: Request, session: SockJSSession) -> StreamingChannel:
        return cls(request, session, limit)

    return serve(endpoint, request, session_id, kind, content_type, make)


def xhr_streaming(endpoint: Endpoint, request: Request, session_id: str) -> object:
    return _serve(endpoint, request, session_id, "xhr_streaming", responses.JAVASCRIPT, XhrStreamingChannel)


def eventsource(endpoint: Endpoint, request: Request, session_id: str) -> object:
    return _serve(endpoint, request, session_id, "eventsource", responses.EVENT_STREAM, EventSourceChannel)


def htmlfile(endpoint: Endpoint, request: Request, session_id: str) -> object:
    failed = callback_error(request)
    if failed is not None:
        return failed
    return _serve(endpoint, request, session_id, "htmlfile", responses.HTML, HtmlFileChannel)
