"""One SockJS session: the carrier the STOMP session sees, whatever transport feeds it.

Outgoing messages queue here as encoded literals and leave as one ``a[...]``
frame whenever a receiving connection ("channel") is attached and writable,
so polling, streaming and WebSocket share one queue, one heartbeat and one
send-buffer limit. ``connection_lost`` is delivered on the next reactor turn
when the STOMP session itself asked to close (never re-entering it), and at
once when the client vanished or the server shuts down.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.stomp.outbound import Outbound
from anonchat.stomp.transport import ClientInfo, IFrameTransport
from anonchat.web.sockjs import framing
from anonchat.web.sockjs.hints import Clock, DelayedCall, Receiver, ReceiverFactory

GO_AWAY = (3000, "Go away!")
ANOTHER_CONNECTION = (2010, "Another connection still open")
INTERRUPTED = (1002, "Connection interrupted")
TOO_SLOW = (4500, "Send buffer overflow")
SERVER_ERROR = (1011, "Server error")


class Channel(Protocol):
    """A receiving connection (one HTTP response or one WebSocket) as the session sees it."""

    @property
    def writable(self) -> bool:
        """False while the transport below has asked us to pause."""

    def write_frame(self, frame: bytes) -> None:
        """Write one SockJS frame. A polling channel then ends itself and calls ``session.release``."""

    def end(self) -> None:
        """End the connection after what was written (finish the response, close the WebSocket)."""

    def abort(self) -> None:
        """Drop the connection now, unsent data included."""

    def pause_reading(self) -> None:
        """Stop reading from the client (a WebSocket); nothing to do for an HTTP response."""

    def resume_reading(self) -> None:
        """Read from the client again."""

    def keepalive(self, interval: float, timeout: float) -> None:
        """Ping a WebSocket peer; nothing to do for an HTTP response."""


class State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


@implementer(IFrameTransport)
class SockJSSession:
    """State, queue and timers of one SockJS session; implements ``IFrameTransport``."""

    log = Logger()

    def __init__(
        self,
        *,
        kind: str,
        client: ClientInfo,
        receiver_factory: ReceiverFactory,
        clock: Clock,
        heartbeat_delay: float,
        disconnect_delay: float,
        max_send_buffer: int,
        on_gone: Callable[[SockJSSession], None],
        on_close: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.kind = kind
        self.client = client
        self._receiver_factory = receiver_factory
        self._clock = clock
        self._heartbeat_delay = heartbeat_delay
        self._disconnect_delay = disconnect_delay
        self._max_send_buffer = max_send_buffer
        self._low_water = max_send_buffer // 2
        self._on_gone = on_gone
        self._on_close = on_close

        self.state = State.NEW
        self._receiver: Receiver | None = None
        self._channel: Channel | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._close_frame = b""
        self._last_write = clock.seconds()
        self._heartbeat: DelayedCall | None = None
        self._expiry: DelayedCall | None = self._clock.callLater(disconnect_delay, self._expire)
        self._lost = False
        self._waiting: list[Deferred[None]] = []
        self._lost_call: DelayedCall | None = None
        #: Client messages not yet handed to the STOMP session (reading paused).
        self._inbound: deque[str] = deque()
        self._reading_paused = False
        self._read_waiters: list[Deferred[None]] = []
        self._keepalive: tuple[float, float] | None = None

    # -- IFrameTransport: what the STOMP session calls

    def send(self, out: Outbound) -> None:
        if self.state is State.CLOSED:
            return
        literal = framing.literal(out)
        self._pending.append(literal)
        self._pending_bytes += len(literal)
        if self._pending_bytes > self._max_send_buffer:
            self.log.info("SockJS session closed: send buffer overflow ({queued} bytes)", queued=self._pending_bytes)
            self._overflow()
            return
        self._flush()

    def close(self) -> None:
        self._close(GO_AWAY, lost_now=False)

    def when_writable(self) -> Deferred[None]:
        """Room while less than half the send buffer is queued (a low-water
        mark: a polling client empties the queue only once per round trip,
        so waiting for an empty queue would let one message through per
        poll); else once the queue goes out to a receiving request, or the end."""
        if self._pending_bytes < self._low_water or self.state is State.CLOSED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _writable(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def pause_reading(self) -> None:
        """Hand no more client messages to the STOMP session until resumed.

        A WebSocket stops reading its socket. An HTTP send (``xhr_send``,
        ``jsonp_send``) that arrives meanwhile is held, unanswered, with its
        messages; sockjs-client sends one request at a time and waits for
        its answer, so it simply waits too. A second send while one is held
        is refused (see ``holding``): only a hostile client sends one.
        Either way at most one request body (or one socket read) is held.
        """
        self._reading_paused = True
        if self._channel is not None:
            self._channel.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        self._deliver_inbound()
        if not self._reading_paused and self._channel is not None:
            self._channel.resume_reading()

    def keepalive(self, interval: float, timeout: float) -> None:
        """WebSocket pings on a WebSocket channel. HTTP transports need
        none: a client that stops polling is gone after the disconnect delay."""
        self._keepalive = (interval, timeout)
        if self._channel is not None:
            self._channel.keepalive(interval, timeout)

    # -- what the transports call

    @property
    def attached(self) -> bool:
        return self._channel is not None

    @property
    def queued_bytes(self) -> int:
        return self._pending_bytes

    def attach(self, channel: Channel) -> None:
        """A receiving request (or a WebSocket) arrived for this session."""
        if self.state is State.CLOSED:
            self._serve_closed(channel)
            return
        if self._channel is not None:
            channel.write_frame(framing.close_frame(*ANOTHER_CONNECTION))
            channel.end()
            return
        self._channel = channel
        self._cancel_expiry()
        if self._reading_paused:
            channel.pause_reading()
        if self._keepalive is not None:
            channel.keepalive(*self._keepalive)
        if self.state is State.NEW:
            self.state = State.OPEN
            self._write(channel, framing.OPEN)
            self._start_receiver()
        self._flush()
        self._arm_heartbeat()

    def release(self, channel: Channel) -> None:
        """The channel ended its response normally (poll answered, response limit reached)."""
        if channel is not self._channel:
            return
        self._detach()

    def channel_lost(self, channel: Channel) -> None:
        """The client went away under an attached channel: the session is over."""
        if channel is not self._channel:
            return
        self._detach()
        self._close(INTERRUPTED, lost_now=True)

    def channel_writable(self, channel: Channel) -> None:
        """The transport below drained: send what queued up meanwhile."""
        if channel is self._channel:
            self._flush()

    @property
    def holding(self) -> bool:
        """Client messages are waiting for ``resume_reading``."""
        return bool(self._inbound)

    def messages_received(self, messages: list[str]) -> None:
        """Messages the client sent, in order, each handed to the STOMP
        session whole (or held while reading is paused)."""
        self._inbound.extend(messages)
        self._deliver_inbound()

    def when_read(self) -> Deferred[None]:
        """Fires once no client message is held (at once if none is), or at the end."""
        if not self._inbound or self.state is State.CLOSED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._read_waiters.append(d)
        return d

    def _deliver_inbound(self) -> None:
        while self._inbound and not self._reading_paused:
            message = self._inbound.popleft()
            receiver = self._receiver
            if self.state is not State.OPEN or receiver is None:
                self._inbound.clear()
                break
            try:
                receiver.data_received(framing.message_bytes(message))
            except Exception:
                self.log.failure("STOMP session failed on inbound data")
                self._inbound.clear()
                self._close(SERVER_ERROR, lost_now=False)
                break
        if not self._inbound:
            self._all_read()

    def _all_read(self) -> None:
        waiters, self._read_waiters = self._read_waiters, []
        for d in waiters:
            d.callback(None)

    def shutdown(self) -> None:
        """Server shutdown: close now, tell the STOMP session at once, and forget the session."""
        self._close(GO_AWAY, lost_now=True)
        channel = self._channel
        if channel is not None:  # paused: the close frame cannot go out
            self._detach()
            channel.abort()
        self._cancel_heartbeat()
        self._cancel_expiry()
        self._on_gone(self)

    # -- internals

    def _start_receiver(self) -> None:
        try:
            self._receiver = self._receiver_factory(self, self.client)
        except Exception:
            self.log.failure("Could not start a STOMP session")
            self._close(SERVER_ERROR, lost_now=True)

    def _write(self, channel: Channel, frame: bytes) -> None:
        self._last_write = self._clock.seconds()
        channel.write_frame(frame)

    def _flush(self) -> None:
        while self._channel is not None and self._channel.writable:
            channel = self._channel
            if self._pending:
                frame = framing.array_frame(self._pending)
                self._pending = []
                self._pending_bytes = 0
                self._write(channel, frame)
                self._writable()
                continue
            if self.state is State.CLOSED:
                self._detach()
                self._write(channel, self._close_frame)
                channel.end()
            return

    def _serve_closed(self, channel: Channel) -> None:
        if self._channel is None and self._pending:
            # A closed session still delivers what was queued before its close frame.
            self._channel = channel
            self._cancel_expiry()
            self._flush()
            return
        channel.write_frame(self._close_frame)
        channel.end()

    def _detach(self) -> None:
        self._channel = None
        self._cancel_heartbeat()
        if self._expiry is None:
            self._expiry = self._clock.callLater(self._disconnect_delay, self._expire)

    def _close(self, reason: tuple[int, str], *, lost_now: bool) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._close_frame = framing.close_frame(*reason)
        self._cancel_heartbeat()
        self._flush()
        self._notify_lost(now=lost_now)

    def _overflow(self) -> None:
        self._writable()
        self._on_close("slow-consumer")
        self._pending = []
        self._pending_bytes = 0
        self.state = State.CLOSED
        self._close_frame = framing.close_frame(*TOO_SLOW)
        self._cancel_heartbeat()
        channel = self._channel
        if channel is not None:
            self._detach()
            channel.abort()
        self._notify_lost(now=False)

    def _notify_lost(self, *, now: bool) -> None:
        if self._lost:
            return
        if now:
            self._deliver_lost()
        elif self._lost_call is None:
            self._lost_call = self._clock.callLater(0, self._deliver_lost)

    def _deliver_lost(self) -> None:
        self._writable()
        self._inbound.clear()
        self._all_read()
        if self._lost_call is not None and self._lost_call.active():
            self._lost_call.cancel()
        self._lost_call = None
        if self._lost:
            return
        self._lost = True
        receiver, self._receiver = self._receiver, None
        if receiver is None:
            return
        try:
            receiver.connection_lost()
        except Exception:
            self.log.failure("STOMP session failed on connection_lost")

    def _arm_heartbeat(self) -> None:
        if self._heartbeat is None and self._channel is not None and self.state is State.OPEN:
            self._heartbeat = self._clock.callLater(self._heartbeat_delay, self._beat)

    def _beat(self) -> None:
        self._heartbeat = None
        channel = self._channel
        if channel is None or self.state is not State.OPEN:
            return
        idle = self._clock.seconds() - self._last_write
        if idle < self._heartbeat_delay:
            self._heartbeat = self._clock.callLater(self._heartbeat_delay - idle, self._beat)
            return
        if channel.writable:
            self._write(channel, framing.HEARTBEAT)
        self._arm_heartbeat()

    def _cancel_heartbeat(self) -> None:
        if self._heartbeat is not None:
            if self._heartbeat.active():
                self._heartbeat.cancel()
            self._heartbeat = None

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            if self._expiry.active():
                self._expiry.cancel()
            self._expiry = None

    def _expire(self) -> None:
        self._expiry = None
        if self.state is not State.CLOSED:
            self.log.debug("SockJS session timed out without a receiving connection")
            self.state = State.CLOSED
            self._pending = []
            self._pending_bytes = 0
        self._cancel_heartbeat()
        self._deliver_lost()
        self._on_gone(self)
