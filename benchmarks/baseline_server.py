"""The floor: an Autobahn broadcast server that does as little as STOMP allows.

It answers the same frames loadgen.js sends (CONNECT/STOMP, SUBSCRIBE,
SEND, DISCONNECT, heart-beat EOLs) on ``/ws-chat`` with CONNECTED, RECEIPT
and MESSAGE frames, so loadgen runs unchanged against it and against
anonchat. No parser beyond ``bytes.find``, no JSON, no storage, no
heart-beats of its own (it offers ``0,0``), no send-buffer limit: a SEND's
``{"content": ...}`` body is spliced into a chat-message-shaped JSON body,
the MESSAGE frame and its WebSocket framing are built once, and the same
bytes are written to every subscriber's transport.

    python benchmarks/baseline_server.py --port 8090
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage


def _frame(command: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    head = b"".join(b"%s:%s\n" % pair for pair in headers)
    return command + b"\n" + head + b"\n" + body + b"\0"


def _wire(frame: bytes) -> bytes:
    """Unmasked text WebSocket message bytes, framed once."""
    return PreparedMessage(frame, False, False, True).payloadHybi  # type: ignore[no-any-return]


class BroadcastProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    factory: "BroadcastFactory"
    subscribed = False

    def onConnect(self, request):  # type: ignore[no-untyped-def]
        for protocol in ("v12.stomp", "v11.stomp", "v10.stomp"):
            if protocol in request.protocols:
                return protocol
        return None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # One frame per WebSocket message is all loadgen sends; a bare EOL
        # is a heart-beat.
        first = payload[:1]
        if first == b"S":
            if payload.startswith(b"SEND"):
                self.factory.broadcast(payload)
                return
            if payload.startswith(b"SUBSCRIBE"):
                self.subscribed = True
                self.factory.subscribers[self] = None
                self._receipt(payload)
                return
            if payload.startswith(b"STOMP"):
                self._connected()
                return
        elif first == b"C":
            if payload.startswith(b"CONNECT"):
                self._connected()
                return
        elif first == b"D":
            self._receipt(payload)
            self.sendClose(1000)
            return
        elif first in (b"\n", b"\r", b""):
            return
        # anything else (UNSUBSCRIBE, ACK...): acknowledged, ignored
        self._receipt(payload)

    def _connected(self) -> None:
        factory = self.factory
        session = next(factory.sessions)
        frame = _frame(
            b"CONNECTED",
            [(b"version", b"1.2"), (b"heart-beat", b"0,0"), (b"server", b"baseline/1.0"),
             (b"session", b"%d" % session), (b"user-name", b"base-%05d" % (session % 100000))],
        )
        self.transport.write(_wire(frame))

    def _receipt(self, payload: bytes) -> None:
        start = payload.find(b"\nreceipt:")
        if start < 0:
            return
        start += 9
        end = payload.find(b"\n", start)
        self.transport.write(_wire(_frame(b"RECEIPT", [(b"receipt-id", payload[start:end])])))

    def onClose(self, wasClean: bool, code: int, reason: str | None) -> None:
        self.factory.subscribers.pop(self, None)


class BroadcastFactory(WebSocketServerFactory):  # type: ignore[misc]
    protocol = BroadcastProtocol

    def __init__(self, url: str) -> None:
        super().__init__(url, server="baseline")
        self.setProtocolOptions(
            perMessageCompressionAccept=lambda offers: None,
            autoPingInterval=0,
            openHandshakeTimeout=30,
            closeHandshakeTimeout=2,
            failByDrop=True,
        )
        self.subscribers: dict[BroadcastProtocol, None] = {}
        self.sessions = itertools.count(1)
        self.ids = itertools.count(1)

    def broadcast(self, payload: bytes) -> None:
        start = payload.find(b"\n\n") + 2
        end = payload.rfind(b"}")  # the body is {"content":...}\0
        message_id = b"%d-%d" % (int(time.time() * 1000), next(self.ids))
        body = (b'{"id":"' + message_id + b'","type":"CHAT","sender":"base-00000",'
                + payload[start + 1:end] + b',"timestamp":"1970-01-01T00:00:00.000Z"}')
        wire = _wire(_frame(
            b"MESSAGE",
            [(b"destination", b"/topic/chat"), (b"content-type", b"application/json;charset=UTF-8"),
             (b"subscription", b"sub-0"), (b"message-id", message_id), (b"content-length", b"%d" % len(body))],
            body,
        ))
        for protocol in self.subscribers:
            protocol.transport.write(wire)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--interface", default="127.0.0.1")
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    factory = BroadcastFactory(f"ws://{args.interface}:{args.port}/ws-chat")
    reactor.listenTCP(args.port, factory, backlog=4096, interface=args.interface)  # type: ignore[attr-defined]
    print(f"baseline listening on {args.interface}:{args.port}", file=sys.stderr, flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
