"""Version and heart-beat negotiation, as STOMP 1.2 defines them."""

from __future__ import annotations

from anonchat.stomp.frame import FrameError

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")


def negotiate_version(accept_version: str | None) -> str | None:
    """The highest version both sides speak; absent header means 1.0."""
    if accept_version is None:
        return "1.0"
    offered = {v.strip() for v in accept_version.split(",")}
    for version in reversed(SUPPORTED_VERSIONS):
        if version in offered:
            return version
    return None


def parse_heartbeat(value: str | None) -> tuple[int, int]:
    """``cx,cy`` in milliseconds; absent means ``0,0``."""
    if value is None:
        return (0, 0)
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise FrameError("invalid heart-beat header", f"heart-beat must be two non-negative integers, got {value!r}")
    return int(parts[0]), int(parts[1])


def heartbeat_intervals(client: tuple[int, int], server: tuple[int, int]) -> tuple[int, int]:
    """``(server sends every, server expects every)`` in ms; 0 means never.

    The client offers (cx: it can send, cy: it wants to receive); the
    server offers (sx, sy) alike. Each direction runs at the slower of the
    two wishes, and only when both sides want it.
    """
    cx, cy = client
    sx, sy = server
    send = max(sx, cy) if sx and cy else 0
    expect = max(cx, sy) if cx and sy else 0
    return send, expect
