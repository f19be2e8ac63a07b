"""One STOMP connection's state machine, transport-agnostic and sans-IO.

Bytes come in through ``data_received``; frames go out through an
``IFrameTransport``; time comes from an injected clock. Every frame that
asks for a receipt gets it in the order the frames arrived, and a SEND's
receipt waits until the application says the message is durable, so a
``DISCONNECT`` receipt also vouches for every earlier ``SEND``.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Any, Callable, Mapping

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat import __version__
from anonchat.logs import ThrottledLog
from anonchat.stomp.application import DestinationError, IStompApplication, SessionRefused
from anonchat.stomp.budget import ConnectionBudget
from anonchat.stomp.frame import HEARTBEAT, Frame, FrameError
from anonchat.stomp.negotiation import SUPPORTED_VERSIONS, heartbeat_intervals, negotiate_version, parse_heartbeat
from anonchat.stomp.outbound import Outbound
from anonchat.stomp.parser import FrameParser
from anonchat.stomp.serializer import serialize
from anonchat.stomp.server_frames import error_frame, receipt_frame
from anonchat.stomp.transport import ClientInfo, IFrameReceiver, IFrameTransport

log = Logger()
closes = ThrottledLog(log)  # one line a minute per reason; all are counted in /metrics

_HEARTBEAT_OUT = Outbound(HEARTBEAT)
_CONNECT_COMMANDS = frozenset({"CONNECT", "STOMP"})


@attrs.frozen
class SessionLimits:
    max_frame: int = 65536
    max_headers: int = 100
    max_header_length: int = 8192
    connect_timeout: float = 10.0
    #: What the server offers in CONNECTED: (can send every, wants every) ms.
    heartbeat: tuple[int, int] = (10000, 10000)
    #: A peer silent for this many expected intervals is dropped.
    heartbeat_grace: float = 3.0
    max_subscriptions: int = 100
    #: Open transactions and the SENDs held in them, per session.
    max_transactions: int = 10
    max_transaction_frames: int = 100
    #: Client frames per second (heart-beats aside), burst twice; 0 = off.
    frame_rate: float = 100.0
    #: SENDs waiting for the application; past it, reading stops.
    max_pending_sends: int = 100
    #: Bytes the application may hold for this client beyond what its
    #: carrier queues (live messages during a replay): the send buffer.
    max_held_bytes: int = 524288
    #: With STOMP heart-beats off: carrier-level ping interval and timeout
    #: (seconds; interval 0 = none).
    keepalive: tuple[float, float] = (30.0, 10.0)

    @property
    def max_inbox(self) -> int:
        """Unparsed bytes held while reading waits (CONNECT being answered,
        too many SENDs waiting): what a paused carrier may still hand over."""
        return 4 * self.max_frame + 65536


class State(Enum):
    AWAITING_CONNECT = "awaiting-connect"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


class _Pending:
    """A frame whose receipt (if any) waits for earlier frames and itself."""

    __slots__ = ("done", "receipt")

    def __init__(self, receipt: str | None, done: bool) -> None:
        self.receipt = receipt
        self.done = done


@implementer(IFrameReceiver)
class StompSession:
    def __init__(
        self,
        transport: IFrameTransport,
        client: ClientInfo,
        app: IStompApplication,
        clock: IReactorTime,
        session_id: str,
        limits: SessionLimits = SessionLimits(),
        on_close: Callable[[str], None] | None = None,
        on_lost: Callable[[StompSession], None] | None = None,
    ) -> None:
        self.transport = transport
        self.client = client
        self.app = app
        self.clock = clock
        self.session_id = session_id
        self.limits = limits
        self.state = State.AWAITING_CONNECT
        self.version = "1.2"
        #: Set by the application at connect time (the chat user).
        self.principal: Any = None
        #: Why the server closed this session, for metrics and logs.
        self.close_reason: str | None = None
        self._on_close = on_close
        self._on_lost = on_lost
        self._parser = FrameParser(
            max_frame=limits.max_frame, max_headers=limits.max_headers, max_header_length=limits.max_header_length
        )
        self.budget = ConnectionBudget(
            clock, frame_rate=limits.frame_rate, max_pending_sends=limits.max_pending_sends,
            max_subscriptions=limits.max_subscriptions, max_held_bytes=limits.max_held_bytes,
        )
        self._subscriptions: dict[str, str] = {}
        self._transactions: dict[str, list[Frame]] = {}
        #: Inbound bytes not parsed yet, and frames parsed but not handled:
        #: both wait while reading is held (see _pump).
        self._inbox = bytearray()
        self._frames: deque[Frame] = deque()
        self._parser_holds_more = False
        self._pumping = False
        self._reading_paused = False
        self._pending: deque[_Pending] = deque()
        self._app_connected = False
        self._sent = False
        self._last_received = clock.seconds()
        self._send_every = 0.0
        self._expect_every = 0.0
        self._timer: IDelayedCall | None = clock.callLater(limits.connect_timeout, self._connect_deadline)
        self._recv_timer: IDelayedCall | None = None

    # -- carrier side ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return
        if self._expect_every:
            self._last_received = self.clock.seconds()
        self._inbox += data
        if len(self._inbox) > self.limits.max_inbox:
            self.protocol_error("too much data", "too much data sent while the server was busy with earlier frames",
                                reason="limit")
            return
        self._pump()

    def _reading_held(self) -> bool:
        """Frames wait while CONNECT is being answered (its version decides
        how the frames behind it are parsed) and while too many SENDs wait."""
        return self.state is State.CONNECTING or self.budget.sends_full

    def _pump(self) -> None:
        """Parse and handle what came in, in order, as far as reading is not
        held; ask the carrier to stop reading while it is."""
        if self._pumping:
            return  # a frame handled below settled synchronously: the loop goes on
        self._pumping = True
        try:
            while self.state is not State.CLOSING and self.state is not State.CLOSED:
                if self._reading_held():
                    if not self._reading_paused:
                        self._reading_paused = True
                        self.transport.pause_reading()
                    return
                if self._frames:
                    self._dispatch(self._frames.popleft())
                elif self._inbox or self._parser_holds_more:
                    self._parse()
                else:
                    break
        finally:
            self._pumping = False
        if self._reading_paused and self.state is not State.CLOSED:
            self._reading_paused = False
            self.transport.resume_reading()

    def _parse(self) -> None:
        data = bytes(self._inbox)
        self._inbox.clear()
        stop_after = _CONNECT_COMMANDS if self.state is State.AWAITING_CONNECT else frozenset()
        try:
            frames = self._parser.feed(data, stop_after)
        except FrameError as e:
            self.protocol_error(e.message, e.detail, reason="malformed-frame")
            return
        self._parser_holds_more = bool(frames) and frames[-1].command in stop_after
        for _ in frames:
            if not self.budget.charge_frame():
                self.protocol_error("too many frames",
                                    f"more than {self.limits.frame_rate:g} frames per second", reason="frame-rate")
                return
        self._frames.extend(frames)

    def connection_lost(self) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._cancel_timers()
        if self._app_connected:
            self._app_connected = False
            self.app.disconnected(self)
        if self._on_lost is not None:
            self._on_lost(self)

    # -- application side -----------------------------------------------

    def deliver(self, out: Outbound) -> None:
        """Send one prepared frame (a broadcast's shared bytes)."""
        if self.state is State.CONNECTED:
            self._sent = True
            self.transport.send(out)

    def when_writable(self) -> Deferred[None]:
        """Fires when the carrier has room for more (see IFrameTransport)."""
        return self.transport.when_writable()

    def send_frame(self, data: bytes) -> None:
        """Send bytes built for this session only."""
        if self.state is State.CONNECTED or self.state is State.CLOSING:
            self._sent = True
            self.transport.send(Outbound(data))

    def protocol_error(self, message: str, detail: str = "", *, receipt_id: str | None = None,
                       extra: tuple[tuple[str, str], ...] = (), reason: str = "protocol-error") -> None:
        """Answer with one ``ERROR`` frame, then close (STOMP's rule)."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return
        self.transport.send(Outbound(error_frame(message, detail or message, self.version,
                                                 receipt_id=receipt_id, extra=extra)))
        self.close(reason)

    def close(self, reason: str) -> None:
        """Server-initiated close: stop reading, flush, close the carrier."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return
        self.state = State.CLOSING
        self.close_reason = reason
        self._cancel_timers()
        closes.info(self.clock, reason, "closing STOMP session {session}: {reason}", session=self.session_id,
                    reason=reason)
        if self._on_close is not None:
            self._on_close(reason)
        self.transport.close()

    @property
    def subscriptions(self) -> Mapping[str, str]:
        return self._subscriptions

    @property
    def is_open(self) -> bool:
        return self.state is State.CONNECTED

    # -- frames -----------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        command = frame.command
        if self.state is State.AWAITING_CONNECT:
            if command == "CONNECT" or command == "STOMP":
                self._on_connect(frame)
            else:
                self.protocol_error("CONNECT expected", f"{command} before CONNECT", reason="no-connect")
            return
        handler = self._handlers.get(command)
        if handler is None:
            self.protocol_error("unexpected frame", f"{command} is not a client frame here", reason="bad-command")
            return
        try:
            handler(self, frame)
        except DestinationError as e:
            self.protocol_error(str(e), receipt_id=frame.get("receipt"), reason="bad-destination")

    def _on_connect(self, frame: Frame) -> None:
        version = negotiate_version(frame.get("accept-version"))
        if version is None:
            self.protocol_error(
                "unsupported STOMP version",
                f"supported versions are {','.join(SUPPORTED_VERSIONS)}",
                extra=(("version", ",".join(SUPPORTED_VERSIONS)),),
                reason="bad-version",
            )
            return
        self.version = version
        self._parser.version = version
        try:
            client_heartbeat = parse_heartbeat(frame.get("heart-beat"))
        except FrameError as e:
            self.protocol_error(e.message, e.detail, reason="malformed-frame")
            return
        self.state = State.CONNECTING
        self._app_connected = True
        d = self.app.connect(self, dict(frame.headers[::-1]))
        d.addCallbacks(self._connected, self._connect_failed, callbackArgs=(client_heartbeat,))

    def _connected(self, extra: Mapping[str, str], client_heartbeat: tuple[int, int]) -> None:
        if self.state is not State.CONNECTING:
            return
        sx, sy = self.limits.heartbeat
        headers = (
            ("version", self.version),
            ("heart-beat", f"{sx},{sy}"),
            ("server", f"anonchat/{__version__}"),
            ("session", self.session_id),
        ) + tuple(extra.items())
        self.state = State.CONNECTED
        self.send_frame(serialize(Frame("CONNECTED", headers), self.version))
        self._cancel_timers()
        send_ms, expect_ms = heartbeat_intervals(client_heartbeat, self.limits.heartbeat)
        if send_ms:
            self._send_every = send_ms / 1000.0
            self._timer = self.clock.callLater(self._send_every / 2, self._send_tick)
        if expect_ms:
            self._expect_every = expect_ms / 1000.0
            self._last_received = self.clock.seconds()
            self._recv_timer = self.clock.callLater(self._expect_every, self._recv_tick)
        elif self.limits.keepalive[0] > 0:
            # No heart-beats from the client: a vanished peer (NAT timeout,
            # sleeping laptop) would otherwise hold its nickname forever.
            self.transport.keepalive(*self.limits.keepalive)
        self._pump()

    def _connect_failed(self, failure: Failure) -> None:
        detail, message = "the server could not open this session", "connection refused"
        if isinstance(failure.value, SessionRefused):
            detail, message = str(failure.value), failure.value.message
        else:
            log.failure("application failed to open a STOMP session", failure=failure)
        if self.state is State.CONNECTING:
            self.protocol_error(message, detail, reason="connect-failed")

    def _on_send(self, frame: Frame) -> None:
        destination = self._require(frame, "destination")
        if destination is None:
            return
        transaction = frame.get("transaction")
        if transaction is not None:
            held = self._transactions.get(transaction)
            if held is None:
                self.protocol_error("unknown transaction", f"no transaction {transaction!r}", reason="bad-transaction")
            elif len(held) >= self.limits.max_transaction_frames:
                self.protocol_error("transaction too large", reason="limit")
            else:
                held.append(frame)
            return
        self._send(frame, destination)

    def _send(self, frame: Frame, destination: str) -> None:
        receipt = frame.get("receipt")
        pending = _Pending(receipt, False)
        self.budget.send_started()
        d = self.app.send(self, destination, frame.body, receipt)
        self._pending.append(pending)

        def settled(accepted: object) -> None:
            self.budget.send_settled()
            pending.done = True
            if accepted is not True:
                pending.receipt = None
            self._drain()
            if self._reading_paused:
                self._pump()

        def failed(failure: Failure) -> None:
            log.failure("SEND handling failed", failure=failure)
            settled(False)

        d.addCallbacks(settled, failed)

    def _on_subscribe(self, frame: Frame) -> None:
        destination = self._require(frame, "destination")
        if destination is None:
            return
        subscription = frame.get("id")
        if subscription is None:
            if self.version != "1.0":
                self._require(frame, "id")
                return
            subscription = destination
        if subscription in self._subscriptions:
            self.protocol_error("duplicate subscription id", f"subscription {subscription!r} exists", reason="bad-subscription")
            return
        if not self.budget.may_subscribe(len(self._subscriptions)):
            self.protocol_error("too many subscriptions", reason="limit")
            return
        self.app.subscribe(self, subscription, destination, dict(frame.headers[::-1]))
        self._subscriptions[subscription] = destination
        self._ack(frame)

    def _on_unsubscribe(self, frame: Frame) -> None:
        subscription = frame.get("id")
        if subscription is None and self.version == "1.0":
            destination = frame.get("destination")
            subscription = next((s for s, d in self._subscriptions.items() if d == destination), None)
            if destination is None:
                self._require(frame, "id")
                return
        elif subscription is None:
            self._require(frame, "id")
            return
        if subscription is not None:
            destination = self._subscriptions.pop(subscription, None)
            if destination is not None:
                self.app.unsubscribe(self, subscription, destination)
        self._ack(frame)

    def _on_ack(self, frame: Frame) -> None:
        # Delivery is at-most-once from the client's view (auto ack); we
        # accept ACK/NACK so clients using client acks keep working.
        self._ack(frame)

    def _on_begin(self, frame: Frame) -> None:
        transaction = self._require(frame, "transaction")
        if transaction is None:
            return
        if transaction in self._transactions:
            self.protocol_error("transaction already open", f"transaction {transaction!r}", reason="bad-transaction")
        elif len(self._transactions) >= self.limits.max_transactions:
            self.protocol_error("too many transactions", reason="limit")
        else:
            self._transactions[transaction] = []
            self._ack(frame)

    def _on_commit(self, frame: Frame) -> None:
        held = self._end_transaction(frame)
        if held is None:
            return
        for send in held:
            destination = send.get("destination")
            assert destination is not None
            self._send(send, destination)
            if self.state is not State.CONNECTED:
                return
        self._ack(frame)

    def _on_abort(self, frame: Frame) -> None:
        if self._end_transaction(frame) is not None:
            self._ack(frame)

    def _end_transaction(self, frame: Frame) -> list[Frame] | None:
        transaction = self._require(frame, "transaction")
        if transaction is None:
            return None
        held = self._transactions.pop(transaction, None)
        if held is None:
            self.protocol_error("unknown transaction", f"no transaction {transaction!r}", reason="bad-transaction")
        return held

    def _on_disconnect(self, frame: Frame) -> None:
        self._ack(frame)
        self.state = State.CLOSING
        self.close_reason = "disconnect"
        self._cancel_timers()
        self._drain()

    _handlers: dict[str, Callable[[StompSession, Frame], None]] = {
        "SEND": _on_send,
        "SUBSCRIBE": _on_subscribe,
        "UNSUBSCRIBE": _on_unsubscribe,
        "ACK": _on_ack,
        "NACK": _on_ack,
        "BEGIN": _on_begin,
        "COMMIT": _on_commit,
        "ABORT": _on_abort,
        "DISCONNECT": _on_disconnect,
    }

    # -- receipts ---------------------------------------------------------

    def _require(self, frame: Frame, header: str) -> str | None:
        value = frame.get(header)
        if value is None:
            self.protocol_error(f"missing {header} header", f"{frame.command} needs a {header} header",
                                receipt_id=frame.get("receipt"), reason="missing-header")
        return value

    def _ack(self, frame: Frame) -> None:
        """A frame handled at once: its receipt still waits its turn."""
        receipt = frame.get("receipt")
        if receipt is not None:
            self._pending.append(_Pending(receipt, True))
            self._drain()

    def _drain(self) -> None:
        pending = self._pending
        while pending and pending[0].done:
            receipt = pending.popleft().receipt
            if receipt is not None and self.state is not State.CLOSED:
                self.send_frame(receipt_frame(receipt, self.version))
        if not pending and self.state is State.CLOSING and self.close_reason == "disconnect":
            self.transport.close()

    # -- timers -----------------------------------------------------------

    def _connect_deadline(self) -> None:
        self._timer = None
        if self.state is State.AWAITING_CONNECT or self.state is State.CONNECTING:
            self.protocol_error("CONNECT timeout", "no CONNECT frame in time", reason="connect-timeout")

    def _send_tick(self) -> None:
        # Ticks come twice an interval: one with nothing sent since the
        # last one sends the EOL, so an idle gap never exceeds the interval.
        if self._sent:
            self._sent = False
        else:
            self.transport.send(_HEARTBEAT_OUT)
            self._sent = True
        self._timer = self.clock.callLater(self._send_every / 2, self._send_tick)

    def _recv_tick(self) -> None:
        silent = self.clock.seconds() - self._last_received
        limit = self._expect_every * self.limits.heartbeat_grace
        if silent > limit:
            self._recv_timer = None
            self.close("heartbeat-timeout")
            return
        self._recv_timer = self.clock.callLater(min(self._expect_every, limit - silent + 0.001), self._recv_tick)

    def _cancel_timers(self) -> None:
        for timer in (self._timer, self._recv_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._recv_timer = None
