"""A raw WebSocket test client (Autobahn) that speaks STOMP by hand, so
tests can send exactly the bytes they mean: split frames, packed frames,
garbage."""

from __future__ import annotations

from typing import Any, Sequence

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from anonchat.stomp.frame import Frame
from anonchat.stomp.parser import FrameParser


class _Protocol(WebSocketClientProtocol):  # type: ignore[misc]
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._message(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(code)


class WsClient:
    def __init__(self, url: str, protocols: Sequence[str] = ("v12.stomp",), headers: dict[str, str] | None = None,
                 origin: str | None = None) -> None:
        self.factory = WebSocketClientFactory(url, protocols=list(protocols) or None, headers=headers or {},
                                              origin=origin)
        self.factory.protocol = _Protocol
        self.factory.client = self
        self.messages: list[bytes] = []
        self.protocol: Any = None
        self.close_code: int | None = None
        self.opened: Deferred[WsClient] = Deferred()
        self.closed: Deferred[int | None] = Deferred()
        self._parser = FrameParser(max_frame=1 << 24)
        self.frames: list[Frame] = []
        connectWS(self.factory)

    def _opened(self, protocol: Any) -> None:
        self.protocol = protocol
        self.opened.callback(self)

    def _message(self, payload: bytes) -> None:
        self.messages.append(payload)
        self.frames.extend(self._parser.feed(payload))

    def _closed(self, code: int | None) -> None:
        self.close_code = code
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"WebSocket refused ({code})"))
        if not self.closed.called:
            self.closed.callback(code)

    @property
    def subprotocol(self) -> str | None:
        return self.protocol.websocket_protocol_in_use if self.protocol else None

    def send(self, data: bytes, binary: bool = False) -> None:
        self.protocol.sendMessage(data, isBinary=binary)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[Frame]:
        waited = 0.0
        while not predicate(self.frames):
            if waited >= timeout:
                raise AssertionError(f"timed out; frames so far: {self.frames!r}")
            if self.closed.called and not predicate(self.frames):
                raise AssertionError(f"closed ({self.close_code}); frames so far: {self.frames!r}")
            await deferLater(reactor, 0.01, lambda: None)
            waited += 0.01
        return self.frames

    async def wait_for_command(self, command: str, count: int = 1, timeout: float = 5.0) -> list[Frame]:
        frames = await self.wait_for(lambda fs: sum(f.command == command for f in fs) >= count, timeout)
        return [f for f in frames if f.command == command]

    def drop(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()

    async def close(self) -> None:
        if self.protocol is not None and not self.closed.called:
            self.protocol.sendClose(1000)
            try:
                await self.closed.addTimeout(3, reactor)
            except Exception:
                self.drop()
                await self.closed
