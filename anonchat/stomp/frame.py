"""The STOMP frame value and the one error type the codec raises."""

from __future__ import annotations

import attrs


class FrameError(Exception):
    """A frame that breaks the STOMP rules or our limits.

    ``message`` is short and safe to send back in an ``ERROR`` frame's
    ``message`` header; ``detail`` goes in its body.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


@attrs.frozen
class Frame:
    """One STOMP frame. Headers keep their wire order, repeats included."""

    command: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (STOMP: first one wins)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default


#: A heart-beat: a bare end-of-line between frames.
HEARTBEAT = b"\n"
