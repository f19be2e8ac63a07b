"""One serialized outbound frame, shared by every connection it goes to.

A broadcast is serialized once; each transport family (raw WebSocket,
SockJS framing) encodes it once more for itself with its ``Encoding`` and
caches the result here, so a fan-out does no per-subscriber encoding.

A batch (``Outbound.batch``) carries several frames that go to the same
subscribers: each stays its own message on the wire, but a transport can
hand them to the socket in one write.

A spliced batch (``BatchTemplate.for_line``) is a broadcast batch for one
group of subscribers that share a ``subscription`` header line. Clients
choose their subscription ids, so a room may hold as many groups as
subscribers; each group's bytes are therefore one C-level join of pieces
encoded once per batch (per encoding and line length), never a loop over
its frames in Python.
"""

from __future__ import annotations

from typing import Protocol, Sequence


class Encoding(Protocol):
    """How a transport family writes frames; each ``Outbound`` caches its
    encodings under the encoding object. ``around`` and ``inner`` split an
    encoded frame around its subscription line:
    ``encode(head + line + tail) == prefix + inner(line) + suffix``
    for every ``line`` of ``line_length`` bytes, where
    ``(prefix, suffix) = around(head, tail, line_length)``."""

    #: What goes between the encoded frames of a batch.
    separator: bytes

    def encode(self, data: bytes) -> bytes: ...

    def around(self, head: bytes, tail: bytes, line_length: int) -> tuple[bytes, bytes]: ...

    def inner(self, line: bytes) -> bytes: ...


class PlainStomp:
    """The STOMP byte stream itself (``Outbound.data``)."""

    separator = b""

    @staticmethod
    def encode(data: bytes) -> bytes:
        return data

    @staticmethod
    def around(head: bytes, tail: bytes, line_length: int) -> tuple[bytes, bytes]:
        return head, tail

    @staticmethod
    def inner(line: bytes) -> bytes:
        return line


PLAIN = PlainStomp()


class Outbound:
    """One frame (``data``: its STOMP bytes)."""

    __slots__ = ("_data", "_encodings")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._encodings: dict[Encoding, bytes] = {}

    @property
    def data(self) -> bytes:
        """The plain STOMP bytes (of every frame, for a batch)."""
        return self._data

    @staticmethod
    def batch(parts: Sequence[Outbound]) -> Outbound:
        """Several frames for the same subscribers."""
        if len(parts) == 1:
            return parts[0]
        return Batch(tuple(parts))

    def frames(self) -> tuple[Outbound, ...]:
        return (self,)

    def encoded(self, encoding: Encoding) -> bytes:
        """Every frame encoded, joined by the encoding's separator; computed
        once per encoding."""
        try:
            return self._encodings[encoding]
        except KeyError:
            value = self._encodings[encoding] = self._encode(encoding)
            return value

    def _encode(self, encoding: Encoding) -> bytes:
        return encoding.encode(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Batch(Outbound):
    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Outbound, ...]) -> None:
        super().__init__(b"".join(p.data for p in parts))
        self.parts = parts

    def frames(self) -> tuple[Outbound, ...]:
        return self.parts

    def _encode(self, encoding: Encoding) -> bytes:
        # a batch's parts belong to it alone: no cache of their own
        return encoding.separator.join([encoding.encode(p.data) for p in self.parts])


class BatchTemplate:
    """The frames of one broadcast batch, each cut in two around its
    ``subscription`` header line: ``(head, tail)`` pairs, shared by every
    subscription group."""

    __slots__ = ("parts", "_pieces")

    def __init__(self, parts: Sequence[tuple[bytes, bytes]]) -> None:
        if not parts:
            raise ValueError("a batch has at least one frame")
        self.parts = tuple(parts)
        self._pieces: dict[tuple[Encoding, int], list[bytes]] = {}

    def for_line(self, line: bytes) -> Outbound:
        """The batch for the subscribers whose subscription line is ``line``."""
        return SplicedBatch(self, line)

    def pieces(self, encoding: Encoding, line_length: int) -> list[bytes]:
        """What goes between the (encoded) lines of the whole batch: the
        first frame's prefix, then each suffix with the next prefix, then
        the last suffix. Computed once per encoding and line length."""
        key = (encoding, line_length)
        try:
            return self._pieces[key]
        except KeyError:
            pass
        separator = encoding.separator
        pieces = []
        before = b""
        for head, tail in self.parts:
            prefix, suffix = encoding.around(head, tail, line_length)
            pieces.append(before + prefix)
            before = suffix + separator
        pieces.append(before[:len(before) - len(separator)])
        self._pieces[key] = pieces
        return pieces


class SplicedBatch(Outbound):
    __slots__ = ("_template", "_line")

    def __init__(self, template: BatchTemplate, line: bytes) -> None:
        self._encodings = {}
        self._template = template
        self._line = line

    @property
    def data(self) -> bytes:
        return self.encoded(PLAIN)

    def frames(self) -> tuple[Outbound, ...]:
        line = self._line
        return tuple(Outbound(head + line + tail) for head, tail in self._template.parts)

    def _encode(self, encoding: Encoding) -> bytes:
        line = self._line
        return encoding.inner(line).join(self._template.pieces(encoding, len(line)))
