"""One serialized outbound frame, shared by every connection it goes to.

A broadcast is serialized once; each transport family (raw WebSocket,
SockJS framing) encodes it once more for itself and caches the result
here, so a fan-out does no per-subscriber encoding.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class Outbound:
    __slots__ = ("data", "_encodings")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._encodings: dict[object, Any] = {}

    def encoded(self, key: object, encode: Callable[[bytes], T]) -> T:
        """``encode(self.data)``, computed once per ``key``."""
        try:
            return self._encodings[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._encodings[key] = encode(self.data)
            return value

    def __repr__(self) -> str:
        return f"Outbound({self.data!r})"
