"""HistoryReplay through the room: bounds, the one-replay rule, and the
races with the client (re-subscribe, unsubscribe) and a stalled socket."""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.internet.defer import Deferred, succeed

from anonchat.chat.message import ChatMessage, MessageType
from anonchat.chat.room import ChatRoom, RoomConfig
from anonchat.stomp.session import SessionLimits, StompSession
from anonchat.stomp.transport import ClientInfo
from anonchat.store.memory import InMemoryBuffer
from tests.stompfakes import FakeTransport, frame
from tests.test_chat_room import Client, FakeArchive, RoomTestCase


class StallingTransport(FakeTransport):
    """A client whose socket fills up: when_writable waits until ``drain``."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = False
        self._waiting: list[Deferred[None]] = []

    def when_writable(self) -> Deferred[None]:
        if not self.stalled:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def drain(self) -> None:
        self.stalled = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class SmallBufferTransport(StallingTransport):
    """A socket with little room: full again after every write until the
    client reads (``drain``)."""

    def send(self, out: Any) -> None:
        super().send(out)
        self.stalled = True


class ReplayTestCase(RoomTestCase):
    max_replay = 1000
    max_held_bytes = 524288

    def setUp(self) -> None:
        super().setUp()
        self.buffer = InMemoryBuffer(self.clock, retain=5)
        self.archived: list[Any] = []
        self.room = ChatRoom(self.buffer, self.presence, self.clock,
                             RoomConfig(rate_limit=0, max_replay=self.max_replay),
                             rng=random.Random(9), archive=FakeArchive(self.archived))
        self.buffer.add_listener(self.room.on_feed)

    def append(self, n: int, flush: bool = True) -> list[str]:
        ids = []
        for i in range(n):
            self.clock.advance(0.001)
            ids.append(self.successResultOf(self.buffer.append(
                ChatMessage(MessageType.CHAT, "익명-10000", f"m{len(self.archived) + i}", 1))).id)
        if flush:
            batch = self.successResultOf(self.buffer.claim_batch(10_000))
            self.archived.extend(batch)
            self.successResultOf(self.buffer.acknowledge([m.id for m in batch]))
        return ids

    def stalled_client(self, transport: StallingTransport | None = None) -> tuple[Client, StallingTransport]:
        """A connected client on ``transport`` (a StallingTransport, not
        stalled yet), with this test's held-bytes bound."""
        client = Client.__new__(Client)
        transport = transport or StallingTransport()
        client.transport = transport
        client.session = StompSession(transport, ClientInfo("127.0.0.1", "fake"), self.room, self.clock,
                                      f"st{len(self.clients)}", SessionLimits(max_held_bytes=self.max_held_bytes))
        self.clients.append(client)
        client.session.data_received(frame("CONNECT", accept_version="1.2", heart_beat="0,0"))
        transport.take()
        transport.stalled = False
        return client, transport

    def resume(self, client: Client, since: str, sub: str = "sub-0") -> None:
        client.feed(frame("SUBSCRIBE", id=sub, destination="/topic/chat", **{"x_since_id": since}))

    def chats(self, client: Client) -> list[str]:
        client.pull()
        return [m["content"] for m in client.messages() if m["type"] == "CHAT"]


