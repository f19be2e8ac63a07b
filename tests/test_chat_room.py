"""The chat room through real STOMP sessions on fake transports:
join/leave, sending, validation, rate limits, typing, the online list."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from anonchat.chat.message import ChatMessage, MessageType
from anonchat.chat.presence import InMemoryPresence
from anonchat.chat.room import ChatRoom, RoomConfig
from anonchat.stomp.frame import Frame
from anonchat.stomp.session import SessionLimits, StompSession
from anonchat.stomp.transport import ClientInfo
from anonchat.store.memory import InMemoryBuffer
from tests.stompfakes import FakeTransport, frame

NICKNAME = re.compile(r"^익명-\d{5}$")


class Client:
    def __init__(self, test: RoomTestCase, name_hint: str = "", address: str = "127.0.0.1") -> None:
        self.test = test
        self.transport = FakeTransport()
        self.session = StompSession(self.transport, ClientInfo(address, "fake"), test.room, test.clock,
                                    f"s{len(test.clients)}", SessionLimits())
        test.clients.append(self)
        self.session.data_received(frame("CONNECT", accept_version="1.2", heart_beat="0,0"))
        [connected] = self.transport.take()
        self.name = connected.get("user-name")

    def feed(self, data: bytes) -> None:
        self.session.data_received(data)

    def gone(self) -> None:
        """The connection dropped and no rejoin came within the grace."""
        self.session.connection_lost()
        self.test.clock.advance(self.test.room.config.rejoin_grace)

    def subscribe(self, destination: str, sub: str = "sub-0") -> None:
        self.feed(frame("SUBSCRIBE", id=sub, destination=destination))

    def say(self, body: Any, receipt: str | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        headers = {"destination": "/app/chat.sendMessage"}
        if receipt:
            headers["receipt"] = receipt
        self.feed(frame("SEND", raw, **headers))

    def messages(self, destination: str = "/topic/chat") -> list[dict[str, Any]]:
        return [json.loads(f.body) for f in self.frames if f.command == "MESSAGE" and f.get("destination") == destination]

    def pull(self) -> list[Frame]:
        self.frames = self.transport.take()
        return self.frames


class RoomTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_000_000)
        self.buffer = InMemoryBuffer(self.clock)
        self.presence = InMemoryPresence()
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(max_content=20, rate_limit=2),
                             rng=random.Random(4))
        self.buffer.add_listener(self.room.on_feed)
        self.clients: list[Client] = []


class JoinLeaveTests(RoomTestCase):
    def test_each_connection_gets_a_unique_nickname(self) -> None:
        names = [Client(self).name for _ in range(50)]
        self.assertEqual(len(set(names)), 50)
        for name in names:
            self.assertRegex(name, NICKNAME)

    def test_nickname_prefix_is_configurable(self) -> None:
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(nickname_prefix="anon"))
        self.assertRegex(Client(self).name or "", r"^anon-\d{5}$")

    def test_join_then_chat_then_leave_reach_subscribers_in_order(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat")
        alice = Client(self)
        alice.say({"content": "안녕하세요 👋"})
        alice.gone()
        watcher.pull()
        events = [(m["type"], m["sender"], m["content"]) for m in watcher.messages()]
        self.assertEqual(events, [("JOIN", alice.name, ""), ("CHAT", alice.name, "안녕하세요 👋"), ("LEAVE", alice.name, "")])

    def test_exactly_one_leave_however_the_session_ends(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat")
        bob = Client(self)
        bob.feed(frame("DISCONNECT", receipt="x"))
        bob.session.connection_lost()
        bob.session.connection_lost()
        watcher.pull()
        self.assertEqual([m["type"] for m in watcher.messages()], ["JOIN", "LEAVE"])

    def test_leave_frees_the_nickname(self) -> None:
        alice = Client(self)
        alice.gone()
        users = self.successResultOf(self.presence.online())
        self.assertNotIn(alice.name, [name for name, _ in users])


class SendTests(RoomTestCase):
    def test_server_sets_sender_id_and_timestamp(self) -> None:
        alice = Client(self)
        alice.subscribe("/topic/chat")
        alice.say({"content": "hi", "sender": "admin", "id": "1-1", "timestamp": "then", "type": "LEAVE"}, receipt="r")
        frames = alice.pull()
        [chat] = [m for m in alice.messages() if m["type"] == "CHAT"]
        self.assertEqual(chat["sender"], alice.name)
        self.assertNotEqual(chat["id"], "1-1")
        self.assertRegex(chat["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        [message] = [f for f in frames if f.command == "MESSAGE" and json.loads(f.body)["type"] == "CHAT"]
        self.assertEqual(message.get("message-id"), chat["id"])
        self.assertEqual(message.get("subscription"), "sub-0")
        self.assertEqual(message.get("content-type"), "application/json;charset=UTF-8")
        self.assertEqual(message.get("content-length"), str(len(message.body)))
        self.assertIn("r", [f.get("receipt-id") for f in frames if f.command == "RECEIPT"])

    def test_content_is_kept_exactly(self) -> None:
        alice = Client(self)
        alice.subscribe("/topic/chat")
        text = "<b>&\"'\\n</b>😀𝄞"
        alice.say({"content": text})
        alice.pull()
        self.assertEqual(alice.messages()[-1]["content"], text)

    def bad_input(self, body: Any) -> dict[str, Any]:
        alice = Client(self)
        alice.subscribe("/topic/chat")
        alice.subscribe("/user/queue/errors", "sub-1")
        alice.pull()
        alice.say(body, receipt="r")
        frames = alice.pull()
        self.assertFalse(alice.transport.closed)
        self.assertEqual([f.command for f in frames], ["MESSAGE"])
        self.assertEqual(frames[0].get("destination"), "/user/queue/errors")
        self.assertEqual(frames[0].get("subscription"), "sub-1")
        self.assertEqual(self.successResultOf(self.buffer.backlog()), 1)  # only the JOIN
        error: dict[str, Any] = json.loads(frames[0].body)
        self.assertTrue(error["message"])
        return error

    def test_not_json_is_refused_on_the_error_queue(self) -> None:
        self.assertEqual(self.bad_input(b"not json")["code"], "INVALID_JSON")

    def test_invalid_utf8_is_refused(self) -> None:
        self.assertEqual(self.bad_input(b'{"content": "\xff"}')["code"], "INVALID_JSON")

    def test_empty_content_is_refused(self) -> None:
        self.assertEqual(self.bad_input({"content": "   "})["code"], "EMPTY_CONTENT")

    def test_missing_content_is_refused(self) -> None:
        self.assertEqual(self.bad_input({"text": "hi"})["code"], "INVALID_CONTENT")

    def test_over_long_content_is_refused(self) -> None:
        self.assertEqual(self.bad_input({"content": "가" * 21})["code"], "CONTENT_TOO_LONG")

    def test_content_at_the_limit_counts_characters_not_bytes(self) -> None:
        alice = Client(self)
        alice.subscribe("/topic/chat")
        alice.say({"content": "가" * 20})
        alice.pull()
        self.assertEqual(alice.messages()[-1]["content"], "가" * 20)

    def test_lone_surrogate_is_refused(self) -> None:
        self.assertEqual(self.bad_input(b'{"content": "a\\ud800b"}')["code"], "INVALID_TEXT")

    def test_rate_limit_refuses_past_the_burst_and_recovers(self) -> None:
        alice = Client(self)
        alice.subscribe("/topic/chat")
        alice.subscribe("/user/queue/errors", "e")
        for n in range(6):
            alice.say({"content": f"m{n}"})
        alice.pull()
        chats = [m["content"] for m in alice.messages() if m["type"] == "CHAT"]
        self.assertEqual(chats, ["m0", "m1", "m2", "m3"])  # rate 2/s, burst 4
        self.assertEqual([e["code"] for e in alice.messages("/user/queue/errors")], ["RATE_LIMITED"] * 2)
        self.clock.advance(1)
        alice.say({"content": "later"})
        alice.pull()
        self.assertEqual(alice.messages()[-1]["content"], "later")

    def test_send_to_an_unknown_destination_is_a_protocol_error(self) -> None:
        alice = Client(self)
        alice.feed(frame("SEND", b"{}", destination="/topic/chat"))
        self.assertEqual(alice.pull()[-1].command, "ERROR")
        self.assertTrue(alice.transport.closed)

    def test_subscribe_to_an_unknown_destination_is_a_protocol_error(self) -> None:
        alice = Client(self)
        alice.subscribe("/queue/secret")
        self.assertEqual(alice.pull()[-1].command, "ERROR")

    def test_one_frame_is_built_per_subscription_id(self) -> None:
        clients = [Client(self) for _ in range(5)]
        for c in clients:
            c.subscribe("/topic/chat")
            c.pull()
        clients[0].say({"content": "x"})
        bodies = {c.transport.sent[-1] for c in clients}
        self.assertEqual(len(bodies), 1)


class TypingTests(RoomTestCase):
    def test_typing_is_broadcast_and_lapses(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat.typing")
        alice = Client(self)
        alice.feed(frame("SEND", b'{"typing": true}', destination="/app/chat.typing"))
        self.clock.advance(5.1)
        watcher.pull()
        events = [(m["sender"], m["typing"]) for m in watcher.messages("/topic/chat.typing")]
        self.assertEqual(events, [(alice.name, True), (alice.name, False)])

    def test_typing_false_on_leave(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat.typing")
        alice = Client(self)
        alice.feed(frame("SEND", b'{"typing": true}', destination="/app/chat.typing"))
        alice.gone()
        watcher.pull()
        self.assertEqual([m["typing"] for m in watcher.messages("/topic/chat.typing")], [True, False])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_typing_is_not_stored(self) -> None:
        alice = Client(self)
        alice.feed(frame("SEND", b'{"typing": true}', destination="/app/chat.typing"))
        self.assertEqual(self.successResultOf(self.buffer.backlog()), 1)


class UsersTests(RoomTestCase):
    def test_online_list_on_subscribe_and_on_every_join_and_leave(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat.users")
        self.clock.advance(1)
        bob = Client(self)
        bob.gone()
        self.clock.advance(1)
        watcher.pull()
        lists = [[u["name"] for u in m["users"]] for m in watcher.messages("/topic/chat.users")]
        self.assertEqual(lists, [[watcher.name], [watcher.name, bob.name], [watcher.name]])
        counts = [m["count"] for m in watcher.messages("/topic/chat.users")]
        self.assertEqual(counts, [1, 2, 1])

    def test_under_churn_the_list_goes_out_at_most_once_a_second_and_the_latest(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat.users")
        self.clock.advance(1)
        watcher.pull()
        churn = [Client(self) for _ in range(30)]
        watcher.pull()
        self.assertEqual(len(watcher.messages("/topic/chat.users")), 1)  # the first change, at once
        self.clock.advance(1)
        watcher.pull()
        [joined] = watcher.messages("/topic/chat.users")
        self.assertEqual(joined["count"], 31)
        for client in churn[:20]:
            client.session.connection_lost()
        self.clock.advance(self.room.config.rejoin_grace)  # twenty LEAVEs at once
        self.clock.advance(1)
        watcher.pull()
        self.assertLessEqual(len(watcher.messages("/topic/chat.users")), 2)
        latest = watcher.messages("/topic/chat.users")[-1]
        self.assertEqual(sorted(u["name"] for u in latest["users"]),
                         sorted([watcher.name] + [c.name for c in churn[20:]]))

    def test_a_subscribe_loop_renders_the_list_once_per_change(self) -> None:
        calls = []
        online = self.presence.online

        def counted() -> Any:
            calls.append(1)
            return online()

        self.presence.online = counted  # type: ignore[method-assign]
        looper = Client(self)
        for n in range(50):
            looper.subscribe("/topic/chat.users", f"u{n}")
            looper.feed(frame("UNSUBSCRIBE", id=f"u{n}"))
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(looper.messages("/topic/chat.users") if looper.pull() else []), 50)


class UnsubscribeTests(RoomTestCase):
    """UNSUBSCRIBE ends delivery on that subscription, on every topic."""

    def test_no_message_after_unsubscribe(self) -> None:
        bob, alice = Client(self), Client(self)
        for destination, sub in (("/topic/chat", "c"), ("/topic/chat.typing", "t"), ("/topic/chat.users", "u")):
            bob.subscribe(destination, sub)
            bob.feed(frame("UNSUBSCRIBE", id=sub))
        bob.pull()
        alice.say({"content": "after"})
        alice.feed(frame("SEND", b'{"typing": true}', destination="/app/chat.typing"))
        Client(self)  # a JOIN: the online list changes
        self.clock.advance(2)
        self.assertEqual([f for f in bob.pull() if f.command == "MESSAGE"], [])
        self.assertEqual([len(topic) for topic in self.room._topics.values()], [0, 0, 0])

    def test_an_unsubscribed_resume_leaves_no_subscription_behind(self) -> None:
        first = self.successResultOf(self.buffer.append(ChatMessage(MessageType.CHAT, "익명-10000", "old", 1))).id
        bob, alice = Client(self), Client(self)
        for n in range(5):
            bob.feed(frame("SUBSCRIBE", id=f"r{n}", destination="/topic/chat", x_since_id=first))
            bob.feed(frame("UNSUBSCRIBE", id=f"r{n}"))
        bob.pull()
        alice.say({"content": "after"})
        self.assertEqual([f for f in bob.pull() if f.command == "MESSAGE"], [])


class ShutdownTests(RoomTestCase):
    def test_shutdown_writes_every_leave_and_closes_every_session(self) -> None:
        clients = [Client(self) for _ in range(3)]
        self.successResultOf(self.room.shutdown())
        kinds = [m.type.value for m in self.successResultOf(self.buffer.recent(10))]
        self.assertEqual(kinds, ["JOIN"] * 3 + ["LEAVE"] * 3)
        self.assertTrue(all(c.transport.closed for c in clients))
        for c in clients:
            c.session.connection_lost()
        self.assertEqual(len(self.successResultOf(self.buffer.recent(10))), 6)


class ResumeTests(RoomTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.buffer = InMemoryBuffer(self.clock, retain=3)
        self.archived: list[Any] = []
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(rate_limit=0),
                             rng=random.Random(5), archive=FakeArchive(self.archived))
        self.buffer.add_listener(self.room.on_feed)

    def flush(self) -> None:
        batch = self.successResultOf(self.buffer.claim_batch(1000))
        self.archived.extend(batch)
        self.successResultOf(self.buffer.acknowledge([m.id for m in batch]))

    def resume(self, client: Client, since: str) -> None:
        client.feed(frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", **{"x_since_id": since}))

    def test_resume_replays_from_the_buffer_then_goes_live(self) -> None:
        alice = Client(self)
        for n in range(3):
            alice.say({"content": f"m{n}"})
        first = self.successResultOf(self.buffer.recent(10))[1].id  # after JOIN and m0
        bob = Client(self)
        self.resume(bob, first)
        alice.say({"content": "live"})
        bob.pull()
        got = [(m["type"], m["content"]) for m in bob.messages()]
        self.assertEqual(got, [("CHAT", "m1"), ("CHAT", "m2"), ("JOIN", ""), ("CHAT", "live")])

    def test_resume_reaches_into_the_archive_when_the_buffer_trimmed(self) -> None:
        alice = Client(self)
        join_id = self.successResultOf(self.buffer.recent(1))[0].id
        for n in range(10):
            alice.say({"content": f"m{n}"})
            self.flush()
        bob = Client(self)
        self.resume(bob, join_id)
        bob.pull()
        got = [m["content"] for m in bob.messages() if m["type"] == "CHAT"]
        self.assertEqual(got, [f"m{n}" for n in range(10)])
        ids = [m["id"] for m in bob.messages()]
        self.assertEqual(len(ids), len(set(ids)))

    def test_messages_arriving_during_a_replay_are_neither_lost_nor_doubled(self) -> None:
        alice = Client(self)
        for n in range(5):
            alice.say({"content": f"old{n}"})
            self.flush()
        slow = SlowArchive(self.archived)
        self.room.archive = slow
        bob = Client(self)
        self.resume(bob, "1-0")
        alice.say({"content": "during"})
        slow.release()
        alice.say({"content": "after"})
        bob.pull()
        contents = [m["content"] for m in bob.messages() if m["type"] == "CHAT"]
        self.assertEqual(contents, [f"old{n}" for n in range(5)] + ["during", "after"])
        ids = [m["id"] for m in bob.messages()]
        self.assertEqual(ids, sorted(set(ids), key=lambda i: tuple(map(int, i.split("-")))))
        # the replay really started older than the buffer: through the archive
        self.assertIsNone(self.successResultOf(self.buffer.read_after("1-0", 1)))

    def test_malformed_since_id_is_a_protocol_error(self) -> None:
        bob = Client(self)
        self.resume(bob, "yesterday")
        self.assertEqual(bob.pull()[-1].command, "ERROR")


class FakeArchive:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def read_after(self, after_id: str, limit: int) -> Any:
        from twisted.internet.defer import succeed

        from anonchat.chat.message import id_key

        return succeed([m for m in self.rows if id_key(m.id) > id_key(after_id)][:limit])

    def read_before(self, before_id: str | None, limit: int) -> Any:
        from twisted.internet.defer import succeed

        from anonchat.chat.message import id_key

        rows = sorted(self.rows, key=lambda m: id_key(m.id))
        if before_id is not None:
            rows = [m for m in rows if id_key(m.id) < id_key(before_id)]
        return succeed(rows[-limit:] if limit > 0 else [])


class SlowArchive(FakeArchive):
    def __init__(self, rows: list[Any]) -> None:
        super().__init__(rows)
        self.waiting: list[Any] = []

    def read_after(self, after_id: str, limit: int) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[Any] = Deferred()
        self.waiting.append((d, super().read_after(after_id, limit)))
        return d

    def read_before(self, before_id: str | None, limit: int) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[Any] = Deferred()
        self.waiting.append((d, super().read_before(before_id, limit)))
        return d

    def release(self) -> None:
        while self.waiting:
            d, result = self.waiting.pop(0)
            result.addCallback(d.callback)


class UnavailableBufferTests(RoomTestCase):
    def test_a_session_whose_join_cannot_be_stored_is_refused_and_gets_no_leave(self) -> None:
        from twisted.internet.defer import fail

        from anonchat.chat.ports import BufferUnavailable

        appended: list[Any] = []
        self.buffer.append = lambda m: (appended.append(m), fail(BufferUnavailable("down")))[1]  # type: ignore[method-assign]
        transport = FakeTransport()
        session = StompSession(transport, ClientInfo("127.0.0.1", "fake"), self.room, self.clock, "x", SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2"))
        [error] = transport.take()
        self.assertEqual(error.command, "ERROR")
        self.assertTrue(transport.closed)
        session.connection_lost()
        self.assertEqual([m.type.value for m in appended], ["JOIN"])
        self.assertEqual(self.successResultOf(self.presence.online()), [])
        self.assertEqual(self.room.session_count, 0)

    def test_a_chat_message_that_cannot_be_stored_is_reported_not_receipted(self) -> None:
        from twisted.internet.defer import fail

        from anonchat.chat.ports import BufferUnavailable

        alice = Client(self)
        alice.subscribe("/user/queue/errors", "e")
        alice.pull()
        self.buffer.append = lambda m: fail(BufferUnavailable("down"))  # type: ignore[method-assign]
        alice.say({"content": "lost?"}, receipt="r")
        frames = alice.pull()
        self.assertEqual([f.command for f in frames], ["MESSAGE"])
        self.assertEqual(alice.messages("/user/queue/errors")[0]["code"], "NOT_STORED")
        self.assertFalse(alice.transport.closed)


class BatchFanOutTests(RoomTestCase):
    def test_a_feed_batch_reaches_each_subscriber_in_one_send_frames_still_separate(self) -> None:
        from anonchat.chat.message import ChatMessage, MessageType

        clients = [Client(self) for _ in range(3)]
        for c in clients:
            c.subscribe("/topic/chat")
            c.pull()
        batch = [ChatMessage(MessageType.CHAT, "익명-10000", f"m{n}", 1, id=f"9{n}-0") for n in range(3)]
        self.assertEqual(self.room.on_feed(batch), 9)
        for c in clients:
            self.assertEqual(len(c.transport.sent), 1)
            frames = c.pull()
            self.assertEqual([json.loads(f.body)["content"] for f in frames], ["m0", "m1", "m2"])
            self.assertEqual([f.get("message-id") for f in frames], ["90-0", "91-0", "92-0"])


class MessageIdTests(SynchronousTestCase):
    def test_ids_sort_by_their_numbers_not_as_text(self) -> None:
        from anonchat.chat.message import id_key

        self.assertLess(id_key("9-5"), id_key("10-0"))
        self.assertLess(id_key("10-2"), id_key("10-10"))

    def test_malformed_or_oversized_ids_are_refused(self) -> None:
        from anonchat.chat.message import id_key

        for bad in ["", "1", "1-", "-1", "a-1", "1-x", "1--1", "²-1", "1-²", "9223372036854775808-0",
                    "0-9223372036854775808", "1" * 40 + "-1"]:
            with self.assertRaises(ValueError, msg=bad):
                id_key(bad)
        self.assertEqual(id_key("9223372036854775807-0"), (2**63 - 1, 0))


class TwoNodeArchiveGapTests(RoomTestCase):
    def test_replay_does_not_jump_a_batch_another_node_archived_first(self) -> None:
        """Node A holds batch 4..6 unarchived while node B already archived
        7..10: the archive alone has a hole, the buffer fills it."""
        from anonchat.chat.message import ChatMessage, MessageType

        self.buffer = InMemoryBuffer(self.clock, retain=0)
        self.archived: list[Any] = []
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(rate_limit=0),
                             rng=random.Random(6), archive=FakeArchive(self.archived))
        self.buffer.add_listener(self.room.on_feed)
        stored = []
        for n in range(1, 11):
            self.clock.advance(0.01)
            d = self.buffer.append(ChatMessage(MessageType.CHAT, "익명-10000", f"m{n}", n))
            stored.append(self.successResultOf(d))
        self.successResultOf(self.buffer.claim_batch(100))
        self.successResultOf(self.buffer.acknowledge([m.id for m in stored[:3]]))  # trimmed: m1..m3
        self.assertEqual(self.successResultOf(self.buffer.trim_point()), stored[2].id)
        self.archived.extend(stored[:3] + stored[6:])  # node B archived m7..m10 before A's m4..m6
        bob = Client(self)
        bob.feed(frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", **{"x_since_id": "1-0"}))
        bob.pull()
        contents = [m["content"] for m in bob.messages() if m["type"] == "CHAT"]
        self.assertEqual(contents, [f"m{n}" for n in range(1, 11)])


class FeedBehindReplayTests(RoomTestCase):
    def test_a_resumed_subscriber_waits_for_the_feed_to_pass_what_its_replay_read(self) -> None:
        """With Redis the feed has its own connection and can lag the
        replay's reads: going live early would deliver those twice."""
        from anonchat.chat.message import ChatMessage, MessageType

        delayed: list[Any] = []
        self.buffer = InMemoryBuffer(self.clock)
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(rate_limit=0), rng=random.Random(7))
        feeding = [True]

        def feed(batch: Any) -> None:
            if feeding[0]:
                self.room.on_feed(batch)
            else:
                delayed.append(list(batch))

        self.buffer.add_listener(feed)
        bob = Client(self)
        ids = []
        for n in range(1, 4):
            self.clock.advance(0.01)
            ids.append(self.successResultOf(self.buffer.append(ChatMessage(MessageType.CHAT, "익명-10000", f"m{n}", 1))).id)
        feeding[0] = False  # the feed falls behind: m4, m5 are in the buffer, not yet fed
        for n in range(4, 6):
            self.clock.advance(0.01)
            self.buffer.append(ChatMessage(MessageType.CHAT, "익명-10000", f"m{n}", 1))
        bob.feed(frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", **{"x_since_id": ids[1]}))
        feeding[0] = True
        for batch in delayed:
            self.room.on_feed(batch)
        self.clock.advance(0.01)
        self.buffer.append(ChatMessage(MessageType.CHAT, "익명-10000", "m6", 1))
        bob.pull()
        self.assertEqual([m["content"] for m in bob.messages() if m["type"] == "CHAT"], ["m3", "m4", "m5", "m6"])


class RefusalReceiptTests(RoomTestCase):
    def test_a_refused_send_that_asked_for_a_receipt_names_it_in_the_error(self) -> None:
        alice = Client(self)
        alice.subscribe("/user/queue/errors", "e")
        alice.pull()
        alice.say(b"not json", receipt="r-7")
        [error] = [f for f in alice.pull() if f.command == "MESSAGE"]
        self.assertEqual(error.get("receipt-id"), "r-7")
        self.assertEqual(json.loads(error.body)["receipt"], "r-7")
        self.assertEqual(json.loads(error.body)["code"], "INVALID_JSON")

    def test_a_refusal_without_a_receipt_has_none(self) -> None:
        alice = Client(self)
        alice.subscribe("/user/queue/errors", "e")
        alice.pull()
        alice.say(b"not json")
        [error] = [f for f in alice.pull() if f.command == "MESSAGE"]
        self.assertIsNone(error.get("receipt-id"))
        self.assertNotIn("receipt", json.loads(error.body))


class TypingCapTests(RoomTestCase):
    def test_typing_updates_past_two_a_second_are_dropped(self) -> None:
        watcher = Client(self)
        watcher.subscribe("/topic/chat.typing")
        alice = Client(self)
        for n in range(10):
            alice.feed(frame("SEND", b'{"typing": %s}' % (b"true" if n % 2 == 0 else b"false"),
                             destination="/app/chat.typing"))
        watcher.pull()
        self.assertEqual(len(watcher.messages("/topic/chat.typing")), 2)
        self.assertFalse(alice.transport.closed)


class LeaveRetryTests(RoomTestCase):
    def test_a_leave_the_buffer_refuses_is_retried_until_stored(self) -> None:
        from twisted.internet.defer import fail

        from anonchat.chat.ports import BufferUnavailable

        watcher = Client(self)
        watcher.subscribe("/topic/chat")
        alice = Client(self)
        real_append = self.buffer.append
        refusals = [3]

        def flaky(message: Any) -> Any:
            if refusals[0]:
                refusals[0] -= 1
                return fail(BufferUnavailable("blip"))
            return real_append(message)

        self.buffer.append = flaky  # type: ignore[method-assign]
        alice.gone()
        for _ in range(10):
            self.clock.advance(1)
        watcher.pull()
        self.assertEqual([(m["type"], m["sender"]) for m in watcher.messages()][-1], ("LEAVE", alice.name))
        self.assertEqual([m["type"] for m in watcher.messages()].count("LEAVE"), 1)


class DrainingTests(RoomTestCase):
    def test_connect_once_draining_is_refused_and_writes_no_join(self) -> None:
        self.successResultOf(self.room.shutdown())
        transport = FakeTransport()
        session = StompSession(transport, ClientInfo("127.0.0.1", "fake"), self.room, self.clock, "late",
                               SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2"))
        [error] = transport.take()
        self.assertEqual(error.command, "ERROR")
        self.assertEqual(self.successResultOf(self.buffer.recent(10)), [])
        self.assertEqual(self.successResultOf(self.presence.online()), [])

    def test_a_connect_whose_claim_completes_after_shutdown_began_is_refused(self) -> None:
        from twisted.internet.defer import Deferred

        claims: list[Deferred[bool]] = []
        self.presence.claim = lambda name, since: (claims.append(Deferred()), claims[-1])[1]  # type: ignore
        transport = FakeTransport()
        session = StompSession(transport, ClientInfo("127.0.0.1", "fake"), self.room, self.clock, "late",
                               SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2"))
        self.room.shutdown()
        claims[0].callback(True)
        self.assertEqual([f.command for f in transport.take()], ["ERROR"])
        self.assertEqual(self.successResultOf(self.buffer.recent(10)), [])


class UnknownOutcomeTests(RoomTestCase):
    def test_a_message_whose_fate_the_buffer_cannot_tell_is_unconfirmed_not_not_stored(self) -> None:
        from twisted.internet.defer import fail

        from anonchat.chat.ports import AppendOutcomeUnknown

        alice = Client(self)
        alice.subscribe("/user/queue/errors", "e")
        alice.pull()
        self.buffer.append = lambda m: fail(AppendOutcomeUnknown("lost answer"))  # type: ignore[method-assign]
        alice.say({"content": "did it land?"}, receipt="r9")
        [error] = [f for f in alice.pull() if f.command == "MESSAGE"]
        self.assertEqual(json.loads(error.body)["code"], "UNCONFIRMED")
        self.assertEqual(error.get("receipt-id"), "r9")

    def test_a_join_whose_fate_is_unknown_refuses_the_session_and_writes_its_leave(self) -> None:
        from twisted.internet.defer import fail

        from anonchat.chat.ports import AppendOutcomeUnknown

        real_append = self.buffer.append
        appended: list[Any] = []

        def append(message: Any) -> Any:
            appended.append(message.type.value)
            if message.type.value == "JOIN":
                return fail(AppendOutcomeUnknown("lost answer"))
            return real_append(message)

        self.buffer.append = append  # type: ignore[method-assign]
        transport = FakeTransport()
        session = StompSession(transport, ClientInfo("127.0.0.1", "fake"), self.room, self.clock, "x", SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2"))
        self.assertEqual([f.command for f in transport.take()], ["ERROR"])
        self.assertEqual(appended, ["JOIN", "LEAVE"])
        self.assertEqual(self.successResultOf(self.presence.online()), [])
