"""Moderation through real STOMP sessions on fake transports: bans, mutes,
slow mode, blocked words, reports and deletions, on a task.Clock."""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.internet.defer import Deferred

from anonchat.chat.moderation import BAN, MUTE, Sanction
from anonchat.chat.moderator import Moderator
from anonchat.chat.room import ChatRoom, RoomConfig
from anonchat.store.memory import InMemoryBuffer
from anonchat.store.memory_moderation import InMemoryModerationStore
from tests.stompfakes import frame
from tests.test_chat_room import Client, RoomTestCase


class ModerationTestCase(RoomTestCase):
    blocked_words = ""

    def setUp(self) -> None:
        super().setUp()
        path = None
        if self.blocked_words:
            path = self.mktemp()
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.blocked_words)
        self.words_path = path
        self.store = InMemoryModerationStore()
        self.moderator = Moderator(self.store, self.clock, blocked_words_path=path)
        self.successResultOf(Deferred.fromCoroutine(self.moderator.start()))
        self.addCleanup(lambda: Deferred.fromCoroutine(self.moderator.stop()))
        self.buffer = InMemoryBuffer(self.clock)
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(rate_limit=0), rng=random.Random(3),
                             moderator=self.moderator)
        self.buffer.add_listener(self.room.on_feed)

    def act(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def errors(self, client: Client) -> list[dict[str, Any]]:
        client.pull()
        return client.messages("/user/queue/errors")

    def talker(self) -> Client:
        client = Client(self)
        client.subscribe("/user/queue/errors", "e")
        client.subscribe("/topic/chat")
        client.pull()
        return client

    def client_of(self, client: Client) -> str:
        return str(client.session.principal.client)


class BanTests(ModerationTestCase):
    def test_a_ban_closes_the_clients_connections_within_a_refresh_each_with_a_leave(self) -> None:
        watcher = self.talker()
        bob = Client(self, address="192.0.2.9")
        other_tab = Client(self, address="192.0.2.9")
        # as another node would: straight into the shared store
        self.successResultOf(self.store.add_sanction(
            Sanction(BAN, self.client_of(bob), int(self.clock.seconds() * 1000), None, "spam")))
        self.assertFalse(bob.transport.closed)
        self.clock.advance(1)
        self.assertTrue(other_tab.transport.closed)
        self.assertFalse(watcher.transport.closed)
        frames = bob.pull()
        self.assertEqual(frames[-1].command, "ERROR")
        self.assertEqual(frames[-1].get("message"), "banned")
        self.assertTrue(bob.transport.closed)
        bob.session.connection_lost()
        watcher.pull()
        self.assertIn(("LEAVE", bob.name), [(m["type"], m["sender"]) for m in watcher.messages()])

    def test_a_banned_client_is_refused_at_connect(self) -> None:
        alice = Client(self)
        self.act(self.moderator.sanction(BAN, self.client_of(alice), 10, "abuse"))
        from tests.stompfakes import FakeTransport
        from anonchat.stomp.session import SessionLimits, StompSession
        from anonchat.stomp.transport import ClientInfo

        transport = FakeTransport()
        session = StompSession(transport, ClientInfo("127.0.0.1", "fake"), self.room, self.clock, "x", SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2"))
        [error] = transport.take()
        self.assertEqual((error.command, error.get("message")), ("ERROR", "banned"))

    def test_a_ban_expires_by_itself(self) -> None:
        alice = Client(self)
        client = self.client_of(alice)
        self.act(self.moderator.sanction(BAN, client, 1, "cool down"))
        self.assertIsNotNone(self.moderator.ban_of(client))
        self.clock.advance(61)
        self.assertIsNone(self.moderator.ban_of(client))


class MuteTests(ModerationTestCase):
    def test_a_muted_client_gets_muted_with_until_and_nothing_is_stored_then_unmute(self) -> None:
        alice = self.talker()
        mute = self.act(self.moderator.sanction(MUTE, self.client_of(alice), 5, "calm down"))
        alice.say({"content": "hello?"}, receipt="r1")
        [error] = self.errors(alice)
        self.assertEqual(error["code"], "MUTED")
        self.assertRegex(error["until"], r"^\d{4}-\d\d-\d\dT")
        self.assertEqual(error["receipt"], "r1")
        self.assertNotIn("hello?", [m["content"] for m in alice.messages()])
        self.assertFalse(alice.transport.closed)
        self.act(self.moderator.lift(MUTE, mute.id))
        alice.say({"content": "back"})
        alice.pull()
        self.assertIn("back", [m["content"] for m in alice.messages()])


class SlowModeTests(ModerationTestCase):
    def test_one_message_per_interval_per_client_with_retry_after(self) -> None:
        alice = self.talker()
        self.act(self.moderator.set_slow_mode(10))
        alice.say({"content": "one"})
        alice.say({"content": "two"})
        [error] = self.errors(alice)
        self.assertEqual((error["code"], error["retry_after"]), ("SLOW_MODE", 10))
        self.clock.advance(10)
        alice.say({"content": "three"})
        self.assertEqual([m["content"] for m in alice.messages() if m["type"] == "CHAT"], ["one"])
        alice.pull()
        self.assertEqual([m["content"] for m in alice.messages() if m["type"] == "CHAT"], ["three"])


class BlockedWordsTests(ModerationTestCase):
    blocked_words = "# test list\n광고\nbuy now\n"

    def test_blocked_content_is_refused_and_not_stored(self) -> None:
        alice = self.talker()
        alice.say({"content": "BUY NOW cheap"})
        alice.say({"content": "무료 광고입니다"})
        codes = [e["code"] for e in self.errors(alice)]
        self.assertEqual(codes, ["BLOCKED_CONTENT", "BLOCKED_CONTENT"])
        self.assertEqual([m.type.value for m in self.successResultOf(self.buffer.recent(10))], ["JOIN"])

    def test_a_reload_picks_up_the_changed_file(self) -> None:
        alice = self.talker()
        assert self.words_path is not None
        with open(self.words_path, "w", encoding="utf-8") as f:
            f.write("newword\n")
        self.moderator.reload_blocked_words()
        alice.say({"content": "buy now"})
        alice.say({"content": "a NEWWORD here"})
        self.assertEqual([e["code"] for e in self.errors(alice)], ["BLOCKED_CONTENT"])


class ReportTests(ModerationTestCase):
    def test_one_report_per_user_per_message_and_unknown_ids_are_not_found(self) -> None:
        alice = self.talker()
        alice.say({"content": "rude"})
        [message] = [m for m in (alice.pull() and alice.messages()) if m["type"] == "CHAT"]
        bob = self.talker()
        for _ in range(2):
            bob.feed(frame("SEND", json.dumps({"id": message["id"], "reason": "rude"}).encode(),
                           destination="/app/chat.report", receipt="rep"))
        bob.feed(frame("SEND", b'{"id": "1-0", "reason": "?"}', destination="/app/chat.report"))
        self.assertEqual([e["code"] for e in self.errors(bob)], ["NOT_FOUND"])
        [summary] = self.successResultOf(self.store.reports())
        self.assertEqual((summary.message_id, summary.count), (message["id"], 1))


class DeleteTests(ModerationTestCase):
    def test_a_deleted_message_is_announced_in_order_and_hidden_from_replays(self) -> None:
        alice = self.talker()
        alice.say({"content": "oops"})
        alice.say({"content": "fine"})
        alice.pull()
        [oops, _] = [m for m in alice.messages() if m["type"] == "CHAT"]
        self.assertTrue(self.act(self.room.delete_message(oops["id"])))
        alice.pull()
        [deletion] = alice.messages()
        self.assertEqual((deletion["type"], deletion["target"], deletion["content"]), ("DELETE", oops["id"], ""))
        bob = Client(self)
        bob.feed(frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", x_since_id="1-0"))
        bob.pull()
        replayed = [(m["type"], m.get("target"), m["content"]) for m in bob.messages()]
        self.assertNotIn(("CHAT", None, "oops"), replayed)
        self.assertIn(("CHAT", None, "fine"), replayed)
        self.assertIn(("DELETE", oops["id"], ""), replayed)

    def test_deleting_an_unknown_or_deleted_message_says_so(self) -> None:
        self.assertFalse(self.act(self.room.delete_message("1-0")))
        alice = self.talker()
        alice.say({"content": "x"})
        alice.pull()
        [x] = [m for m in alice.messages() if m["type"] == "CHAT"]
        self.assertTrue(self.act(self.room.delete_message(x["id"])))
        self.assertTrue(self.act(self.room.delete_message(x["id"])))  # idempotent: still gone
        alice.pull()
        self.assertEqual([m["type"] for m in alice.messages()], ["DELETE"])  # announced once