class BoundTests(ReplayTestCase):
    max_replay = 10

    def test_a_client_that_missed_more_gets_the_newest_and_a_gap_flag(self) -> None:
        first = self.append(1)[0]
        bob = Client(self)
        self.append(30)
        self.resume(bob, first)
        frames = [f for f in bob.pull() if f.command == "MESSAGE"]
        replayed = [json.loads(f.body)["content"] for f in frames]
        self.assertEqual(replayed[:10], [f"m{n}" for n in range(21, 31)])
        self.assertEqual(frames[0].get("x-resume-gap"), "true")
        self.assertEqual([f.get("x-resume-gap") for f in frames[1:]], [None] * (len(frames) - 1))

    def test_the_gap_flag_also_when_the_buffer_alone_holds_too_many(self) -> None:
        first = self.append(1)[0]
        self.append(25, flush=False)
        bob = Client(self)
        self.resume(bob, first)
        frames = [f for f in bob.pull() if f.command == "MESSAGE"]
        # the newest ten: bob's own JOIN is the last of them
        self.assertEqual([json.loads(f.body)["content"] for f in frames][:10], [f"m{n}" for n in range(17, 26)] + [""])
        self.assertEqual(frames[0].get("x-resume-gap"), "true")

    def test_no_gap_flag_when_everything_missed_fits(self) -> None:
        first = self.append(1)[0]
        bob = Client(self)
        self.append(9)  # with bob's JOIN: ten missed, as many as a replay gives
        self.resume(bob, first)
        frames = [f for f in bob.pull() if f.command == "MESSAGE"]
        self.assertEqual([json.loads(f.body)["content"] for f in frames], [""] + [f"m{n}" for n in range(1, 10)])
        self.assertIsNone(frames[0].get("x-resume-gap"))


class OneReplayTests(ReplayTestCase):
    def test_a_second_resume_while_one_runs_is_a_protocol_error(self) -> None:
        first = self.append(1)[0]
        self.append(20)
        bob, transport = self.stalled_client()
        transport.stalled = True
        self.resume(bob, first, "a")
        self.resume(bob, first, "b")
        self.assertEqual(transport.take()[-1].command, "ERROR")
        self.assertTrue(transport.closed)

    def test_unsubscribe_cancels_and_an_immediate_resubscribe_with_the_same_id_loses_nothing(self) -> None:
        """A React component that remounts with a fixed sub-0."""
        first = self.append(1)[0]
        self.append(20)
        bob, transport = self.stalled_client()
        transport.stalled = True
        self.resume(bob, first)
        bob.feed(frame("UNSUBSCRIBE", id="sub-0"))
        self.resume(bob, first)
        alice = Client(self)
        alice.say({"content": "live"})
        transport.drain()
        alice.say({"content": "later"})
        self.assertEqual(self.chats(bob), [f"m{n}" for n in range(1, 21)] + ["live", "later"])
        self.assertFalse(transport.closed)

    def test_a_finished_replay_frees_the_slot(self) -> None:
        first = self.append(1)[0]
        self.append(3)
        bob = Client(self)
        self.resume(bob, first, "a")
        self.resume(bob, first, "b")
        self.assertFalse(bob.transport.closed)
        self.assertEqual(self.chats(bob), [f"m{n}" for n in range(1, 4)] * 2)


class PacingTests(ReplayTestCase):
    """The live messages held during a replay are handed over at the pace
    the socket takes them, like the replay itself: a client whose socket
    is momentarily full when its replay ends is not sent them all at once
    (a real carrier counts such a burst against the client and cuts it)."""

    def resume_behind_a_full_socket(self, history: int) -> tuple[Client, StallingTransport, Client]:
        """Bob resumes over ``history`` messages on a socket that is full
        (and fills again after every write); alice is there to talk."""
        first = self.append(1)[0]
        self.append(history)
        bob, transport = self.stalled_client(SmallBufferTransport())
        transport.stalled = True
        self.resume(bob, first)
        return bob, transport, Client(self)

    def test_held_messages_wait_for_the_socket_after_the_replay(self) -> None:
        bob, transport, alice = self.resume_behind_a_full_socket(10)
        for n in range(5):
            alice.say({"content": f"held{n}"})
        transport.drain()  # room for the replay's chunk; full again after it
        self.assertEqual(self.chats(bob), [f"m{n}" for n in range(1, 11)])
        alice.say({"content": "held5"})
        transport.drain()
        self.assertEqual(self.chats(bob), [f"held{n}" for n in range(6)])
        transport.drain()  # nothing was waiting: bob is live now
        alice.say({"content": "live"})
        self.assertEqual(self.chats(bob), ["live"])
        self.assertFalse(transport.closed)
        self.assertEqual(self.room._replays, {})
        self.assertEqual(bob.session.budget.held_bytes, 0)

    def test_a_long_hand_over_goes_in_chunks_in_order(self) -> None:
        bob, transport, alice = self.resume_behind_a_full_socket(3)
        for n in range(150):
            alice.say({"content": f"h{n}"})
        writes = []  # what each drain let through: one write each
        for _ in range(10):
            transport.drain()
            writes.append(self.chats(bob))
        alice.say({"content": "live"})
        got = [m for write in writes for m in write] + self.chats(bob)
        self.assertEqual(got, ["m1", "m2", "m3"] + [f"h{n}" for n in range(150)] + ["live"])
        # the replay, then the 151 held (alice's JOIN first) in writes of at most 64
        self.assertEqual([len(w) for w in writes if w], [3, 63, 64, 23])
        self.assertFalse(transport.closed)

    def test_unsubscribe_during_the_hand_over_stops_it(self) -> None:
        bob, transport, alice = self.resume_behind_a_full_socket(3)
        for n in range(100):
            alice.say({"content": f"h{n}"})
        transport.drain()
        transport.drain()
        bob.feed(frame("UNSUBSCRIBE", id="sub-0"))
        self.chats(bob)
        transport.drain()
        alice.say({"content": "after"})
        self.assertEqual(self.chats(bob), [])
        self.assertEqual(self.room._replays, {})
        self.assertIsNone(bob.session.budget._replay)


