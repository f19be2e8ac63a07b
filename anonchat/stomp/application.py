"""What a STOMP session asks of the application behind it.

The session enforces STOMP; the application decides what destinations
mean. Keeping this port small lets the session be tested with a fake
application and the chat be tested without frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from twisted.internet.defer import Deferred
from zope.interface import Interface

if TYPE_CHECKING:
    from anonchat.stomp.session import StompSession


class DestinationError(Exception):
    """A protocol-level refusal (unknown destination, missing header):
    the session answers with ``ERROR`` and closes."""


class SessionRefused(Exception):
    """The application cannot open this session now (its reason is safe to
    send to the client); the session answers with ``ERROR`` (whose
    ``message`` header is ``message``) and closes."""

    def __init__(self, detail: str, message: str = "connection refused") -> None:
        super().__init__(detail)
        self.message = message


class IStompApplication(Interface):
    def connect(session: StompSession, headers: Mapping[str, str]) -> Deferred[Mapping[str, str]]:
        """A session opened with a CONNECT carrying ``headers`` (``passcode``,
        ``x-rejoin-token``...); fires with extra ``CONNECTED`` headers
        (``user-name``). Failing refuses the connection with ``ERROR``."""

    def subscribe(session: StompSession, subscription: str, destination: str, headers: Mapping[str, str]) -> None:
        """Raise DestinationError for a destination that does not exist."""

    def unsubscribe(session: StompSession, subscription: str, destination: str) -> None:
        """Forget one subscription of this session (to ``destination``)."""

    def send(session: StompSession, destination: str, body: bytes, receipt: str | None) -> Deferred[bool]:
        """Handle a ``SEND``; fires True once it is durably done (the
        ``RECEIPT`` may go), False when it was refused with an
        application error already reported to the client (naming
        ``receipt``, when the frame asked for one, so the client learns at
        once that no RECEIPT will come). Raise
        DestinationError for a destination that cannot be sent to."""

    def disconnected(session: StompSession) -> None:
        """The session ended, however it ended. Called once, and only for
        sessions whose ``connect`` was called."""
