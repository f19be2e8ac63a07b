"""Reconnecting keeps the nickname: rejoin tokens, the grace, and exactly
one JOIN and one LEAVE per user, also across two nodes."""

from __future__ import annotations

import random
from typing import Any

from anonchat.chat.room import ChatRoom, RoomConfig
from anonchat.stomp.session import SessionLimits, StompSession
from anonchat.stomp.transport import ClientInfo
from tests.stompfakes import FakeTransport, frame
from tests.test_chat_room import Client, RoomTestCase

KEY = b"shared by every node".ljust(32, b".")


class RejoinTestCase(RoomTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(rejoin_grace=30),
                             rng=random.Random(11), rejoin_key=KEY)
        self.buffer.add_listener(self.room.on_feed)
        self.watcher = Client(self)
        self.watcher.subscribe("/topic/chat")

    def connect(self, room: ChatRoom | None = None, **headers: str) -> tuple[FakeTransport, StompSession, Any]:
        transport = FakeTransport()
        session = StompSession(transport, ClientInfo("192.0.2.1", "fake"), room or self.room, self.clock, "r",
                               SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2", heart_beat="0,0", **headers))
        [connected] = transport.take()
        assert connected.command == "CONNECTED", connected
        return transport, session, connected

    def events(self) -> list[tuple[str, str]]:
        self.watcher.pull()
        return [(m["type"], m["sender"]) for m in self.watcher.messages() if m["type"] in ("JOIN", "LEAVE")]

    def online(self) -> list[str]:
        return [name for name, _ in self.successResultOf(self.presence.online())]


class RejoinTests(RejoinTestCase):
    def test_connected_carries_a_rejoin_token(self) -> None:
        _, _, connected = self.connect()
        self.assertTrue(connected.get("x-rejoin-token"))

    def test_a_rejoin_within_the_grace_keeps_the_name_with_no_leave_or_join(self) -> None:
        _, session, first = self.connect()
        name = first.get("user-name")
        self.events()
        session.connection_lost()
        self.clock.advance(20)
        self.assertIn(name, self.online())  # still listed meanwhile
        _, again, second = self.connect(x_rejoin_token=first.get("x-rejoin-token"))
        self.assertEqual(second.get("user-name"), name)
        self.clock.advance(60)
        self.assertEqual(self.events(), [])
        again.data_received(frame("DISCONNECT"))
        again.connection_lost()
        self.assertEqual(self.events(), [("LEAVE", name)])

    def test_no_rejoin_within_the_grace_is_one_leave_after_it(self) -> None:
        _, session, first = self.connect()
        name = first.get("user-name")
        self.events()
        session.connection_lost()
        self.clock.advance(29)
        self.assertEqual(self.events(), [])
        self.clock.advance(1)
        self.assertEqual(self.events(), [("LEAVE", name)])
        self.assertNotIn(name, self.online())

    def test_an_expired_or_used_or_forged_token_gets_a_fresh_name_and_a_join(self) -> None:
        _, session, first = self.connect()
        token = first.get("x-rejoin-token") or ""
        session.connection_lost()
        _, rejoined, _ = self.connect(x_rejoin_token=token)
        rejoined.connection_lost()
        for bad in (token, token[:-2] + "xx", "garbage"):  # used once already; tampered; nonsense
            _, _, fresh = self.connect(x_rejoin_token=bad)
            self.assertNotEqual(fresh.get("user-name"), first.get("user-name"))
        self.clock.advance(31)
        _, _, late = self.connect(x_rejoin_token=token)
        self.assertNotEqual(late.get("user-name"), first.get("user-name"))

    def test_a_token_for_a_name_someone_else_took_meanwhile_gets_a_fresh_name(self) -> None:
        _, session, first = self.connect()
        name = first.get("user-name") or ""
        session.connection_lost()
        self.clock.advance(31)  # gone: the name is free again
        self.successResultOf(self.presence.claim(name, 0))  # and someone has it now
        _, _, fresh = self.connect(x_rejoin_token=first.get("x-rejoin-token"))
        self.assertNotEqual(fresh.get("user-name"), name)

    def test_disconnect_ends_the_user_at_once(self) -> None:
        _, session, first = self.connect()
        self.events()
        session.data_received(frame("DISCONNECT"))
        session.connection_lost()
        self.assertEqual(self.events(), [("LEAVE", first.get("user-name"))])

    def test_shutdown_writes_the_leave_of_users_waiting_for_a_rejoin(self) -> None:
        _, session, first = self.connect()
        self.events()
        session.connection_lost()
        self.successResultOf(self.room.shutdown())
        stored = [(m.type.value, m.sender) for m in self.successResultOf(self.buffer.recent(10))]
        self.assertEqual(stored.count(("LEAVE", first.get("user-name"))), 1)


class TwoNodeRejoinTests(RejoinTestCase):
    def test_a_rejoin_on_another_node_keeps_the_name_and_the_first_node_writes_no_leave(self) -> None:
        other = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(rejoin_grace=30),
                         rng=random.Random(12), rejoin_key=KEY)
        self.buffer.add_listener(other.on_feed)
        _, session, first = self.connect()
        name = first.get("user-name")
        self.events()
        session.connection_lost()
        _, moved, second = self.connect(other, x_rejoin_token=first.get("x-rejoin-token"))
        self.assertEqual(second.get("user-name"), name)
        self.clock.advance(60)  # the first node's grace runs out: it must not write a LEAVE
        self.assertEqual(self.events(), [])
        moved.connection_lost()
        self.clock.advance(30)
        self.assertEqual(self.events(), [("LEAVE", name)])