class StalledResumeTests(ReplayTestCase):
    max_held_bytes = 4096

    def test_a_resuming_client_that_stops_reading_is_cut_once_held_messages_pass_its_send_buffer(self) -> None:
        first = self.append(1)[0]
        self.append(20)
        bob, transport = self.stalled_client()
        transport.stalled = True
        self.resume(bob, first)
        alice = Client(self)
        for n in range(200):
            alice.say({"content": "x" * 50})
            if transport.closed:
                break
        self.assertTrue(transport.closed)
        self.assertLess(n, 60)
        self.assertEqual(bob.session.close_reason, "slow-consumer")
        self.assertEqual(self.room._replays, {})


class SlowHistoryTests(ReplayTestCase):
    """When history is slow to read (a long line for the read gate), the
    live messages held meanwhile may pass the client's send buffer while
    the client reads everything it is sent: the server gives up the
    replay, not the connection."""

    max_held_bytes = 4096

    def test_held_messages_past_the_buffer_while_history_is_read_fail_the_replay_not_the_client(self) -> None:
        from anonchat.chat.readgate import ReadGate

        gate = ReadGate(1, 1)
        self.room.history_gate = gate
        first = self.append(1)[0]
        self.append(3)
        self.successResultOf(gate.enter())  # a read holds the only place: bob's waits in line
        bob, transport = self.stalled_client()  # never stalled: bob reads all he is sent
        bob.subscribe("/user/queue/errors", "e")
        self.resume(bob, first)
        alice = Client(self)
        said = [f"x{n:03d}" + "x" * 50 for n in range(150)]  # under the frame budget's burst
        for content in said:
            alice.say({"content": content})
        self.assertFalse(bob.transport.closed)
        bob.pull()
        self.assertEqual([e["code"] for e in bob.messages("/user/queue/errors")], ["REPLAY_FAILED"])
        self.assertEqual([m["content"] for m in bob.messages() if m["type"] == "CHAT"], said)
        self.assertEqual(self.room._replays, {})
        self.assertEqual(bob.session.budget.held_bytes, 0)
        gate.leave()
        self.successResultOf(gate.enter())  # the abandoned read left the line
        gate.leave()
        alice.say({"content": "live"})
        self.assertEqual(self.chats(bob), ["live"])


    def test_a_read_already_running_is_not_heeded_once_the_replay_gave_up(self) -> None:
        """The read is on its way (a database thread): it is left to end,
        its rows are not sent, and its place in the gate is given back."""
        from anonchat.chat.readgate import ReadGate
        from tests.test_chat_room import SlowArchive

        gate = ReadGate(1, 0)
        self.room.history_gate = gate
        first = self.append(1)[0]
        self.append(10)  # older than the buffer's 5 kept: read from the archive
        slow = SlowArchive(self.archived)
        self.room.archive = slow
        bob, transport = self.stalled_client()
        bob.subscribe("/user/queue/errors", "e")
        self.resume(bob, first)
        self.assertEqual(len(slow.waiting), 1)
        alice = Client(self)
        said = [f"y{n:03d}" + "y" * 50 for n in range(100)]
        for content in said:
            alice.say({"content": content})
        slow.release()  # the read ends after the replay gave up
        bob.pull()
        self.assertEqual([e["code"] for e in bob.messages("/user/queue/errors")], ["REPLAY_FAILED"])
        self.assertEqual([m["content"] for m in bob.messages() if m["type"] == "CHAT"], said)
        self.successResultOf(gate.enter())  # its place is free again
        self.assertFalse(transport.closed)


