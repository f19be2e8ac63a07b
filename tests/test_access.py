"""Signed access tokens at CONNECT: valid, expired, wrong signature, wrong
audience, none; the token's subject, never its address, names the client."""

from __future__ import annotations

import random
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from anonchat.chat.access import AccessDenied, AccessPolicy
from anonchat.chat.moderator import Moderator
from anonchat.chat.room import ChatRoom, RoomConfig
from anonchat.stomp.session import SessionLimits, StompSession
from anonchat.stomp.transport import ClientInfo
from anonchat.store.memory import InMemoryBuffer
from anonchat.store.memory_moderation import InMemoryModerationStore
from tests.stompfakes import FakeTransport, frame
from tests.test_chat_room import RoomTestCase

SECRET = "s3cret-for-tests-only-0123456789ab"


def token(secret: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 600)
    return jwt.encode(claims, secret, algorithm=algorithm)


class PolicyTests(SynchronousTestCase):
    def test_a_valid_token_names_its_subject(self) -> None:
        self.assertEqual(AccessPolicy.with_secret(SECRET).subject(token(sub="user-1")), "sub:user-1")

    def test_refusals(self) -> None:
        policy = AccessPolicy.with_secret(SECRET, audience="anonchat")
        cases = {
            "none": None,
            "garbage": "not.a.token",
            "expired": token(sub="u", aud="anonchat", exp=int(time.time()) - 10),
            "wrong signature": token("another-secret-0123456789abcdef!!", sub="u", aud="anonchat"),
            "wrong audience": token(sub="u", aud="elsewhere"),
            "no audience": token(sub="u"),
            "alg none": jwt.encode({"sub": "u", "aud": "anonchat"}, None, algorithm="none"),
        }
        for name, bad in cases.items():
            with self.assertRaises(AccessDenied, msg=name):
                policy.subject(bad)
        self.assertEqual(policy.subject(token(sub="u", aud="anonchat")), "sub:u")

    def test_es256_with_a_public_key(self) -> None:
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        policy = AccessPolicy.with_public_key(pem)
        self.assertEqual(policy.subject(token(private, "ES256", sub="k")), "sub:k")
        with self.assertRaises(AccessDenied):
            policy.subject(token(SECRET, sub="k"))  # an HS256 token signed with some secret


class ConnectTests(RoomTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = InMemoryModerationStore()
        self.moderator = Moderator(self.store, self.clock)
        self.successResultOf(Deferred.fromCoroutine(self.moderator.start()))
        self.buffer = InMemoryBuffer(self.clock)
        self.room = ChatRoom(self.buffer, self.presence, self.clock, RoomConfig(), rng=random.Random(2),
                             moderator=self.moderator, access=AccessPolicy.with_secret(SECRET))
        self.buffer.add_listener(self.room.on_feed)

    def connect(self, address: str = "198.51.100.1", **headers: str) -> tuple[FakeTransport, StompSession]:
        transport = FakeTransport()
        session = StompSession(transport, ClientInfo(address, "fake"), self.room, self.clock, "t", SessionLimits())
        session.data_received(frame("CONNECT", accept_version="1.2", **headers))
        return transport, session

    def test_connect_without_a_valid_token_is_access_denied(self) -> None:
        for headers in ({}, {"passcode": "nope"}, {"passcode": token(exp=int(time.time()) - 5)}):
            transport, _ = self.connect(**headers)
            [error] = transport.take()
            self.assertEqual((error.command, error.get("message")), ("ERROR", "access denied"))
            self.assertTrue(transport.closed)
        self.assertEqual(self.successResultOf(self.buffer.recent(5)), [])

    def test_a_valid_token_connects_anonymously_and_its_subject_is_the_client(self) -> None:
        transport, session = self.connect(passcode=token(sub="alice@example"))
        [connected] = transport.take()
        self.assertEqual(connected.command, "CONNECTED")
        self.assertNotIn("alice", connected.get("user-name") or "")
        _, elsewhere = self.connect("203.0.113.50", passcode=token(sub="alice@example"))
        self.assertEqual(session.principal.client, elsewhere.principal.client)
