"""The STOMP session state machine, on a fake transport and task.Clock."""

from __future__ import annotations

from typing import Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from anonchat.stomp.application import DestinationError, IStompApplication
from anonchat.stomp.session import SessionLimits, State, StompSession
from anonchat.stomp.transport import ClientInfo
from tests.stompfakes import FakeTransport, frame


@implementer(IStompApplication)
class FakeApp:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.send_results: list[Deferred[bool]] = []
        self.hold_sends = False
        self.hold_connect: Deferred[Mapping[str, str]] | None = None

    def connect(self, session: StompSession, headers: Mapping[str, str]) -> Deferred[Mapping[str, str]]:
        self.events.append(("connect",))
        if self.hold_connect is not None:
            return self.hold_connect
        return succeed({"user-name": "익명-12345"})

    def subscribe(self, session: StompSession, subscription: str, destination: str, headers: Mapping[str, str]) -> None:
        if destination.startswith("/bad"):
            raise DestinationError(f"unknown destination {destination}")
        self.events.append(("subscribe", subscription, destination))

    def unsubscribe(self, session: StompSession, subscription: str, destination: str) -> None:
        self.events.append(("unsubscribe", subscription))

    def send(self, session: StompSession, destination: str, body: bytes, receipt: str | None) -> Deferred[bool]:
        if destination.startswith("/bad"):
            raise DestinationError(f"cannot send to {destination}")
        self.events.append(("send", destination, body.decode()))
        if self.hold_sends:
            d: Deferred[bool] = Deferred()
            self.send_results.append(d)
            return d
        return succeed(True)

    def disconnected(self, session: StompSession) -> None:
        self.events.append(("disconnected",))


class SessionTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.app = FakeApp()
        self.transport = FakeTransport()
        self.session = self.make_session()

    def make_session(self, **limits: object) -> StompSession:
        return StompSession(self.transport, ClientInfo("127.0.0.1", "fake"), self.app, self.clock, "s1",
                            SessionLimits(**limits))  # type: ignore[arg-type]

    def connect(self, **headers: str) -> None:
        headers.setdefault("accept_version", "1.2")
        self.session.data_received(frame("CONNECT", **headers))
        [connected] = self.transport.take()
        self.assertEqual(connected.command, "CONNECTED")

    def assert_error_and_closed(self, message_part: str) -> None:
        frames = self.transport.take()
        self.assertEqual([f.command for f in frames], ["ERROR"])
        self.assertIn(message_part, frames[0].get("message") or "")
        self.assertTrue(self.transport.closed)


class ConnectTests(SessionTestCase):
    def test_connected_carries_version_heartbeat_server_session_and_user_name(self) -> None:
        self.session.data_received(frame("CONNECT", accept_version="1.0,1.1,1.2", host="x"))
        [connected] = self.transport.take()
        self.assertEqual(connected.command, "CONNECTED")
        self.assertEqual(connected.get("version"), "1.2")
        self.assertEqual(connected.get("heart-beat"), "10000,10000")
        self.assertTrue((connected.get("server") or "").startswith("anonchat/"))
        self.assertEqual(connected.get("session"), "s1")
        self.assertEqual(connected.get("user-name"), "익명-12345")

    def test_stomp_command_opens_a_session_too(self) -> None:
        self.session.data_received(frame("STOMP", accept_version="1.2"))
        self.assertEqual([f.command for f in self.transport.take()], ["CONNECTED"])

    def test_absent_accept_version_means_1_0(self) -> None:
        self.session.data_received(frame("CONNECT"))
        [connected] = self.transport.take()
        self.assertEqual(connected.get("version"), "1.0")
        self.assertEqual(self.session.version, "1.0")

    def test_highest_common_version_is_chosen(self) -> None:
        self.session.data_received(frame("CONNECT", accept_version="1.1,1.0"))
        self.assertEqual(self.transport.take()[0].get("version"), "1.1")

    def test_no_common_version_is_an_error_listing_ours(self) -> None:
        self.session.data_received(frame("CONNECT", accept_version="2.0,3.1"))
        [error] = self.transport.take()
        self.assertEqual(error.command, "ERROR")
        self.assertEqual(error.get("version"), "1.0,1.1,1.2")
        self.assertTrue(self.transport.closed)
        self.assertEqual(self.app.events, [])

    def test_frame_before_connect_is_an_error(self) -> None:
        self.session.data_received(frame("SEND", b"{}", destination="/app/chat.sendMessage"))
        self.assert_error_and_closed("CONNECT")
        self.session.connection_lost()
        self.assertEqual(self.app.events, [])

    def test_no_connect_within_the_deadline_closes(self) -> None:
        self.clock.advance(9.9)
        self.assertFalse(self.transport.closed)
        self.clock.advance(0.2)
        self.assert_error_and_closed("timeout")

    def test_connect_in_time_cancels_the_deadline(self) -> None:
        self.connect()
        self.clock.advance(11)
        self.assertFalse(self.transport.closed)

    def test_frames_sent_with_connect_wait_for_connected(self) -> None:
        self.app.hold_connect = Deferred()
        self.session.data_received(
            frame("CONNECT", accept_version="1.2") + frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", receipt="r1")
        )
        self.assertEqual(self.transport.take(), [])
        self.app.hold_connect.callback({"user-name": "n"})
        self.assertEqual([f.command for f in self.transport.take()], ["CONNECTED", "RECEIPT"])
        self.assertIn(("subscribe", "sub-0", "/topic/chat"), self.app.events)

    def test_malformed_heartbeat_is_an_error(self) -> None:
        self.session.data_received(frame("CONNECT", accept_version="1.2", heart_beat="soon"))
        self.assert_error_and_closed("heart-beat")


