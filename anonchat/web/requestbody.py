"""Request bodies held in memory and bounded by ``--max-request-body``.

twisted.web spools any body of 100 kB or more to a temporary file, on the
reactor thread, and reads it in full before any resource can look at it.
Here a body is refused from its ``Content-Length`` before one byte of it is
read (413, then close), a chunked body is cut as soon as it passes the
limit, and what is accepted stays in a ``BytesIO`` (at most the limit).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

log = Logger()

DEFAULT_MAX_REQUEST_BODY = 1024 * 1024

_TOO_LARGE = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain;charset=UTF-8\r\n"
              b"Content-Length: 19\r\nConnection: close\r\n\r\nPayload too large.\n")


class BodyLimitedChannel(HTTPChannel):
    """An HTTP channel that refuses request bodies over its site's ``max_request_body``."""

    site: Any  # set by Site.buildProtocol
    refused = False

    @property
    def max_request_body(self) -> int:
        return int(getattr(self.site, "max_request_body", DEFAULT_MAX_REQUEST_BODY))

    def allHeadersReceived(self) -> None:
        if self.length is not None and self.length > self.max_request_body:
            self.refuse_body()
            return
        super().allHeadersReceived()

    def refuse_body(self) -> None:
        """Answer 413 (no response has started: the request is still being
        read) and close; whatever else the client sends is dropped unread."""
        if self.refused:
            return
        self.refused = True
        log.info("refused an HTTP request body over {limit} bytes", limit=self.max_request_body)
        assert self.transport is not None
        self.transport.write(_TOO_LARGE)
        self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)


class BodyLimitedRequest(Request):
    """A request whose body is kept in memory, counted as it arrives."""

    channel: Any
    _body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        self.content = BytesIO()  # type: ignore[assignment]  # None in Twisted's annotations
        self._body_bytes = 0

    def handleContentChunk(self, data: bytes) -> None:
        channel = self.channel
        if isinstance(channel, BodyLimitedChannel):
            if channel.refused:
                return
            self._body_bytes += len(data)
            if self._body_bytes > channel.max_request_body:
                channel.refuse_body()
                return
        content: Any = self.content
        content.write(data)
