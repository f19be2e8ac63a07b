"""SockJS session lifecycle on a task.Clock: timeouts, heartbeats, connection_lost exactly once, send buffer."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.outbound import Outbound
from anonchat.stomp.transport import ClientInfo, IFrameTransport
from anonchat.web.sockjs.options import SockJSOptions
from anonchat.web.sockjs.registry import SessionRegistry
from anonchat.web.sockjs.session import SockJSSession, State
from tests.sockjs_support import Recorder, RecorderFactory

CLIENT = ClientInfo("10.0.0.1", "xhr_streaming")


class FakeChannel:
    """A receiving connection that records frames; ``polling`` ends after one frame."""

    def __init__(self, session: SockJSSession, *, polling: bool = False) -> None:
        self.session = session
        self.polling = polling
        self.frames: list[bytes] = []
        self.ended = False
        self.aborted = False
        self.paused = False
        self.reading: list[str] = []  # "pause" / "resume" calls, in order
        self.keepalives: list[tuple[float, float]] = []

    @property
    def writable(self) -> bool:
        return not (self.ended or self.aborted or self.paused)

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.polling:
            self.end()

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.session.release(self)

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading.append("pause")

    def resume_reading(self) -> None:
        self.reading.append("resume")

    def keepalive(self, interval: float, timeout: float) -> None:
        self.keepalives.append((interval, timeout))


class SessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = RecorderFactory()
        self.options = SockJSOptions(heartbeat_delay=25.0, disconnect_delay=5.0, max_send_buffer=100)
        self.registry = SessionRegistry(self.factory, self.clock, self.options)

    def open(self, *, polling: bool = False) -> tuple[SockJSSession, FakeChannel]:
        session = self.registry.create("s1", "xhr_streaming", CLIENT)
        channel = FakeChannel(session, polling=polling)
        session.attach(channel)
        return session, channel

    def test_session_provides_frame_transport_with_its_kind(self) -> None:
        session, _ = self.open()
        self.assertTrue(IFrameTransport.providedBy(session))
        self.assertEqual(session.kind, "xhr_streaming")
        self.assertIs(self.factory.last.transport, session)
        self.assertEqual(self.factory.last.client, CLIENT)

    def test_open_frame_comes_before_anything_the_receiver_sends(self) -> None:
        def greeter(transport: Any, client: ClientInfo) -> Recorder:
            transport.send(Outbound(b"hello"))
            return Recorder(transport, client)

        session = SessionRegistry(greeter, self.clock, self.options).create("s", "xhr", CLIENT)
        channel = FakeChannel(session)
        session.attach(channel)
        self.assertEqual(channel.frames, [b"o", b'a["hello"]'])

    def test_session_without_receiving_connection_expires_after_disconnect_delay(self) -> None:
        session, channel = self.open(polling=True)
        self.clock.advance(4.9)
        self.assertEqual(self.factory.last.lost, 0)
        self.assertIs(self.registry.get("s1"), session)
        self.clock.advance(0.2)
        self.assertEqual(self.factory.last.lost, 1)
        self.assertIsNone(self.registry.get("s1"))

    def test_attached_connection_keeps_session_alive(self) -> None:
        session, channel = self.open()
        self.clock.advance(60)
        self.assertEqual(self.factory.last.lost, 0)
        channel.end()
        self.clock.advance(5)
        self.assertEqual(self.factory.last.lost, 1)

    def test_new_poll_cancels_expiry(self) -> None:
        session, _ = self.open(polling=True)
        self.clock.advance(4)
        session.attach(FakeChannel(session, polling=True))
        self.clock.advance(4)
        self.assertEqual(self.factory.last.lost, 0)

    def test_heartbeat_only_after_idle_delay(self) -> None:
        session, channel = self.open()
        self.clock.advance(20)
        session.send(Outbound(b"x"))
        self.clock.advance(10)
        self.assertEqual(channel.frames, [b"o", b'a["x"]'])
        self.clock.advance(15)
        self.assertEqual(channel.frames[-1], b"h")
        self.clock.advance(25)
        self.assertEqual(channel.frames.count(b"h"), 2)

    def test_server_close_sends_go_away_and_defers_connection_lost(self) -> None:
        session, channel = self.open()
        session.close()
        self.assertEqual(channel.frames[-1], b'c[3000,"Go away!"]')
        self.assertTrue(channel.ended)
        self.assertEqual(self.factory.last.lost, 0)
        self.clock.advance(0)
        self.assertEqual(self.factory.last.lost, 1)

    def test_connection_lost_exactly_once_however_it_ends(self) -> None:
        session, channel = self.open()
        session.close()
        session.close()
        session.channel_lost(channel)
        self.clock.advance(0)
        self.clock.advance(10)
        session.shutdown()
        self.assertEqual(self.factory.last.lost, 1)

    def test_closed_session_answers_close_frame_until_it_expires(self) -> None:
        session, _ = self.open(polling=True)
        session.close()
        for _ in range(2):
            later = FakeChannel(session, polling=True)
            session.attach(later)
            self.assertEqual(later.frames, [b'c[3000,"Go away!"]'])
        self.clock.advance(5)
        self.assertIsNone(self.registry.get("s1"))

    def test_queued_messages_are_delivered_before_the_close_frame(self) -> None:
        session, _ = self.open(polling=True)
        session.send(Outbound(b"RECEIPT"))
        session.close()
        first = FakeChannel(session, polling=True)
        session.attach(first)
        second = FakeChannel(session, polling=True)
        session.attach(second)
        self.assertEqual(first.frames, [b'a["RECEIPT"]'])
        self.assertEqual(second.frames, [b'c[3000,"Go away!"]'])

    def test_send_after_close_is_ignored(self) -> None:
        session, channel = self.open()
        session.close()
        session.send(Outbound(b"late"))
        self.assertNotIn(b'a["late"]', channel.frames)
        self.assertEqual(session.queued_bytes, 0)

    def test_second_receiving_connection_gets_2010_and_first_stays(self) -> None:
        session, first = self.open()
        second = FakeChannel(session)
        session.attach(second)
        self.assertEqual(second.frames, [b'c[2010,"Another connection still open"]'])
        self.assertTrue(second.ended)
        session.send(Outbound(b"x"))
        self.assertEqual(first.frames[-1], b'a["x"]')

    def test_client_abort_ends_session_at_once(self) -> None:
        session, channel = self.open()
        session.channel_lost(channel)
        self.assertEqual(self.factory.last.lost, 1)
        self.assertIs(session.state, State.CLOSED)

    def test_messages_are_batched_while_no_connection_is_attached(self) -> None:
        session, _ = self.open(polling=True)
        session.send(Outbound(b"1"))
        session.send(Outbound(b"2"))
        poll = FakeChannel(session, polling=True)
        session.attach(poll)
        self.assertEqual(poll.frames, [b'a["1","2"]'])

    def test_paused_connection_queues_until_resumed(self) -> None:
        session, channel = self.open()
        channel.paused = True
        session.send(Outbound(b"a"))
        self.assertEqual(session.queued_bytes, 3)
        channel.paused = False
        session.channel_writable(channel)
        self.assertEqual(channel.frames[-1], b'a["a"]')
        self.assertEqual(session.queued_bytes, 0)

    def test_send_buffer_overflow_closes_session_and_aborts_connection(self) -> None:
        session, channel = self.open()
        channel.paused = True
        for _ in range(10):
            session.send(Outbound(b"x" * 20))
        self.assertTrue(channel.aborted)
        self.assertIs(session.state, State.CLOSED)
        self.assertEqual(session.queued_bytes, 0)
        self.clock.advance(0)
        self.assertEqual(self.factory.last.lost, 1)

    def test_send_buffer_overflow_without_poll_leaves_close_frame_for_next_poll(self) -> None:
        session, _ = self.open(polling=True)
        session.send(Outbound(b"x" * 120))
        poll = FakeChannel(session, polling=True)
        session.attach(poll)
        self.assertEqual(poll.frames, [b'c[4500,"Send buffer overflow"]'])

    def test_messages_received_hand_utf8_bytes_to_the_receiver(self) -> None:
        session, _ = self.open()
        session.messages_received(["SEND\n\n안녕 👋\x00", "x"])
        self.assertEqual(self.factory.last.received, ["SEND\n\n안녕 👋\x00".encode("utf-8"), b"x"])

    def test_receiver_failure_closes_session(self) -> None:
        session, channel = self.open()

        def boom(data: bytes) -> None:
            raise RuntimeError("boom")

        self.factory.last.data_received = boom  # type: ignore[method-assign]
        session.messages_received(["a"])
        self.assertEqual(channel.frames[-1], b'c[1011,"Server error"]')
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_close_all_tells_every_session_at_once(self) -> None:
        first, _ = self.open()
        second = self.registry.create("s2", "xhr", CLIENT)
        second.attach(FakeChannel(second, polling=True))
        unnamed = self.registry.create_unnamed("sockjs-websocket", CLIENT)
        ws = FakeChannel(unnamed)
        unnamed.attach(ws)
        self.registry.close_all()
        self.assertEqual([r.lost for r in self.factory.made], [1, 1, 1])
        self.assertEqual(ws.frames[-1], b'c[3000,"Go away!"]')
        self.assertEqual(len(self.registry), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class WritableTests(SynchronousTestCase):
    """``when_writable`` paces bulk sends (a STOMP replay) to the client."""

    setUp = SessionTests.setUp
    open = SessionTests.open

    def test_writable_at_once_when_nothing_is_queued(self) -> None:
        session, _ = self.open()
        self.successResultOf(session.when_writable())

    def test_waits_while_queued_for_the_next_poll_then_fires(self) -> None:
        session, first = self.open(polling=True)  # the open frame ended this poll
        session.send(Outbound(b"x" * 60))  # past the low-water mark (half of the 100-byte buffer)
        waiting = session.when_writable()
        self.assertNoResult(waiting)
        session.attach(FakeChannel(session, polling=True))
        self.successResultOf(waiting)

    def test_room_below_the_low_water_mark_even_while_a_poll_is_awaited(self) -> None:
        """A polling client empties the queue once per round trip: the
        sender may fill half the buffer per poll, not one message."""
        session, first = self.open(polling=True)
        session.send(Outbound(b"x" * 20))
        self.successResultOf(session.when_writable())
        session.send(Outbound(b"y" * 30))  # 54 bytes queued as JSON literals: over half of 100
        self.assertNoResult(session.when_writable())

    def test_fires_when_the_session_ends(self) -> None:
        session, _ = self.open(polling=True)
        session.send(Outbound(b"x" * 60))
        waiting = session.when_writable()
        self.clock.advance(5.1)  # expired: nobody polled
        self.successResultOf(waiting)


class ReadingPauseTests(SynchronousTestCase):
    """``pause_reading``: the STOMP session has too much work waiting."""

    def setUp(self) -> None:
        self.clock = Clock()
        factory = RecorderFactory(pause_on=b"pause")
        self.made = factory.made
        options = SockJSOptions(heartbeat_delay=25.0, disconnect_delay=5.0)
        self.registry = SessionRegistry(factory, self.clock, options)
        self.session = self.registry.create("s1", "xhr", CLIENT)
        self.channel = FakeChannel(self.session)
        self.session.attach(self.channel)

    def test_messages_after_the_pause_are_held_then_delivered_in_order(self) -> None:
        self.session.messages_received(["a", "pause", "b", "c"])
        self.assertEqual(self.made[0].received, [b"a", b"pause"])
        self.assertTrue(self.session.holding)
        read = self.session.when_read()
        self.assertNoResult(read)
        self.session.messages_received(["d"])
        self.session.resume_reading()
        self.assertEqual(self.made[0].received, [b"a", b"pause", b"b", b"c", b"d"])
        self.assertFalse(self.session.holding)
        self.successResultOf(read)

    def test_paused_again_while_delivering_what_was_held(self) -> None:
        self.session.messages_received(["pause", "pause", "x"])
        self.session.resume_reading()
        self.assertEqual(self.made[0].received, [b"pause", b"pause"])
        self.session.resume_reading()
        self.assertEqual(self.made[0].received, [b"pause", b"pause", b"x"])

    def test_pause_and_resume_reach_the_receiving_channel(self) -> None:
        self.session.pause_reading()
        self.session.resume_reading()
        self.assertEqual(self.channel.reading, ["pause", "resume"])

    def test_held_messages_are_dropped_when_the_session_ends(self) -> None:
        self.session.messages_received(["pause", "b"])
        read = self.session.when_read()
        self.session.shutdown()
        self.successResultOf(read)
        self.assertFalse(self.session.holding)
        self.assertEqual(self.made[0].received, [b"pause"])

    def test_keepalive_goes_to_the_channel_and_to_the_next_one(self) -> None:
        polled = self.registry.create("s2", "xhr", CLIENT)
        first = FakeChannel(polled, polling=True)
        polled.attach(first)  # the open frame ends this poll
        polled.keepalive(30.0, 10.0)
        second = FakeChannel(polled)
        polled.attach(second)
        self.assertEqual(second.keepalives, [(30.0, 10.0)])