class FrameRuleTests(SessionTestCase):
    def test_malformed_frame_gets_one_error_then_close(self) -> None:
        self.connect()
        self.session.data_received(b"SEND\ndestination\n\n\x00")
        self.assert_error_and_closed("")
        self.session.data_received(frame("SEND", b"{}", destination="/app/x"))
        self.assertEqual(self.transport.take(), [])

    def test_frame_over_the_size_limit_is_an_error(self) -> None:
        self.transport = FakeTransport()
        self.session = self.make_session(max_frame=1024)
        self.connect()
        self.session.data_received(frame("SEND", b"x" * 2000, destination="/app/chat.sendMessage"))
        self.assert_error_and_closed("")

    def test_unknown_destination_is_a_protocol_error(self) -> None:
        self.connect()
        self.session.data_received(frame("SUBSCRIBE", id="0", destination="/bad/place", receipt="r"))
        frames = self.transport.take()
        self.assertEqual(frames[0].command, "ERROR")
        self.assertEqual(frames[0].get("receipt-id"), "r")
        self.assertTrue(self.transport.closed)

    def test_send_without_destination_is_an_error(self) -> None:
        self.connect()
        self.session.data_received(frame("SEND", b"{}"))
        self.assert_error_and_closed("destination")

    def test_subscribe_without_id_is_an_error_in_1_2(self) -> None:
        self.connect()
        self.session.data_received(frame("SUBSCRIBE", destination="/topic/chat"))
        self.assert_error_and_closed("id")

    def test_subscribe_without_id_uses_the_destination_in_1_0(self) -> None:
        self.session.data_received(frame("CONNECT"))
        self.transport.take()
        self.session.data_received(frame("SUBSCRIBE", version="1.0", destination="/topic/chat"))
        self.assertIn(("subscribe", "/topic/chat", "/topic/chat"), self.app.events)

    def test_duplicate_subscription_id_is_an_error(self) -> None:
        self.connect()
        self.session.data_received(frame("SUBSCRIBE", id="0", destination="/topic/chat"))
        self.session.data_received(frame("SUBSCRIBE", id="0", destination="/topic/chat.users"))
        self.assert_error_and_closed("duplicate")

    def test_subscriptions_are_limited(self) -> None:
        self.transport = FakeTransport()
        self.session = self.make_session(max_subscriptions=2)
        self.connect()
        for n in range(3):
            self.session.data_received(frame("SUBSCRIBE", id=str(n), destination="/topic/chat"))
        self.assert_error_and_closed("too many")

    def test_unsubscribe_forgets_the_subscription(self) -> None:
        self.connect()
        self.session.data_received(frame("SUBSCRIBE", id="a", destination="/topic/chat"))
        self.session.data_received(frame("UNSUBSCRIBE", id="a", receipt="r"))
        self.assertIn(("unsubscribe", "a"), self.app.events)
        self.assertEqual(self.session.subscriptions, {})
        self.assertEqual(self.transport.take()[0].get("receipt-id"), "r")

    def test_ack_and_nack_are_accepted(self) -> None:
        self.connect()
        self.session.data_received(frame("ACK", id="m1", receipt="r1") + frame("NACK", id="m2", receipt="r2"))
        self.assertEqual([f.get("receipt-id") for f in self.transport.take()], ["r1", "r2"])
        self.assertFalse(self.transport.closed)


