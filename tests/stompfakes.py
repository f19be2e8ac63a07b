"""Fakes for driving a StompSession without a network: a transport that
records what the session sends, and helpers to build and read frames."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from anonchat.stomp.frame import HEARTBEAT, Frame
from anonchat.stomp.outbound import Outbound
from anonchat.stomp.parser import FrameParser
from anonchat.stomp.serializer import serialize
from anonchat.stomp.transport import IFrameTransport


@implementer(IFrameTransport)
class FakeTransport:
    kind = "fake"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        #: The session asked the carrier to stop reading (and not since to resume).
        self.paused = False
        #: (interval, timeout) of the carrier-level pings asked for, if any.
        self.keepalive_asked: tuple[float, float] | None = None

    def send(self, out: Outbound) -> None:
        assert not self.closed, "sent after close"
        self.sent.append(out.data)

    def close(self) -> None:
        self.closed = True

    def when_writable(self) -> Deferred[None]:
        return succeed(None)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def keepalive(self, interval: float, timeout: float) -> None:
        self.keepalive_asked = (interval, timeout)

    def frames(self) -> list[Frame]:
        """Everything sent so far, parsed; heart-beats dropped."""
        parser = FrameParser(max_frame=1 << 24)
        frames: list[Frame] = []
        for data in self.sent:
            frames.extend(parser.feed(data))
        return frames

    def take(self) -> list[Frame]:
        frames = self.frames()
        self.sent.clear()
        return frames

    def heartbeats(self) -> int:
        return sum(1 for data in self.sent if data == HEARTBEAT)


def frame(command: str, body: bytes = b"", version: str = "1.2", **headers: str) -> bytes:
    """Client frame bytes; header names use ``_`` for ``-``."""
    return serialize(Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body), version)