class GateTests(ReplayTestCase):
    """History reads share one bounded line with REST: past it, refused."""

    def test_a_replay_past_the_line_is_refused_and_the_subscriber_goes_live(self) -> None:
        from anonchat.chat.readgate import ReadGate

        gate = ReadGate(1, 0)
        self.room.history_gate = gate
        first = self.append(1)[0]
        self.append(3)
        self.successResultOf(gate.enter())  # a read that holds the only place
        bob = Client(self)
        bob.subscribe("/user/queue/errors", "e")
        self.resume(bob, first)
        bob.pull()
        self.assertEqual([e["code"] for e in bob.messages("/user/queue/errors")], ["REPLAY_FAILED"])
        self.assertEqual(gate.refused, 1)
        gate.leave()
        alice = Client(self)
        alice.say({"content": "live"})
        self.assertIn("live", self.chats(bob))  # went live regardless


    def test_unsubscribe_takes_a_waiting_replay_out_of_the_line(self) -> None:
        from anonchat.chat.readgate import ReadGate

        gate = ReadGate(1, 1)
        self.room.history_gate = gate
        first = self.append(1)[0]
        self.append(3)
        self.successResultOf(gate.enter())
        bob = Client(self)
        self.resume(bob, first)  # waits in line
        bob.feed(frame("UNSUBSCRIBE", id="sub-0"))
        carol = Client(self)
        carol.subscribe("/user/queue/errors", "e")
        self.resume(carol, first)  # bob's place in line is free again
        gate.leave()
        self.assertEqual(self.chats(carol), ["m1", "m2", "m3"])
        self.assertEqual(carol.messages("/user/queue/errors"), [])
        self.assertEqual(gate.refused, 0)


class HistoryRateTests(ReplayTestCase):
    """The node serves history at --history-rate messages a second, REST
    and replays together; past a short backlog a read is refused."""

    def test_reads_past_the_rate_are_refused_until_the_backlog_drains(self) -> None:
        from anonchat.chat.ports import ArchiveBusy
        from anonchat.chat.readgate import HistoryRate

        rate = HistoryRate(self.clock, 1000, burst=1.0, backlog=2.0)
        admitted = 0
        for _ in range(10):
            try:
                rate.admit()
            except ArchiveBusy:
                continue
            rate.charge(1000)
            admitted += 1
        self.assertEqual(admitted, 4)  # a second of credit, then two seconds of backlog
        self.clock.advance(1.0)
        rate.admit()  # one second later, room again
        self.assertEqual(rate.refused, 6)

    def test_a_replay_over_the_rate_is_refused_and_goes_live(self) -> None:
        from anonchat.chat.readgate import HistoryRate

        self.room.history_rate = HistoryRate(self.clock, 10, burst=0.0, backlog=0.5)
        first = self.append(1)[0]
        self.append(20)
        bob = Client(self)
        bob.subscribe("/user/queue/errors", "e")
        self.resume(bob, first, "a")  # 21 messages: books two seconds at 10/s
        self.assertEqual(len(self.chats(bob)), 20)
        carol = Client(self)
        carol.subscribe("/user/queue/errors", "e")
        self.resume(carol, first)
        carol.pull()
        self.assertEqual([e["code"] for e in carol.messages("/user/queue/errors")], ["REPLAY_FAILED"])