class ReceiptTests(SessionTestCase):
    def test_send_receipt_waits_until_the_application_made_it_durable(self) -> None:
        self.connect()
        self.app.hold_sends = True
        self.session.data_received(frame("SEND", b'{"content":"hi"}', destination="/app/chat.sendMessage", receipt="m1"))
        self.assertEqual(self.transport.take(), [])
        self.app.send_results[0].callback(True)
        [receipt] = self.transport.take()
        self.assertEqual((receipt.command, receipt.get("receipt-id")), ("RECEIPT", "m1"))

    def test_refused_send_gets_no_receipt(self) -> None:
        self.connect()
        self.app.hold_sends = True
        self.session.data_received(frame("SEND", b"x", destination="/app/chat.sendMessage", receipt="m1"))
        self.app.send_results[0].callback(False)
        self.assertEqual(self.transport.take(), [])
        self.assertFalse(self.transport.closed)

    def test_receipts_keep_frame_order(self) -> None:
        self.connect()
        self.app.hold_sends = True
        self.session.data_received(
            frame("SEND", b"1", destination="/app/chat.sendMessage", receipt="a")
            + frame("SUBSCRIBE", id="0", destination="/topic/chat", receipt="b")
            + frame("SEND", b"2", destination="/app/chat.sendMessage", receipt="c")
        )
        self.app.send_results[1].callback(True)
        self.assertEqual(self.transport.take(), [])
        self.app.send_results[0].callback(True)
        self.assertEqual([f.get("receipt-id") for f in self.transport.take()], ["a", "b", "c"])

    def test_disconnect_receipt_comes_after_pending_sends_then_close(self) -> None:
        self.connect()
        self.app.hold_sends = True
        self.session.data_received(frame("SEND", b"1", destination="/app/chat.sendMessage", receipt="a")
                                   + frame("DISCONNECT", receipt="bye"))
        self.assertFalse(self.transport.closed)
        self.app.send_results[0].callback(True)
        self.assertEqual([f.get("receipt-id") for f in self.transport.take()], ["a", "bye"])
        self.assertTrue(self.transport.closed)

    def test_disconnect_without_receipt_closes(self) -> None:
        self.connect()
        self.session.data_received(frame("DISCONNECT"))
        self.assertTrue(self.transport.closed)
        self.session.connection_lost()
        self.assertEqual(self.app.events[-1], ("disconnected",))

    def test_disconnected_is_called_exactly_once(self) -> None:
        self.connect()
        self.session.data_received(frame("DISCONNECT", receipt="x"))
        self.session.connection_lost()
        self.session.connection_lost()
        self.assertEqual(self.app.events.count(("disconnected",)), 1)


class TransactionTests(SessionTestCase):
    def test_sends_in_a_transaction_happen_at_commit(self) -> None:
        self.connect()
        self.session.data_received(frame("BEGIN", transaction="t"))
        self.session.data_received(frame("SEND", b"1", destination="/app/chat.sendMessage", transaction="t"))
        self.assertNotIn(("send", "/app/chat.sendMessage", "1"), self.app.events)
        self.session.data_received(frame("COMMIT", transaction="t", receipt="c"))
        self.assertIn(("send", "/app/chat.sendMessage", "1"), self.app.events)
        self.assertEqual(self.transport.take()[0].get("receipt-id"), "c")

    def test_abort_drops_the_held_sends(self) -> None:
        self.connect()
        self.session.data_received(frame("BEGIN", transaction="t")
                                   + frame("SEND", b"1", destination="/app/chat.sendMessage", transaction="t")
                                   + frame("ABORT", transaction="t"))
        self.assertFalse(any(e[0] == "send" for e in self.app.events))

    def test_commit_of_unknown_transaction_is_an_error(self) -> None:
        self.connect()
        self.session.data_received(frame("COMMIT", transaction="nope"))
        self.assert_error_and_closed("transaction")


class HeartbeatTests(SessionTestCase):
    def test_server_sends_eol_when_idle_for_the_interval(self) -> None:
        self.connect(heart_beat="0,1000")
        self.assertEqual(self.transport.heartbeats(), 0)
        self.clock.pump([5.0] * 20)
        beats = self.transport.heartbeats()
        self.assertGreaterEqual(beats, 9)
        self.assertLessEqual(beats, 11)

    def test_server_heartbeat_interval_is_the_slower_wish(self) -> None:
        self.connect(heart_beat="0,1000")
        # We offer 10 s, the client wants 1 s: we send every 10 s.
        self.clock.pump([0.5] * 20)
        self.assertLessEqual(self.transport.heartbeats(), 11)
        self.transport.sent.clear()
        self.transport = FakeTransport()
        self.session = self.make_session(heartbeat=(500, 500))
        self.connect(heart_beat="0,2000")
        self.clock.pump([0.5] * 8)
        self.assertEqual(self.transport.heartbeats(), 2)

    def test_no_heartbeats_when_the_client_wants_none(self) -> None:
        self.connect(heart_beat="0,0")
        self.clock.pump([1.0] * 60)
        self.assertEqual(self.transport.heartbeats(), 0)
        self.assertFalse(self.transport.closed)

    def test_traffic_counts_as_a_heartbeat(self) -> None:
        self.transport = FakeTransport()
        self.session = self.make_session(heartbeat=(1000, 1000))
        self.connect(heart_beat="0,1000")
        for _ in range(10):
            self.clock.advance(0.4)
            self.session.send_frame(frame("MESSAGE", b"x", destination="/topic/chat"))
        self.assertEqual(self.transport.heartbeats(), 0)

    def test_silent_client_is_dropped_after_three_intervals(self) -> None:
        self.connect(heart_beat="1000,0")  # client sends every 10 s (our wish)
        self.clock.advance(29)
        self.assertFalse(self.transport.closed)
        self.clock.pump([1.0] * 12)
        self.assertTrue(self.transport.closed)
        self.assertEqual(self.session.close_reason, "heartbeat-timeout")

    def test_client_heartbeats_keep_the_connection(self) -> None:
        self.connect(heart_beat="1000,0")
        for _ in range(10):
            self.clock.advance(9)
            self.session.data_received(b"\n")
        self.assertFalse(self.transport.closed)

    def test_timers_stop_when_the_connection_is_lost(self) -> None:
        self.connect(heart_beat="1000,1000")
        self.session.connection_lost()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIs(self.session.state, State.CLOSED)


