"""One serialized outbound frame, shared by every connection it goes to.

A broadcast is serialized once; each transport family (raw WebSocket,
SockJS framing) encodes it once more for itself and caches the result
here, so a fan-out does no per-subscriber encoding.

A batch (``Outbound.batch``) carries several frames that go to the same
subscribers: each stays its own message on the wire, but a transport can
hand them to the socket in one write.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


class Outbound:
    __slots__ = ("data", "parts", "_encodings")

    def __init__(self, data: bytes, parts: tuple[Outbound, ...] | None = None) -> None:
        self.data = data
        #: The single frames of a batch; None for a single frame.
        self.parts = parts
        self._encodings: dict[object, Any] = {}

    @classmethod
    def batch(cls, parts: Sequence[Outbound]) -> Outbound:
        """Several frames for the same subscribers; ``data`` is the plain
        STOMP byte stream of all of them."""
        if len(parts) == 1:
            return parts[0]
        return cls(b"".join(p.data for p in parts), tuple(parts))

    def frames(self) -> tuple[Outbound, ...]:
        return self.parts if self.parts is not None else (self,)

    def encoded_all(self, key: object, encode: Callable[[bytes], bytes], join: Callable[[list[bytes]], bytes]) -> bytes:
        """Each frame encoded and joined, cached here."""
        if self.parts is None:
            return self.encoded(key, encode)
        try:
            return self._encodings[key]  # type: ignore[no-any-return]
        except KeyError:
            # a batch's parts belong to it alone: no cache of their own
            value = self._encodings[key] = join([encode(p.data) for p in self.parts])
            return value

    def encoded(self, key: object, encode: Callable[[bytes], T]) -> T:
        """``encode(self.data)``, computed once per ``key``."""
        try:
            return self._encodings[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._encodings[key] = encode(self.data)
            return value

    def __repr__(self) -> str:
        return f"Outbound({self.data!r})"
