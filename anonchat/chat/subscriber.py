"""What the chat layer sees of a connection: a narrow handle, not the
whole STOMP session (which satisfies it structurally).

The room, the topics and a replay may deliver frames to it, pace a bulk
send by it, charge its budget and close it; nothing else.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from twisted.internet.defer import Deferred

from anonchat.stomp.budget import ConnectionBudget
from anonchat.stomp.outbound import Outbound


class Subscriber(Protocol):
    #: The STOMP version its frames are built for.
    version: str
    session_id: str
    #: The chat user the room attached at connect time.
    principal: Any
    #: Why the server closed it (None: the client or the network did).
    close_reason: str | None

    @property
    def budget(self) -> ConnectionBudget: ...

    @property
    def is_open(self) -> bool:
        """Connected and not closing: frames sent now reach the client."""

    @property
    def subscriptions(self) -> Mapping[str, str]: ...

    def deliver(self, out: Outbound) -> None:
        """A frame shared with other subscribers (a broadcast)."""

    def send_frame(self, data: bytes) -> None:
        """A frame built for this connection only."""

    def when_writable(self) -> Deferred[None]:
        """Fires once its carrier has room (paces replays)."""

    def close(self, reason: str) -> None:
        """Close it from the server side."""

    def protocol_error(self, message: str, detail: str = "", *, receipt_id: str | None = None,
                       extra: tuple[tuple[str, str], ...] = (), reason: str = "protocol-error") -> None:
        """One ``ERROR`` frame, then close."""
