"""What a STOMP session needs from whatever carries it, and what it offers.

Raw WebSocket, every SockJS transport and any future TCP listener adapt
themselves to these two small interfaces; the session never learns which
one it is on.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from anonchat.stomp.outbound import Outbound


@attrs.frozen
class ClientInfo:
    """Who is on the other end, as far as the session may know.

    ``address`` is the client's address after ``--trusted-proxies`` rules
    (for per-address limits only: never logged); ``transport`` names the
    carrier (``websocket``, ``sockjs-websocket``, ``xhr_streaming``, ...).
    """

    address: str
    transport: str
    #: The carrier already holds this address's connection slot (raw
    #: WebSocket counts at the handshake, so it can answer 429 there).
    slot_held: bool = False


class IFrameTransport(Interface):
    """The carrier of one STOMP connection, as seen by the session."""

    kind = Attribute("Short transport name for metrics: 'websocket', 'xhr_streaming', ...")

    def send(out: Outbound) -> None:
        """Queue one complete frame (or a heart-beat EOL) as one message."""

    def close() -> None:
        """Close once what is queued has been sent. Idempotent."""

    def when_writable() -> Deferred[None]:
        """Fires once the carrier has room again (at once if it has, and
        when it closes): lets bulk sends such as a replay keep pace with
        the client instead of overflowing its send buffer. "Room" is a
        low-water mark, not an empty queue: a polling carrier that empties
        only when the client polls must still let a whole poll's worth
        through per round trip."""

    def pause_reading() -> None:
        """Stop handing inbound data to the session until ``resume_reading``
        (the session has too much work waiting). Memory held meanwhile
        must stay bounded: a socket stops reading; a polling carrier
        refuses or delays further sends."""

    def resume_reading() -> None:
        """Hand inbound data to the session again. Idempotent."""

    def keepalive(interval: float, timeout: float) -> None:
        """STOMP heart-beats are off for this connection: check liveness
        below STOMP instead (WebSocket ping every ``interval`` seconds,
        close if no pong within ``timeout``). A carrier that already notices
        a vanished peer by itself (SockJS polling) may do nothing."""


class IFrameReceiver(Interface):
    """The STOMP session, as seen by the carrier."""

    def data_received(data: bytes) -> None:
        """Bytes of one inbound message (any split of the frame stream)."""

    def connection_lost() -> None:
        """The carrier is gone, however it went. Called at most once."""


#: What a carrier calls for each new connection:
#: ``session_factory(transport, client) -> IFrameReceiver``.
SessionFactory = "Callable[[IFrameTransport, ClientInfo], IFrameReceiver]"