class BudgetTests(SessionTestCase):
    """The per-connection abuse budget: frames, SENDs waiting, pipelining."""

    def test_frames_past_the_budget_get_an_error_and_a_close(self) -> None:
        self.session = self.make_session(frame_rate=10.0)
        self.connect()
        self.session.data_received(b"".join(frame("SUBSCRIBE", id=f"s{i}", destination="/topic/x") for i in range(19)))
        self.assertFalse(self.transport.closed)  # connect + 19 = the burst of 20
        self.session.data_received(frame("UNSUBSCRIBE", id="s0"))
        self.assert_error_and_closed("too many frames")

    def test_the_frame_budget_refills_with_time(self) -> None:
        self.session = self.make_session(frame_rate=10.0)
        self.connect()
        for second in range(5):
            self.session.data_received(b"".join(frame("ACK", id=f"{second}-{i}") for i in range(10)))
            self.clock.advance(1)
        self.assertFalse(self.transport.closed)

    def test_heartbeats_cost_nothing(self) -> None:
        self.session = self.make_session(frame_rate=1.0)
        self.connect()
        self.session.data_received(b"\n" * 1000)
        self.assertFalse(self.transport.closed)

    def test_too_many_waiting_sends_stop_reading_until_they_settle(self) -> None:
        self.session = self.make_session(max_pending_sends=3)
        self.app.hold_sends = True
        self.connect()
        self.session.data_received(b"".join(frame("SEND", b"x", destination="/app/a", receipt=f"r{i}")
                                            for i in range(5)))
        self.assertEqual(len(self.app.send_results), 3)
        self.assertTrue(self.transport.paused)
        self.app.send_results[0].callback(True)
        # one settled: one more is read, and reading is full again
        self.assertEqual(len(self.app.send_results), 4)
        self.assertTrue(self.transport.paused)
        for d in self.app.send_results[1:]:
            d.callback(True)
        self.assertEqual(len(self.app.send_results), 5)
        self.app.send_results[4].callback(True)
        self.assertFalse(self.transport.paused)
        receipts = [f.get("receipt-id") for f in self.transport.take() if f.command == "RECEIPT"]
        self.assertEqual(receipts, [f"r{i}" for i in range(5)])

    def test_bytes_held_while_reading_waits_are_bounded(self) -> None:
        self.session = self.make_session(max_pending_sends=1, max_frame=1024)
        self.app.hold_sends = True
        self.connect()
        self.session.data_received(frame("SEND", b"x", destination="/app/a"))
        self.assertTrue(self.transport.paused)
        self.session.data_received(frame("SEND", b"y" * 900, destination="/app/a") * 80)
        self.assert_error_and_closed("too much data")

    def test_frames_pipelined_behind_connect_are_parsed_with_the_negotiated_version(self) -> None:
        """STOMP 1.0 has no header escapes: ``a\\b`` is a plain id there."""
        self.app.hold_connect = Deferred()
        self.session.data_received(frame("CONNECT", accept_version="1.0")
                                   + b"SUBSCRIBE\nid:a\\b\ndestination:/topic/x\n\n\0")
        self.app.hold_connect.callback({"user-name": "x"})
        self.assertFalse(self.transport.closed)
        self.assertIn(("subscribe", "a\\b", "/topic/x"), self.app.events)

    def test_no_heartbeats_from_the_client_asks_the_carrier_to_ping(self) -> None:
        self.connect(heart_beat="0,0")
        self.assertEqual(self.transport.keepalive_asked, (30.0, 10.0))

    def test_client_heartbeats_need_no_carrier_pings(self) -> None:
        self.connect(heart_beat="10000,10000")
        self.assertIsNone(self.transport.keepalive_asked)
