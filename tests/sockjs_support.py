"""Test doubles for the SockJS tests: a recording STOMP receiver and real HTTP over a StringTransport.

``HTTPHarness`` drives the real ``twisted.web`` request machinery (chunked
encoding, producers, lost connections) with a ``task.Clock``, so protocol
timing is deterministic and no socket is opened.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from anonchat.stomp.outbound import Outbound
from anonchat.stomp.transport import ClientInfo
from anonchat.web.sockjs import SockJSOptions, SockJSResource


class Recorder:
    """A STOMP-session stand-in that records what its carrier hands it, and can
    echo, close at once, or pause its carrier's reading on a given message."""

    def __init__(self, transport: Any, client: ClientInfo, *, echo: bool = False, close_at_once: bool = False,
                 pause_on: bytes | None = None) -> None:
        self.transport = transport
        self.client = client
        self.echo = echo
        self.pause_on = pause_on
        self.received: list[bytes] = []
        self.lost = 0
        if close_at_once:
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        if self.echo:
            self.transport.send(Outbound(data))
        if data == self.pause_on:  # too much work waiting, as a STOMP session would say
            self.transport.pause_reading()

    def connection_lost(self) -> None:
        self.lost += 1


class RecorderFactory:
    """``session_factory`` that keeps every receiver it made."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.made: list[Recorder] = []

    def __call__(self, transport: Any, client: ClientInfo) -> Recorder:
        receiver = Recorder(transport, client, **self.kwargs)
        self.made.append(receiver)
        return receiver

    @property
    def last(self) -> Recorder:
        return self.made[-1]


@attrs.define
class Response:
    status: int
    version: bytes
    headers: dict[str, list[str]]
    chunks: list[bytes]
    complete: bool
    chunked: bool

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def parse_response(raw: bytes, closed: bool = False) -> Response | None:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    version, code = lines[0].split(b" ")[:2]
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode().strip().lower(), []).append(value.decode("latin-1").strip())
    chunked = "chunked" in ",".join(headers.get("transfer-encoding", [])).lower()
    chunks: list[bytes] = []
    complete = False
    if chunked:
        while rest:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line, 16)
            if size == 0:
                complete = True
                break
            chunks.append(rest[:size])
            rest = rest[size + 2 :]
    elif "content-length" in headers:
        length = int(headers["content-length"][-1])
        chunks = [rest[:length]] if length else []
        complete = len(rest) >= length
    else:
        chunks = [rest] if rest else []
        complete = closed
    return Response(int(code), version, headers, chunks, complete, chunked)


class Exchange:
    """One HTTP connection carrying one request."""

    def __init__(self, site: Site, raw_request: bytes) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 40000))
        self.channel = site.buildProtocol(IPv4Address("TCP", "10.1.2.3", 40000))
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(raw_request)

    def response(self) -> Response:
        parsed = parse_response(self.transport.value(), self.transport.disconnecting)
        assert parsed is not None, f"no response yet: {self.transport.value()!r}"
        return parsed

    @property
    def frames(self) -> list[bytes]:
        return self.response().chunks

    def abort(self) -> None:
        """The client went away."""
        self.channel.connectionLost(Failure(ConnectionLost()))

    def pause(self) -> None:
        """The socket's send buffer filled up: the transport pauses its producer."""
        self.transport.producer.pauseProducing()

    def resume(self) -> None:
        self.transport.producer.resumeProducing()


class HTTPHarness:
    """A SockJS endpoint at ``/echo`` (or any prefix) behind a real Site on a task.Clock."""

    def __init__(
        self,
        factory: Any = None,
        options: SockJSOptions | None = None,
        *,
        raw_websocket: Any = None,
        prefix: bytes = b"echo",
    ) -> None:
        self.clock = Clock()
        self.factory = factory if factory is not None else RecorderFactory(echo=True)
        self.resource = SockJSResource(
            self.factory, self.clock, options=options or SockJSOptions(), raw_websocket=raw_websocket
        )
        root = Resource()
        root.putChild(prefix, self.resource)
        self.site = Site(root, reactor=self.clock)
        self.site.log = lambda request: None  # type: ignore[method-assign]
        self.prefix = b"/" + prefix

    def request(
        self,
        method: bytes,
        path: bytes,
        body: bytes = b"",
        headers: dict[bytes, bytes] | None = None,
        version: bytes = b"HTTP/1.1",
    ) -> Exchange:
        all_headers = {b"Host": b"example.test"}
        all_headers.update(headers or {})
        if body or method == b"POST":
            all_headers[b"Content-Length"] = b"%d" % len(body)
        lines = [method + b" " + self.prefix + path + b" " + version]
        lines += [name + b": " + value for name, value in all_headers.items()]
        return Exchange(self.site, b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def get(self, path: bytes, **kwargs: Any) -> Exchange:
        return self.request(b"GET", path, **kwargs)

    def post(self, path: bytes, body: bytes = b"", **kwargs: Any) -> Exchange:
        return self.request(b"POST", path, body, **kwargs)
